"""Booking, status changes and calling the next patient: the queue's writes.

Every change to a doctor's queue on a date is one transaction that starts by updating
that doctor's QueueDay row (`UPDATE ... RETURNING`): the row lock serializes every
change of that queue, hands out tokens without gaps or duplicates (never count or
max + 1), and bumps the queue version. Positions are then re-numbered under the lock,
so the active appointments (WAITING, IN_CONSULTATION) always hold positions 1..K.
After the commit, and only then, the cached snapshots are invalidated and the live
streams notified.

The statements of the hot paths (booking, locking a queue, moving positions) are built
once, at import, as Core statements with bind parameters, and run on the session's
connection: building an ORM statement per request and running it through the ORM cost
more CPU than the statement itself (bench/step_cost.py).

Reads live in hms.appointments.queries; the snapshot in hms.appointments.queue
(`queue_snapshot` and `encoded_queue_snapshot` are re-exported here for the routes and the realtime domain).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import Date, bindparam, case, func, insert, select, text, update

from hms.appointments.events import event_row, record_event, record_events
from hms.appointments.models import (
    ACTIVE_STATUS_SQL,
    CANCELLED,
    COMPLETED,
    IN_CONSULTATION,
    NO_SHOW,
    WAITING,
    Appointment,
    QueueDay,
)
from hms.appointments.queries import APPOINTMENT_FIELDS, appointment_dict
from hms.appointments.queue import (
    EncodedSnapshot,
    build_snapshot,
    encoded_queue_snapshot,
    invalidate_queue,
    queue_snapshot,
    snapshot_cache_keys,
)
from hms.auth.service import Identity
from hms.billing.ledger import LineItem, open_bill
from hms.core.time import clinic_today, utcnow
from hms.core.uow import unit_of_work
from hms.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient
from hms.realtime.broker import notify_queue_changed, streams_want_events
from hms.reference.models import Category
from hms.staff.service import get_doctor_fees

__all__ = [
    "book_appointment",
    "call_next",
    "change_status",
    "encoded_queue_snapshot",
    "queue_snapshot",
    "snapshot_cache_keys",
]

MAX_DAYS_AHEAD = 365
CONSULTATION_CATEGORY = "Consultation"
HOSPITAL_FEE_CATEGORY = "Hospital fee"
LEAVING = (COMPLETED, CANCELLED, NO_SHOW)
ROOM_TAKEN = "Another patient is already in consultation with this doctor."

# (from, to) -> the event recorded. Anything else is 409.
TRANSITIONS: dict[tuple[str, str], str] = {
    (WAITING, IN_CONSULTATION): "ENTERED_ROOM",
    (WAITING, CANCELLED): "APPOINTMENT_CANCELLED",
    (WAITING, NO_SHOW): "NO_SHOW",
    (IN_CONSULTATION, COMPLETED): "CONSULTATION_COMPLETED",
    (IN_CONSULTATION, WAITING): "RETURNED_TO_QUEUE",
    (NO_SHOW, WAITING): "RETURNED_TO_QUEUE",
}

_appointments = Appointment.__table__
_queue_days = QueueDay.__table__
_position = _appointments.c.queue_position


def _active_sql():
    """The active appointments of the queue named by the bind parameters q_doctor, q_date."""
    return (
        _appointments.c.doctor_id == bindparam("q_doctor"),
        _appointments.c.appointment_date == bindparam("q_date"),
        text(ACTIVE_STATUS_SQL),
    )


_CREATE_QUEUE_DAY = text(
    # A new day's version starts from the doctor's highest version so far, so the
    # version a client sees for this doctor keeps growing from one day to the next.
    "INSERT INTO queue_days (doctor_id, queue_date, last_token, version) "
    "SELECT :doctor_id, :queue_date, 0, COALESCE(MAX(version), 0) FROM queue_days "
    "WHERE doctor_id = :doctor_id "
    "ON CONFLICT (doctor_id, queue_date) DO NOTHING"
).bindparams(bindparam("queue_date", type_=Date))
_LOCK_QUEUE = (
    update(_queue_days)
    .where(_queue_days.c.doctor_id == bindparam("q_doctor"), _queue_days.c.queue_date == bindparam("q_date"))
    .values(version=_queue_days.c.version + 1)
    .returning(_queue_days.c.last_token, _queue_days.c.version)
)
_LOCK_QUEUE_TAKING_TOKEN = _LOCK_QUEUE.values(last_token=_queue_days.c.last_token + 1)
# Finds an appointment's queue and locks it, in one statement.
_LOCK_QUEUE_OF_APPOINTMENT = (
    update(_queue_days)
    .where(
        _queue_days.c.doctor_id
        == select(_appointments.c.doctor_id)
        .where(_appointments.c.id == bindparam("appointment_id"))
        .scalar_subquery(),
        _queue_days.c.queue_date
        == select(_appointments.c.appointment_date)
        .where(_appointments.c.id == bindparam("appointment_id"))
        .scalar_subquery(),
    )
    .values(version=_queue_days.c.version + 1)
    .returning(_queue_days.c.doctor_id, _queue_days.c.queue_date, _queue_days.c.version)
)
_ACTIVE_COUNT = select(func.count()).select_from(_appointments).where(*_active_sql())
# Entering the room: those ahead of q_position move back one.
_MAKE_ROOM_AHEAD = (
    update(_appointments)
    .where(*_active_sql(), _position < bindparam("q_position"))
    .values(queue_position=_position + 1)
)
# Leaving the line: those behind q_position move up one.
_CLOSE_GAP_BEHIND = (
    update(_appointments)
    .where(*_active_sql(), _position > bindparam("q_position"))
    .values(queue_position=_position - 1)
)
_APPOINTMENT_COLUMNS = [_appointments.c[name] for name in APPOINTMENT_FIELDS]
_APPOINTMENT_ROW = select(*_APPOINTMENT_COLUMNS).where(_appointments.c.id == bindparam("appointment_id"))
# The patient in the room sorts first, then the line: the two rows `next` works on.
_QUEUE_HEAD = (
    select(*_APPOINTMENT_COLUMNS)
    .where(*_active_sql())
    .order_by(case((_appointments.c.status == IN_CONSULTATION, 0), else_=1), _position)
    .limit(2)
)
_SOMEONE_IN_ROOM = (
    select(_appointments.c.id).where(*_active_sql(), _appointments.c.status == IN_CONSULTATION).limit(1)
)
# SET whichever columns the parameters name (besides appointment_id).
_UPDATE_APPOINTMENT = update(_appointments).where(_appointments.c.id == bindparam("appointment_id"))
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
# The new appointment goes to the end of the line: its position is counted by the
# INSERT itself, which runs under the queue lock, so no other change can interleave.
_INSERT_BOOKING = (
    insert(_appointments)
    .values(
        queue_position=select(func.count() + 1)
        .select_from(_appointments)
        .where(*_active_sql())
        .correlate(None)
        .scalar_subquery()
    )
    .returning(_appointments.c.id, _appointments.c.queue_position)
)


def _lock_queue(doctor_id: int, queue_date: date, *, take_token: bool = False) -> tuple[int, int]:
    """Lock the doctor's queue for the date, bump its version (and, for a booking, its
    token counter); return (last_token, version). Creates the day's row if needed."""
    connection = db.session.connection()
    stmt = _LOCK_QUEUE_TAKING_TOKEN if take_token else _LOCK_QUEUE
    params = {"q_doctor": doctor_id, "q_date": queue_date}
    row = connection.execute(stmt, params).one_or_none()
    if row is None:
        connection.execute(_CREATE_QUEUE_DAY, {"doctor_id": doctor_id, "queue_date": queue_date})
        row = connection.execute(stmt, params).one()
    return row.last_token, row.version


