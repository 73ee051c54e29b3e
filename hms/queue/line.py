"""The line of one doctor on one date: the lock, tokens, positions and status moves.

Every change to a queue runs inside a unit of work (hms.core.uow) and starts by updating
that queue's `queue_days` row (`lock_queue`: UPDATE ... RETURNING). The row lock
serializes every change of that queue, hands out tokens without gaps or duplicates
(never count or max + 1) and bumps the queue version. Positions are then re-numbered
under the lock, so the active appointments (WAITING, IN_CONSULTATION) always hold
positions 1..K:

- the patient in the room is position 1;
- then the URGENT waiting patients, then the NORMAL ones, each class first come, first
  served (booking, or rejoining the line, puts a patient last in their class);
- leaving the active set moves everyone behind up by one.

Each change ends with `QueueChanged`, published after the commit (hms.queue.changes).
The statements are built once, at import, as Core statements with bind parameters, and
run on the session's connection: building an ORM statement per request cost more CPU
than the statement itself (bench/step_cost.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, bindparam, case, func, insert, select, text, update

from hms.appointments.models import (
    ACTIVE_STATUS_SQL,
    CANCELLED,
    COMPLETED,
    IN_CONSULTATION,
    NO_SHOW,
    URGENT,
    WAITING,
    Appointment,
    QueueDay,
)
from hms.core.time import utcnow
from hms.errors import Conflict, InvalidState, NotFound
from hms.extensions import db
from hms.queue.events import event_row

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

# The columns a move reads and answers with (the basic appointment fields).
APPOINTMENT_COLUMNS = (
    "id",
    "patient_id",
    "doctor_id",
    "appointment_date",
    "appointment_type",
    "priority",
    "status",
    "token",
    "queue_position",
    "chief_complaint",
    "waiting_since",
    "entry_time",
    "exit_time",
    "created_at",
)


@dataclass(slots=True)
class AppointmentRow:
    """One appointment's basic fields, as a move reads and changes them under the lock."""

    id: int
    patient_id: int
    doctor_id: int
    appointment_date: date
    appointment_type: str
    priority: str
    status: str
    token: int
    queue_position: int | None
    chief_complaint: str | None
    waiting_since: datetime
    entry_time: datetime | None
    exit_time: datetime | None
    created_at: datetime

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in APPOINTMENT_COLUMNS}


_appointments = Appointment.__table__
_queue_days = QueueDay.__table__
_position = _appointments.c.queue_position
_COLUMNS = [_appointments.c[name] for name in APPOINTMENT_COLUMNS]


def _active():
    """The active appointments of the queue named by the bind parameters q_doctor, q_date."""
    return (
        _appointments.c.doctor_id == bindparam("q_doctor"),
        _appointments.c.appointment_date == bindparam("q_date"),
        text(ACTIVE_STATUS_SQL),
    )


