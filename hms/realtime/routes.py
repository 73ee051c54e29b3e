"""GET /api/queue/<doctor_id>/stream: the live queue as Server-Sent Events."""

from flask.views import MethodView

from hms.auth.access import ANY_ROLE, allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import NoQuery
from hms.realtime import service
from hms.realtime.stream import sse_response

blp = Blueprint("realtime", __name__, url_prefix="/api", description="Live queue (Server-Sent Events)")

_STREAM_DOC = {
    "description": (
        "`retry: <ms>`, then `id: <version>` / `event: queue` / `data: <queue snapshot JSON>` at once, "
        "the full snapshot again after every change, and a `: ping` comment at least every "
        "SSE_HEARTBEAT_SECONDS. The display role gets the masked snapshot (patients as initials). "
        "Authenticate with a bearer token or the session cookie (browser EventSource)."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


@blp.route("/queue/<id:doctor_id>/stream")
class QueueStreamResource(MethodView):
    @allow(*ANY_ROLE)
    @blp.arguments(NoQuery, location="query")
    @blp.doc(responses={"200": _STREAM_DOC})
    @blp.alt_response(404, description="Not a doctor")
    @blp.alt_response(429, description="SSE_MAX_CONNECTIONS_PER_DOCTOR streams already open for this doctor")
    def get(self, _query, doctor_id: int):
        """Follow a doctor's queue live (Server-Sent Events)"""
        return sse_response(service.open_queue_stream(doctor_id, current_identity()))