def _after_queue_change(
    doctor_id: int,
    queue_date: date,
    version: int,
    snapshot: dict | None = None,
    *,
    watched: bool | None = None,
) -> EncodedSnapshot | None:
    """After COMMIT: drop cached snapshots, then tell the live streams.

    `snapshot`: the new snapshot, if the change read it inside its transaction: it is
    cached under the new tag, carried by the change's message (no second build), and
    returned encoded. `watched`: what streams_want_events answered, if asked."""
    encoded = invalidate_queue(doctor_id, queue_date, snapshot)
    notify_queue_changed(doctor_id, queue_date, version, encoded, watched=watched)
    return encoded


_QUEUES_OF_PATIENT = (
    select(_appointments.c.doctor_id, _appointments.c.appointment_date)
    .where(
        _appointments.c.patient_id == bindparam("patient_id"),
        _appointments.c.appointment_date >= bindparam("from_date"),
        text(ACTIVE_STATUS_SQL),
    )
    .distinct()
    .order_by(_appointments.c.doctor_id, _appointments.c.appointment_date)
)


def touch_queues_of_patient(patient_id: int) -> list[tuple[int, date, int]]:
    """Inside a transaction that changes what a queue snapshot shows of a patient (the
    name): bump the version of every queue, today on, the patient waits or sits in, so
    cached snapshots and the streams' last events are replaced. Locks those queues in
    (doctor, date) order, as every other change locks them one at a time. Returns the
    queues, for `announce_queue_changes` after the commit."""
    rows = db.session.connection().execute(
        _QUEUES_OF_PATIENT, {"patient_id": patient_id, "from_date": clinic_today()}
    )
    return [(doctor_id, day, _lock_queue(doctor_id, day)[1]) for doctor_id, day in rows.all()]


