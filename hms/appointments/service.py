"""Booking and status changes: each one unit of work on the doctor's queue.

A booking checks the doctor (cached profile) and the patient, takes a token and a place
in the line (hms.queue.line), records the CREATED event and opens the consultation bill
(hms.billing.ledger), all in one transaction; a status change moves the appointment
under its queue's lock. Each records a `QueueChanged`, published after the commit.

Reads live in hms.appointments.queries; the queue itself in hms.queue.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import bindparam, select

from hms.appointments.models import WAITING
from hms.appointments.schemas import BookedAppointmentSchema
from hms.auth.service import Identity
from hms.billing.ledger import LineItem, open_bill
from hms.core.idempotency import StoredResponse, run_once
from hms.core.roles import own_records_only
from hms.core.time import clinic_today, utcnow
from hms.core.uow import unit_of_work
from hms.errors import Conflict, Forbidden, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient
from hms.queue.changes import record_change, streams_watch
from hms.queue.events import record_event, record_events
from hms.queue.line import APPOINTMENT_COLUMNS, join_line, lock_queue, lock_queue_of, move, read_appointment
from hms.reference.models import Category
from hms.staff.service import get_doctor_fees

MAX_DAYS_AHEAD = 365
CONSULTATION_CATEGORY = "Consultation"
HOSPITAL_FEE_CATEGORY = "Hospital fee"

# Booking: does the patient exist, and which categories do the fees go under?
_BOOKING_LOOKUP = select(
    select(Patient.__table__.c.id).where(Patient.__table__.c.id == bindparam("patient_id")).scalar_subquery(),
    select(Category.__table__.c.id)
    .where(Category.__table__.c.name == CONSULTATION_CATEGORY)
    .scalar_subquery(),
    select(Category.__table__.c.id)
    .where(Category.__table__.c.name == HOSPITAL_FEE_CATEGORY)
    .scalar_subquery(),
)


def book_appointment(data: dict, identity: Identity) -> dict:
    """Book a patient with a doctor: a token, a place in the line, a CREATED event and
    the consultation bill (consultation fee + hospital fee), in one unit of work."""
    today = clinic_today()
    queue_date = data.get("appointment_date") or today
    if queue_date < today:
        raise ValidationFailed.field("appointment_date", "Must not be in the past.")
    if queue_date > today + timedelta(days=MAX_DAYS_AHEAD):
        raise ValidationFailed.field("appointment_date", f"At most {MAX_DAYS_AHEAD} days ahead.")
    doctor_id, patient_id = data["doctor_id"], data["patient_id"]
    doctor = get_doctor_fees(doctor_id)  # cached: no query on the users table per booking
    if doctor is None or not doctor["active"]:
        raise ValidationFailed.field("doctor_id", "No active doctor with this id.")
    if not doctor["is_available"]:
        raise Conflict(f"Dr. {doctor['name']} is not available for appointments.")

    watched = streams_watch(doctor_id, queue_date)
    with unit_of_work():
        patient_found, consultation_category, hospital_category = (
            db.session.connection().execute(_BOOKING_LOOKUP, {"patient_id": patient_id}).one()
        )
        if patient_found is None:
            raise ValidationFailed.field("patient_id", "No patient with this id.")
        token, version = lock_queue(doctor_id, queue_date, take_token=True)
        now = utcnow()
        values = {
            "patient_id": patient_id,
            "doctor_id": doctor_id,
            "appointment_date": queue_date,
            "appointment_type": data["appointment_type"],
            "priority": data.get("priority") or "NORMAL",
            "status": WAITING,
            "token": token,
            "chief_complaint": data.get("chief_complaint"),
            "created_by_id": identity.id,
            "created_at": now,
            "waiting_since": now,
        }
        appointment_id, position = join_line(values)
        record_event(appointment_id, "CREATED", identity.id, to_status=WAITING, description=f"Token {token}.")
        bill_id = open_bill(
            patient_id=patient_id,
            created_by_id=identity.id,
            appointment_id=appointment_id,
            due_date=queue_date,
            items=[
                LineItem("Consultation fee", 1, _fee(doctor["consultation_fee"]), consultation_category),
                LineItem("Hospital fee", 1, _fee(doctor["hospital_fee"]), hospital_category),
            ],
        )
        record_change(doctor_id, queue_date, version, watched=watched)
    booked = {
        **values,
        "id": appointment_id,
        "queue_position": position,
        "entry_time": None,
        "exit_time": None,
    }
    return {**{name: booked[name] for name in APPOINTMENT_COLUMNS}, "bill_id": bill_id}


_BOOKED_SCHEMA = BookedAppointmentSchema()


def book_appointment_once(data: dict, identity: Identity, idempotency_key: str | None) -> StoredResponse:
    """Book an appointment, at most once per Idempotency-Key of the caller's account: the
    same key with the same `data` answers the first booking (replayed=True) and books
    nothing (no second token, bill or event); another body under the key is 422. Without
    a key, a plain booking. The answer's body is the booking's JSON as POST
    /api/appointments answers it, status 201.

    The key is claimed first, in the booking's own transaction: a retry racing the
    first waits for it (PostgreSQL) and answers its result."""
    return run_once(
        "appointment.book",
        None,
        data,
        user_id=identity.id,
        key=idempotency_key,
        work=lambda _uow: _BOOKED_SCHEMA.dump(book_appointment(data, identity)),
    )


def _fee(value: str | None) -> Decimal:
    return Decimal(value) if value is not None else Decimal("0.00")


def change_status(appointment_id: int, status: str, reason: str | None, identity: Identity) -> dict:
    """Move an appointment along the status machine, re-numbering the queue, in one unit
    of work. A doctor may only change their own appointments (403)."""
    with unit_of_work():
        doctor_id, queue_date, version = lock_queue_of(appointment_id)
        if own_records_only(identity.role, "appointments.change_status") and doctor_id != identity.id:
            raise Forbidden("A doctor may only change their own appointments.")  # rolls back the lock
        # Asked under the lock (the queue is known only now): one Redis round trip.
        watched = streams_watch(doctor_id, queue_date)
        # Read under the lock: the loser of two racing changes sees the winner's status.
        appointment = read_appointment(appointment_id)
        events: list[dict] = []
        move(appointment, status, identity.id, reason, events)
        record_events(events)
        record_change(doctor_id, queue_date, version, watched=watched)
    return appointment.as_dict()