# A doctor's first change of a day creates its row; only a doctor has queues. A new
# day's version starts from the doctor's highest version so far, so the version a client
# sees for this doctor keeps growing from one day to the next.
_CREATE_QUEUE_DAY = text(
    "INSERT INTO queue_days (doctor_id, queue_date, last_token, version) "
    "SELECT users.id, :queue_date, 0, "
    "(SELECT COALESCE(MAX(version), 0) FROM queue_days WHERE doctor_id = :doctor_id) "
    "FROM users WHERE users.id = :doctor_id AND users.role = 'doctor' "
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
# Where a patient joins the line, counted among the others (q_self: the patient, 0 for a
# new booking): URGENT after everyone in the room and every URGENT patient, NORMAL last.
_OTHERS_ACTIVE = (*_active(), _appointments.c.id != bindparam("q_self"))
_JOIN_URGENT = (
    select(func.count() + 1)
    .select_from(_appointments)
    .where(
        *_OTHERS_ACTIVE, text("(appointments.status = 'IN_CONSULTATION' OR appointments.priority = 'URGENT')")
    )
)
_JOIN_NORMAL = select(func.count() + 1).select_from(_appointments).where(*_OTHERS_ACTIVE)
_END_OF_LINE = (
    select(func.count() + 1).select_from(_appointments).where(*_active()).correlate(None).scalar_subquery()
)
# Those at or behind q_position move back one (room made for someone joining there).
_MAKE_ROOM_FROM = (
    update(_appointments)
    .where(*_OTHERS_ACTIVE, _position >= bindparam("q_position"))
    .values(queue_position=_position + 1)
)
# Entering the room: those ahead of q_position move back one.
_MAKE_ROOM_AHEAD = (
    update(_appointments)
    .where(*_active(), _position < bindparam("q_position"))
    .values(queue_position=_position + 1)
)
# Leaving the line: those behind q_position move up one.
_CLOSE_GAP_BEHIND = (
    update(_appointments)
    .where(*_active(), _position > bindparam("q_position"))
    .values(queue_position=_position - 1)
)
_APPOINTMENT_ROW = select(*_COLUMNS).where(_appointments.c.id == bindparam("appointment_id"))
# The patient in the room sorts first, then the line: the two rows `call_next` works on.
_QUEUE_HEAD = (
    select(*_COLUMNS)
    .where(*_active())
    .order_by(case((_appointments.c.status == IN_CONSULTATION, 0), else_=1), _position)
    .limit(2)
)
_SOMEONE_IN_ROOM = (
    select(_appointments.c.id).where(*_active(), _appointments.c.status == IN_CONSULTATION).limit(1)
)
# SET whichever columns the parameters name (besides appointment_id).
_UPDATE_APPOINTMENT = update(_appointments).where(_appointments.c.id == bindparam("appointment_id"))
# A NORMAL booking goes to the end of the line: its position is counted by the INSERT
# itself, which runs under the queue lock, so no other change can interleave.
_INSERT_AT_END = (
    insert(_appointments).values(queue_position=_END_OF_LINE).returning(_appointments.c.id, _position)
)
_INSERT_AT = insert(_appointments).returning(_appointments.c.id, _position)


def lock_queue(doctor_id: int, queue_date: date, *, take_token: bool = False) -> tuple[int, int]:
    """Lock the doctor's queue for the date, bump its version (and, for a booking, its
    token counter); return (last_token, version). Creates the day's row if needed;
    NotFound if `doctor_id` is not a doctor."""
    connection = db.session.connection()
    stmt = _LOCK_QUEUE_TAKING_TOKEN if take_token else _LOCK_QUEUE
    params = {"q_doctor": doctor_id, "q_date": queue_date}
    row = connection.execute(stmt, params).one_or_none()
    if row is None:
        connection.execute(_CREATE_QUEUE_DAY, {"doctor_id": doctor_id, "queue_date": queue_date})
        row = connection.execute(stmt, params).one_or_none()
        if row is None:
            raise NotFound(f"Doctor {doctor_id} not found.")
    return row.last_token, row.version


def lock_queue_of(appointment_id: int) -> tuple[int, date, int]:
    """Find an appointment's queue and lock it: (doctor_id, date, version). NotFound for
    an unknown appointment."""
    connection = db.session.connection()
    # Usually one statement; the day's row is missing only if the appointment came in
    # some other way than a booking.
    locked = connection.execute(_LOCK_QUEUE_OF_APPOINTMENT, {"appointment_id": appointment_id}).one_or_none()
    if locked is not None:
        return locked.doctor_id, locked.queue_date, locked.version
    row = connection.execute(_APPOINTMENT_ROW, {"appointment_id": appointment_id}).one_or_none()
    if row is None:
        raise NotFound(f"Appointment {appointment_id} not found.")
    _, version = lock_queue(row.doctor_id, row.appointment_date)
    return row.doctor_id, row.appointment_date, version


def read_appointment(appointment_id: int) -> AppointmentRow:
    """An appointment's row, read under its queue's lock."""
    row = db.session.connection().execute(_APPOINTMENT_ROW, {"appointment_id": appointment_id}).one()
    return AppointmentRow(*row)


def join_line(values: dict) -> tuple[int, int]:
    """Insert a booked appointment (`values`: its columns, token included) where its
    priority joins the line, under the queue lock taken by the caller; (id, position)."""
    connection = db.session.connection()
    queue = {"q_doctor": values["doctor_id"], "q_date": values["appointment_date"]}
    if values["priority"] != URGENT:  # the usual case: one statement
        return tuple(connection.execute(_INSERT_AT_END, {**values, **queue}).one())
    position = _make_room(URGENT, {**queue, "q_self": 0})
    return tuple(connection.execute(_INSERT_AT, {**values, "queue_position": position}).one())


def queue_head(doctor_id: int, queue_date: date) -> list[AppointmentRow]:
    """The patient in the room (if any) and the head of the line, under the lock."""
    rows = db.session.connection().execute(_QUEUE_HEAD, {"q_doctor": doctor_id, "q_date": queue_date})
    return [AppointmentRow(*row) for row in rows]


def move(
    appointment: AppointmentRow,
    target: str,
    actor_id: int,
    reason: str | None,
    events: list[dict],
    *,
    room_free: bool = False,
) -> None:
    """Apply one status change under the queue lock: times, positions, and the event,
    which is appended to `events` for the caller to insert (with any others, in one
    statement). `appointment` is updated in place.

    Entering the room moves the patient to the front (position 1; those ahead move back
    one). Leaving the active set (COMPLETED, CANCELLED, NO_SHOW) clears the position and
    moves everyone behind up by one. Rejoining (sent back from the room, or a late
    arrival after NO_SHOW) puts the patient last in their priority, with waiting_since =
    now. entry_time is set on entering the room, exit_time only on COMPLETED.
    """
    source = appointment.status
    event_type = TRANSITIONS.get((source, target))
    if event_type is None:
        raise InvalidState(f"An appointment cannot go from {source} to {target}.")
    queue = {"q_doctor": appointment.doctor_id, "q_date": appointment.appointment_date}
    connection = db.session.connection()
    now = utcnow()
    changes: dict = {"status": target}
    if target == IN_CONSULTATION:
        if not room_free and connection.scalar(_SOMEONE_IN_ROOM, queue) is not None:
            raise Conflict(ROOM_TAKEN)
        if appointment.queue_position > 1:  # at the head already (the usual call-in): nobody moves
            connection.execute(_MAKE_ROOM_AHEAD, {**queue, "q_position": appointment.queue_position})
        changes.update(queue_position=1, entry_time=now)
    elif target in LEAVING:
        connection.execute(_CLOSE_GAP_BEHIND, {**queue, "q_position": appointment.queue_position})
        changes["queue_position"] = None
        if target == COMPLETED:
            changes["exit_time"] = now
    else:  # back into the line: sent back from the room, or a late arrival after NO_SHOW
        if source == IN_CONSULTATION:
            connection.execute(_CLOSE_GAP_BEHIND, {**queue, "q_position": appointment.queue_position})
        position = _make_room(appointment.priority, {**queue, "q_self": appointment.id})
        changes.update(queue_position=position, waiting_since=now)
    connection.execute(_UPDATE_APPOINTMENT, {**changes, "appointment_id": appointment.id})
    for name, value in changes.items():
        setattr(appointment, name, value)
    events.append(
        event_row(
            appointment.id, event_type, actor_id, from_status=source, to_status=target, description=reason
        )
    )


def _make_room(priority: str, queue: dict) -> int:
    """The last place of `priority` among the others in the line (those behind it move
    back one): where a patient joins or rejoins."""
    connection = db.session.connection()
    if priority != URGENT:
        return connection.scalar(_JOIN_NORMAL, queue)
    position = connection.scalar(_JOIN_URGENT, queue)
    connection.execute(_MAKE_ROOM_FROM, {**queue, "q_position": position})
    return position