_TOUCH_QUEUES_OF_DOCTOR = (
    update(_queue_days)
    .where(
        _queue_days.c.doctor_id == bindparam("q_doctor"), _queue_days.c.queue_date >= bindparam("from_date")
    )
    .values(version=_queue_days.c.version + 1)
    .returning(_queue_days.c.doctor_id, _queue_days.c.queue_date, _queue_days.c.version)
)


def touch_queues_of_doctor(doctor_id: int) -> list[tuple[int, date, int]]:
    """Like `touch_queues_of_patient`, for a change of what a snapshot shows of the
    doctor (the name): every queue of the doctor, today on. Call it before locking the
    doctor's account row: a booking locks its queue first and the account (its foreign
    key) after, so this order cannot deadlock with it."""
    rows = db.session.connection().execute(
        _TOUCH_QUEUES_OF_DOCTOR, {"q_doctor": doctor_id, "from_date": clinic_today()}
    )
    return [(row.doctor_id, row.queue_date, row.version) for row in rows]


def announce_queue_changes(queues: list[tuple[int, date, int]]) -> None:
    """After COMMIT of the transaction that touched these queues (`touch_queues_of_*`)."""
    for doctor_id, day, version in queues:
        _after_queue_change(doctor_id, day, version)


def _snapshot_for_streams(
    doctor_id: int, queue_date: date, watched: bool, doctor: dict | None = None
) -> dict | None:
    """Just before COMMIT, under the queue lock: the new snapshot if streams want it.

    Read here, it is exactly the committed state, costs no second transaction (pool
    checkout, BEGIN, COMMIT) after the commit, and the change's message carries it."""
    return build_snapshot(doctor_id, queue_date, doctor) if watched else None


def _active_count(doctor_id: int, queue_date: date) -> int:
    return db.session.connection().scalar(_ACTIVE_COUNT, {"q_doctor": doctor_id, "q_date": queue_date})


def _shift_positions(doctor_id: int, queue_date: date, stmt, position: int) -> None:
    """One statement: _MAKE_ROOM_AHEAD or _CLOSE_GAP_BEHIND of `position`."""
    db.session.connection().execute(
        stmt, {"q_doctor": doctor_id, "q_date": queue_date, "q_position": position}
    )


# --- booking ----------------------------------------------------------------------------


