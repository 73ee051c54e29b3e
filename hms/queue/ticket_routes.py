"""HTTP routes of the patient's ticket: its signed link (staff), and what it shows (no account)."""

from flask import request
from flask.views import MethodView

from hms.core.access import allow, public
from hms.core.blueprint import Blueprint
from hms.core.fields import NoQuery
from hms.queue import tickets
from hms.queue.schemas import TicketLinkSchema, TicketSchema
from hms.realtime.stream import sse_response

blp = Blueprint("tickets", __name__, url_prefix="/api", description="The patient's ticket")

TICKET_RULES = (
    "No account: the signed ticket is the only credential. A forged, altered or expired ticket, "
    "or one of an appointment that no longer exists, is the same 404. Only the patient's "
    "initials: never a name, MRN, phone or id. An appointment no longer in the line "
    "(COMPLETED, CANCELLED, NO_SHOW) answers its status, with queue_position and "
    "estimated_wait_minutes null."
)
_STREAM_DOC = {
    "description": (
        "`retry: <ms>`, then `id: <queue version>` / `event: ticket` / `data: <the ticket JSON>` at "
        "once, again after every change of the doctor's queue, and a `: ping` comment at least "
        "every SSE_HEARTBEAT_SECONDS. At most TICKET_STREAM_LIMIT (3) streams per ticket; they "
        "never take one of the doctor's staff and display slots. The stream ends when the "
        "ticket expires."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
# The ticket is a credential in the URL: never cached or passed on as a referrer.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@blp.route("/appointments/<id:appointment_id>/ticket")
class TicketLinkResource(MethodView):
    @allow("appointments.ticket")
    @blp.response(200, TicketLinkSchema)
    @blp.alt_response(404, description="Unknown appointment")
    def get(self, appointment_id):
        """The signed link of the patient's ticket page (for the token slip's QR code)"""
        path, expires_at = tickets.ticket_link(appointment_id)
        return {"url": request.host_url.rstrip("/") + path, "expires_at": expires_at}, 200, _PRIVATE


@blp.route("/tickets/<ticket>")
class TicketResource(MethodView):
    @public
    @blp.doc(description=TICKET_RULES, security=[])
    @blp.arguments(NoQuery, location="query")
    @blp.response(200, TicketSchema)
    @blp.alt_response(404, description="Not a valid, current ticket")
    def get(self, _query, ticket):
        """What the patient's ticket shows now"""
        return tickets.read_ticket(ticket), 200, _PRIVATE


@blp.route("/tickets/<ticket>/stream")
class TicketStreamResource(MethodView):
    @public
    @blp.arguments(NoQuery, location="query")
    @blp.doc(responses={"200": _STREAM_DOC}, security=[])
    @blp.alt_response(404, description="Not a valid, current ticket")
    @blp.alt_response(429, description="TICKET_STREAM_LIMIT streams of this ticket already open")
    def get(self, _query, ticket):
        """Follow the patient's ticket live (Server-Sent Events)"""
        response = sse_response(tickets.open_ticket_stream(ticket))
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
