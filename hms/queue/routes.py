"""HTTP routes of the queue: a doctor's queue, calling the next patient in, the live stream."""

from flask import current_app, request
from flask.views import MethodView

from hms.auth.access import current_session_id
from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import NoQuery
from hms.core.roles import sees_masked_queue
from hms.core.time import clinic_today
from hms.queue import service
from hms.queue.schemas import MAX_STREAM_DOCTORS, QueueQuery, QueueSnapshotSchema, QueuesStreamQuery
from hms.realtime.stream import sse_response

blp = Blueprint("queue", __name__, url_prefix="/api", description="The queue, and its live stream")

SNAPSHOT_RULES = (
    "Active appointments (WAITING, IN_CONSULTATION) by queue_position: the patient in the "
    "room first, then URGENT before NORMAL, each first come, first served. For the display "
    "role each patient is only {initials}. estimated_wait_minutes: avg = mean length of the "
    "doctor's last 20 completed consultations (10 if none, clamped 1..120); a WAITING entry "
    "with n WAITING ahead waits n*avg + max(avg - time the current patient has been in the "
    "room, 0); the patient in the room: 0."
)
_STREAM_DOC = {
    "description": (
        "`retry: <ms>`, then `id: <version>` / `event: queue` / `data: <queue snapshot JSON>` at once, "
        "the full snapshot again after every change, and a `: ping` comment at least every "
        "SSE_HEARTBEAT_SECONDS. The display role gets the masked snapshot (patients as initials). "
        "Authenticate with a bearer token or the session cookie (browser EventSource)."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


@blp.url_value_preprocessor
def _prefetch_todays_snapshot(endpoint, view_args):
    """Runs before authentication: today's snapshot is read in the identity's round trip."""
    if endpoint == "queue.QueueResource" and request.method == "GET" and "date" not in request.args:
        service.prefetch_today(view_args["doctor_id"])


def _snapshot_response(body: bytes):
    """The snapshot's JSON bytes, sent as they are: not parsed and dumped through the
    schema again on the hottest read of the system."""
    return current_app.response_class(body + b"\n", mimetype="application/json")


@blp.route("/queue/<id:doctor_id>")
class QueueResource(MethodView):
    @allow("queue.read")
    @blp.doc(description=SNAPSHOT_RULES)
    @blp.arguments(QueueQuery, location="query")
    @blp.response(200, QueueSnapshotSchema)
    @blp.alt_response(404, description="Unknown doctor")
    def get(self, query, doctor_id):
        """A doctor's queue on a date (default today)"""
        snapshot = service.get_snapshot(doctor_id, query.get("date") or clinic_today())
        return _snapshot_response(snapshot.form(sees_masked_queue(current_identity().role)))


@blp.route("/queue/<id:doctor_id>/next")
class QueueNextResource(MethodView):
    @allow("appointments.change_status")
    @blp.response(200, QueueSnapshotSchema)
    @blp.alt_response(404, description="Unknown doctor")
    @blp.alt_response(409, description="Nobody is waiting")
    def post(self, doctor_id):
        """Complete the patient in the room and call in the next one (today's queue)"""
        return _snapshot_response(service.call_next(doctor_id, current_identity()).full)


@blp.route("/queue/<id:doctor_id>/stream")
class QueueStreamResource(MethodView):
    @allow("queue.read")
    @blp.arguments(NoQuery, location="query")
    @blp.doc(responses={"200": _STREAM_DOC})
    @blp.alt_response(404, description="Not a doctor")
    @blp.alt_response(429, description="SSE_MAX_CONNECTIONS_PER_DOCTOR streams already open for this doctor")
    def get(self, _query, doctor_id):
        """Follow a doctor's queue live (Server-Sent Events)"""
        return sse_response(service.open_queue_stream(doctor_id, current_identity(), current_session_id()))


@blp.route("/queue/stream")
class QueuesStreamResource(MethodView):
    @allow("queue.read")
    @blp.arguments(QueuesStreamQuery, location="query")
    @blp.doc(
        description=(
            "Several doctors' queues on ONE connection (a browser opens at most six HTTP/1.1 "
            f"connections to a host), up to {MAX_STREAM_DOCTORS} doctors: `retry: <ms>`, then each "
            "doctor's `event: queue` (its own `id:`, that doctor's version; the snapshot names its "
            "doctor), then every change of any of them. Last-Event-ID is ignored: a reconnect gets "
            "every current snapshot. Counted once in the account's limit and once in each "
            "doctor's SSE_MAX_CONNECTIONS_PER_DOCTOR.",
        ),
        responses={"200": _STREAM_DOC},
    )
    @blp.alt_response(404, description="One of the ids is not a doctor")
    @blp.alt_response(429, description="A doctor's or the account's stream limit is full")
    def get(self, query):
        """Follow several doctors' queues live on one stream (Server-Sent Events)"""
        return sse_response(
            service.open_queues_stream(query["doctors"], current_identity(), current_session_id())
        )