def book_appointment(data: dict, identity: Identity) -> dict:
    """Book a patient with a doctor: a token, a place at the end of the line, a CREATED
    event and the consultation bill (consultation fee + hospital fee), in one transaction."""
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

    watched = streams_want_events(doctor_id, queue_date)
    with unit_of_work():
        connection = db.session.connection()
        patient_found, consultation_category, hospital_category = connection.execute(
            _BOOKING_LOOKUP, {"patient_id": patient_id}
        ).one()
        if patient_found is None:
            raise ValidationFailed.field("patient_id", "No patient with this id.")
        token, version = _lock_queue(doctor_id, queue_date, take_token=True)
        now = utcnow()
        values = {
            "patient_id": patient_id,
            "doctor_id": doctor_id,
            "appointment_date": queue_date,
            "appointment_type": data["appointment_type"],
            "status": WAITING,
            "token": token,
            "chief_complaint": data.get("chief_complaint"),
            "created_by_id": identity.id,
            "created_at": now,
            "waiting_since": now,
        }
        appointment_id, position = connection.execute(
            _INSERT_BOOKING, {**values, "q_doctor": doctor_id, "q_date": queue_date}
        ).one()
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
        booked = SimpleNamespace(
            **values, id=appointment_id, queue_position=position, entry_time=None, exit_time=None
        )
        result = {**appointment_dict(booked), "bill_id": bill_id}
        snapshot = _snapshot_for_streams(doctor_id, queue_date, watched, doctor)
    _after_queue_change(doctor_id, queue_date, version, snapshot, watched=watched)
    return result


def _fee(value: str | None) -> Decimal:
    return Decimal(value) if value is not None else Decimal("0.00")


# --- status changes ---------------------------------------------------------------------


def change_status(appointment_id: int, status: str, reason: str | None, identity: Identity) -> dict:
    """Move an appointment along the status machine, re-numbering the queue, in one
    transaction. A doctor may only change their own appointments (403)."""
    with unit_of_work():
        connection = db.session.connection()
        # Usually one statement finds the appointment's queue and locks it; the day's row
        # is missing only if the appointment came in some other way than a booking.
        locked = connection.execute(
            _LOCK_QUEUE_OF_APPOINTMENT, {"appointment_id": appointment_id}
        ).one_or_none()
        if locked is not None:
            doctor_id, queue_date, version = locked
        else:
            key = connection.execute(_APPOINTMENT_ROW, {"appointment_id": appointment_id}).one_or_none()
            if key is None:
                raise NotFound(f"Appointment {appointment_id} not found.")
            doctor_id, queue_date, version = key.doctor_id, key.appointment_date, None
        if identity.role == "doctor" and doctor_id != identity.id:
            raise Forbidden("A doctor may only change their own appointments.")  # rolls back the lock
        if version is None:
            _, version = _lock_queue(doctor_id, queue_date)
        # Asked under the lock (the queue is known only now): one Redis round trip.
        watched = streams_want_events(doctor_id, queue_date)
        # Re-read under the lock: the loser of two racing changes sees the winner's status.
        appointment = SimpleNamespace(
            **connection.execute(_APPOINTMENT_ROW, {"appointment_id": appointment_id}).one()._mapping
        )
        events: list[dict] = []
        _transition(appointment, status, identity.id, reason, events)
        record_events(events)
        result = appointment_dict(appointment)
        snapshot = _snapshot_for_streams(doctor_id, queue_date, watched)
    _after_queue_change(doctor_id, queue_date, version, snapshot, watched=watched)
    return result


