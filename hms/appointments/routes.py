"""HTTP routes of the appointments domain: booking, status changes and reads.

POST /api/appointments takes an `Idempotency-Key` header (hms.core.idempotency): a retry
with the same key and body answers the first booking, marked with
`Idempotent-Replayed: true`, and books nothing new."""

from flask import jsonify
from flask.views import MethodView

from hms.appointments import queries, service
from hms.appointments.schemas import (
    AppointmentDetailSchema,
    AppointmentEventPageSchema,
    AppointmentListQuery,
    AppointmentPageSchema,
    AppointmentSchema,
    BookedAppointmentSchema,
    BookingSchema,
    StatusChangeSchema,
)
from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import IdempotencyHeaderSchema, PageQuery
from hms.core.idempotency import StoredResponse

blp = Blueprint("appointments", __name__, url_prefix="/api", description="Appointments")

BOOKING_RULES = (
    "appointment_date defaults to today (clinic time zone); a past date, or one more than "
    "365 days ahead, is 422. Unknown patient, or a doctor_id that is not an active doctor: "
    "422. Doctor not available: 409. The token comes from the doctor's per-day counter "
    "(1, 2, 3... never reused); the patient joins the end of the line for their priority "
    "(URGENT ahead of NORMAL). A bill is opened "
    "with two items, consultation fee and hospital fee (categories 'Consultation' and "
    "'Hospital fee' when they exist), due on the appointment date."
)
STATUS_RULES = (
    "Allowed: WAITING->IN_CONSULTATION|CANCELLED|NO_SHOW, IN_CONSULTATION->COMPLETED|WAITING, "
    "NO_SHOW->WAITING; anything else is 409, and so is calling a second patient into the room. "
    "Entering the room moves the patient to position 1; leaving the active set clears the "
    "position and moves everyone behind up by one; rejoining (sent back, late arrival) goes to "
    "the end with waiting_since = now. entry_time is set on entering the room, exit_time on "
    "COMPLETED only. A doctor may change only their own appointments (403)."
)
LIST_RULES = "Newest first: appointment_date descending, then booking time descending."


def _answer(result: StoredResponse):
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return jsonify(result.body), result.status, headers


@blp.route("/appointments")
class AppointmentsResource(MethodView):
    @allow("appointments.read")
    @blp.doc(description=LIST_RULES)
    @blp.arguments(AppointmentListQuery, location="query")
    @blp.response(200, AppointmentPageSchema)
    def get(self, query):
        """List appointments by doctor, patient, status and date"""
        filters = {name: query.get(name) for name in ("doctor_id", "patient_id", "status")}
        return queries.list_appointments(
            page=query["page"], limit=query["limit"], appointment_date=query.get("date"), **filters
        ).as_dict()

    @allow("appointments.book")
    @blp.doc(description=BOOKING_RULES)
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(BookingSchema)
    @blp.response(201, BookedAppointmentSchema)
    @blp.alt_response(409, description="Doctor not available")
    @blp.alt_response(
        422, description="Invalid input, unknown patient or doctor, or a reused Idempotency-Key"
    )
    def post(self, headers, data):
        """Book an appointment: a token in the doctor's queue and the consultation bill
        (Idempotency-Key makes retries safe)"""
        key = headers.get("idempotency_key")
        return _answer(service.book_appointment_once(data, current_identity(), key))


@blp.route("/appointments/<id:appointment_id>")
class AppointmentResource(MethodView):
    @allow("appointments.read")
    @blp.response(200, AppointmentDetailSchema)
    @blp.alt_response(404, description="Unknown appointment")
    def get(self, appointment_id):
        """One appointment with its patient and doctor"""
        return queries.get_appointment(appointment_id)


@blp.route("/appointments/<id:appointment_id>/status")
class AppointmentStatusResource(MethodView):
    @allow("appointments.change_status")
    @blp.doc(description=STATUS_RULES)
    @blp.arguments(StatusChangeSchema)
    @blp.response(200, AppointmentSchema)
    @blp.alt_response(404, description="Unknown appointment")
    @blp.alt_response(409, description="Transition not allowed, or the room is taken")
    def patch(self, data, appointment_id):
        """Change an appointment's status (and re-number the queue)"""
        return service.change_status(appointment_id, data["status"], data.get("reason"), current_identity())


@blp.route("/appointments/<id:appointment_id>/events")
class AppointmentEventsResource(MethodView):
    @allow("appointments.read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, AppointmentEventPageSchema)
    @blp.alt_response(404, description="Unknown appointment")
    def get(self, query, appointment_id):
        """The appointment's event log, oldest first"""
        return queries.list_events(appointment_id, query["page"], query["limit"]).as_dict()


@blp.route("/patients/<id:patient_id>/appointments")
class PatientAppointmentsResource(MethodView):
    @allow("appointments.read")
    @blp.doc(description=LIST_RULES)
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, AppointmentPageSchema)
    @blp.alt_response(404, description="Unknown patient")
    def get(self, query, patient_id):
        """A patient's appointments, newest first"""
        return queries.list_patient_appointments(patient_id, query["page"], query["limit"]).as_dict()