def call_next(doctor_id: int, identity: Identity) -> EncodedSnapshot:
    """Complete the patient in the room (if any) and call in the first WAITING one, in one
    transaction; answer today's snapshot (as sent: JSON text, `.data` parsed). 409 (and
    nothing changed) if nobody waits."""
    if identity.role == "doctor" and doctor_id != identity.id:
        raise Forbidden("A doctor may only call the next patient of their own queue.")
    doctor = get_doctor_fees(doctor_id)
    if doctor is None:
        raise NotFound(f"Doctor {doctor_id} not found.")
    today = clinic_today()
    with unit_of_work():
        connection = db.session.connection()
        _, version = _lock_queue(doctor_id, today)
        # One statement for both: the patient in the room sorts first, then the line.
        head = [
            SimpleNamespace(**row._mapping)
            for row in connection.execute(_QUEUE_HEAD, {"q_doctor": doctor_id, "q_date": today})
        ]
        in_room = head[0] if head and head[0].status == IN_CONSULTATION else None
        if len(head) == 2 and head[1].status == IN_CONSULTATION:
            raise Conflict(ROOM_TAKEN)  # two in the room: nobody can be called in
        first_waiting = next((row for row in head if row.status == WAITING), None)
        events: list[dict] = []
        if in_room is not None:
            left_from = in_room.queue_position
            _transition(in_room, COMPLETED, identity.id, None, events)
            if first_waiting is not None and first_waiting.queue_position > left_from:
                first_waiting.queue_position -= 1  # the completion moved everyone behind up one
        if first_waiting is None:
            raise Conflict("Nobody is waiting in this queue.")
        # The room is free: emptied just now, or nobody was in it (read under the lock).
        _transition(first_waiting, IN_CONSULTATION, identity.id, None, events, room_free=True)
        record_events(events)  # both events in one INSERT
        # Read under the queue lock, just before the commit: exactly the committed state.
        snapshot = build_snapshot(doctor_id, today, doctor)
    return _after_queue_change(doctor_id, today, version, snapshot)


def _transition(
    appointment: SimpleNamespace,
    target: str,
    actor_id: int,
    reason: str | None,
    events: list[dict],
    *,
    room_free: bool = False,
) -> None:
    """Apply one status change under the queue lock: times, positions, and the event,
    which is appended to `events` for the caller to insert (with any others, in one
    statement). `appointment`: the row (all of _APPOINTMENT_COLUMNS), updated in place.

    Positions: entering the room moves the patient to the front (position 1; those
    ahead move back one), so the room is always the head of the line. Leaving the
    active set (COMPLETED, CANCELLED, NO_SHOW) clears the position and moves everyone
    behind up by one. Rejoining (sent back from the room, or a late arrival after
    NO_SHOW) puts the patient last, with waiting_since = now. entry_time is set on
    entering the room, exit_time only on COMPLETED (leaving the room).
    """
    source = appointment.status
    event_type = TRANSITIONS.get((source, target))
    if event_type is None:
        raise InvalidState(f"An appointment cannot go from {source} to {target}.")
    connection = db.session.connection()
    doctor_id, queue_date = appointment.doctor_id, appointment.appointment_date
    old_position = appointment.queue_position
    now = utcnow()
    changes: dict = {"status": target}
    if target == IN_CONSULTATION:
        if not room_free:
            someone = connection.scalar(_SOMEONE_IN_ROOM, {"q_doctor": doctor_id, "q_date": queue_date})
            if someone is not None:
                raise Conflict(ROOM_TAKEN)
        if old_position > 1:  # at the head already (the usual call-in): nobody moves
            _shift_positions(doctor_id, queue_date, _MAKE_ROOM_AHEAD, old_position)
        changes.update(queue_position=1, entry_time=now)
    elif target in LEAVING:
        changes["queue_position"] = None
        if target == COMPLETED:
            changes["exit_time"] = now
        _shift_positions(doctor_id, queue_date, _CLOSE_GAP_BEHIND, old_position)
    elif source == IN_CONSULTATION:  # sent back to the end of the line
        last = _active_count(doctor_id, queue_date)
        _shift_positions(doctor_id, queue_date, _CLOSE_GAP_BEHIND, old_position)
        changes.update(queue_position=last, waiting_since=now)
    else:  # NO_SHOW -> WAITING: arrived late
        changes.update(queue_position=_active_count(doctor_id, queue_date) + 1, waiting_since=now)
    connection.execute(_UPDATE_APPOINTMENT, {**changes, "appointment_id": appointment.id})
    for name, value in changes.items():
        setattr(appointment, name, value)
    events.append(
        event_row(
            appointment.id, event_type, actor_id, from_status=source, to_status=target, description=reason
        )
    )
