"""The patient's ticket: a signed link that follows one appointment in its queue, no account.

A ticket is `<id>.<expiry>.<signature>`: the appointment id and the expiry (Unix seconds),
both in base 36, signed by itsdangerous's Signer with SECRET_KEY under its own salt
(HMAC-SHA1, itsdangerous's default: a MAC does not rest on SHA-1's collision resistance,
and its 27 characters keep the link short enough for a small QR code). It carries
nothing else: no name, no patient id. It expires at the end of the appointment's day in
the clinic's time zone (midnight that starts the next day). The same appointment always
gets the same ticket (the signature is deterministic), so a reprinted slip still works.

Every refusal is the same 404 (`TICKET_NOT_FOUND`): a forged, tampered, expired or
oversized ticket, and one whose appointment no longer exists. The signature is compared
in constant time; only a genuine, unexpired ticket reaches the database, so the one
timing difference (the lookup) tells its holder nothing they do not know.

What a ticket answers (`read_ticket`) comes from the doctor's cached queue snapshot
(its masked form: position, wait, the token in the room, the initials) and, for an
appointment no longer in the line (completed, cancelled, no-show), the appointment's row:
its status and no position. Never a name, MRN, phone or patient id.

Its live stream (`open_ticket_stream`) listens on the doctor's broker topic with a
variant of its own (`ticket:<appointment id>`), so a doctor with no ticket open pays
nothing more per change; the worker's memo (bounded) builds each ticket's event once per
change. Its lease is counted only in its own limiter topic (`ticket:<appointment id>`,
TICKET_STREAM_LIMIT streams): never in the doctor's staff and display slots, and never in
an account's (there is none). The stream follows the appointment's own day and ends at
the ticket's expiry (checked at each heartbeat).
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as clock
from functools import lru_cache
from typing import NamedTuple

from itsdangerous import Signer
from sqlalchemy import bindparam, select

from hms.appointments.models import ACTIVE_STATUSES, Appointment
from hms.core.settings import app_object, setting
from hms.core.time import clinic_zone
from hms.errors import NotFound
from hms.extensions import db
from hms.patients.models import Patient
from hms.queue.service import get_snapshot
from hms.queue.snapshot import Snapshot, initials
from hms.realtime.memo import Encoded, sse_event
from hms.realtime.stream import Stream
from hms.realtime.streams import open_stream

TICKET_SALT = "hms.queue.ticket"
TICKET_NOT_FOUND = "This ticket is not valid or has expired; ask reception for a new one."
EVENT_NAME = "ticket"
# A genuine ticket is about 40 characters; anything much longer is refused unread.
MAX_TICKET_LENGTH = 100
# "<id>.<expiry>" (base 36) "." the signature (27 characters of URL-safe base64).
_TICKET = re.compile(r"([0-9a-z]{1,12}\.[0-9a-z]{1,12})\.([A-Za-z0-9_-]{27})")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


# --- signing ----------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _signer(secret_key: str) -> Signer:
    return Signer(secret_key, salt=TICKET_SALT)


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _DIGITS[digit] + digits
        if not number:
            return digits


def sign_ticket(appointment_id: int, expires_at: datetime) -> str:
    """The ticket of an appointment, valid until `expires_at`."""
    value = f"{_base36(appointment_id)}.{_base36(int(expires_at.timestamp()))}"
    return _signer(setting("SECRET_KEY")).sign(value).decode()


def verify_ticket(ticket: str) -> tuple[int, int]:
    """(appointment id, expiry in Unix seconds) of a genuine, unexpired ticket; else NotFound.

    Only the exact string signed is accepted: base64 decoding alone would let characters
    outside its alphabet, or the unused low bits of the signature's last character, vary
    without changing the signature, so the signature is recomputed and compared whole
    (in constant time)."""
    match = (
        _TICKET.fullmatch(ticket) if isinstance(ticket, str) and len(ticket) <= MAX_TICKET_LENGTH else None
    )
    if match is None:
        raise NotFound(TICKET_NOT_FOUND)
    expected = _signer(setting("SECRET_KEY")).get_signature(match[1])
    if not hmac.compare_digest(expected, match[2].encode()):
        raise NotFound(TICKET_NOT_FOUND)
    appointment_id, expires = (int(part, 36) for part in match[1].split("."))
    if time.time() >= expires:
        raise NotFound(TICKET_NOT_FOUND)
    return appointment_id, expires


def day_end(day: date) -> datetime:
    """When a ticket of an appointment on `day` expires: the next midnight, clinic time."""
    return datetime.combine(day + timedelta(days=1), clock.min, tzinfo=clinic_zone())


# --- the appointment's row ----------------------------------------------------------------

_a, _p = Appointment.__table__, Patient.__table__
_TICKET_ROW = (
    select(
        _a.c.doctor_id,
        _a.c.appointment_date,
        _a.c.status,
        _a.c.token,
        _a.c.priority,
        _p.c.name,
    )
    .select_from(_a.join(_p, _p.c.id == _a.c.patient_id))
    .where(_a.c.id == bindparam("appointment_id"))
)


def _row(appointment_id: int):
    row = db.session.connection().execute(_TICKET_ROW, {"appointment_id": appointment_id}).first()
    if row is None:
        raise NotFound(TICKET_NOT_FOUND)
    return row


def ticket_link(appointment_id: int) -> tuple[str, datetime]:
    """The path `/t/<ticket>` of an appointment's ticket and when it expires (the end of the
    appointment's day, clinic time; already past for an earlier day's appointment).
    NotFound for an unknown appointment."""
    appointment_date = db.session.scalar(select(_a.c.appointment_date).where(_a.c.id == appointment_id))
    if appointment_date is None:
        raise NotFound(f"Appointment {appointment_id} not found.")
    expires_at = day_end(appointment_date)
    return f"/t/{sign_ticket(appointment_id, expires_at)}", expires_at


# --- what a ticket shows ----------------------------------------------------------------


class _Queue(NamedTuple):
    """What tickets need of one snapshot, parsed once per worker for all its tickets."""

    doctor_name: str
    room: str | None
    now_serving_token: int | None
    entries: dict[int, dict]  # appointment id -> its masked entry


def doctor_room(doctor: dict) -> str | None:
    """The doctor's room as the snapshot shows it (None until the snapshot carries one).
    The one place that says where a ticket's room comes from."""
    return doctor.get("room")


@lru_cache(maxsize=128)
def _queue(snapshot: Snapshot) -> _Queue:
    data = json.loads(snapshot.masked)
    in_room = data.get("in_consultation")
    return _Queue(
        doctor_name=data["doctor"]["name"],
        room=doctor_room(data["doctor"]),
        now_serving_token=in_room["token"] if in_room else None,
        entries={entry["appointment_id"]: entry for entry in data["entries"]},
    )


class _Fixed(NamedTuple):
    """What never changes about an appointment (its queue, day, token and priority)."""

    appointment_id: int
    doctor_id: int
    day: str  # YYYY-MM-DD
    token: int
    priority: str


def _ticket_data(fixed: _Fixed, snapshot: Snapshot, row=None) -> dict:
    """The ticket's answer from the snapshot, and for an appointment not in the line
    (any more) from its row (read now if not given, after the snapshot: at least as new)."""
    queue = _queue(snapshot)
    entry = queue.entries.get(fixed.appointment_id)
    if entry is not None:
        status, position, wait = entry["status"], entry["queue_position"], entry["estimated_wait_minutes"]
        shown_initials = entry["patient"]["initials"]
    else:
        if row is None or row.status in ACTIVE_STATUSES:
            row = _row(fixed.appointment_id)  # it left the line since `row` was read
        status, position, wait = row.status, None, None
        shown_initials = initials(row.name)
    return {
        "token": fixed.token,
        "priority": fixed.priority,
        "status": status,
        "doctor": {"name": queue.doctor_name, "room": queue.room},
        "queue_position": position,
        "estimated_wait_minutes": wait,
        "now_serving_token": queue.now_serving_token,
        "patient": {"initials": shown_initials},
    }


def _open(ticket: str):
    appointment_id, expires = verify_ticket(ticket)
    row = _row(appointment_id)
    fixed = _Fixed(appointment_id, row.doctor_id, row.appointment_date.isoformat(), row.token, row.priority)
    return fixed, expires, row


def read_ticket(ticket: str) -> dict:
    """What a ticket shows now: {token, priority, status, doctor {name, room},
    queue_position, estimated_wait_minutes, now_serving_token, patient {initials}}.
    NotFound (always the same) for any ticket that is not genuine and current."""
    fixed, _, row = _open(ticket)
    return _ticket_data(fixed, _snapshot(fixed.doctor_id, row.appointment_date), row)


# --- the live stream ----------------------------------------------------------------------


def ticket_topic(appointment_id: int) -> str:
    """The limiter topic counting one ticket's streams (and its broker variant)."""
    return f"ticket:{appointment_id}"


def _snapshot(doctor_id: int, day: date) -> Snapshot:
    try:
        return get_snapshot(doctor_id, day)
    except NotFound:  # no longer a doctor: the ticket has nothing to follow
        raise NotFound(TICKET_NOT_FOUND) from None


def _encoded(fixed: _Fixed, snapshot: Snapshot, row=None) -> Encoded:
    data = json.dumps(_ticket_data(fixed, snapshot, row), separators=(",", ":"), ensure_ascii=False)
    return Encoded(snapshot.version, snapshot.date, sse_event(snapshot.version, EVENT_NAME, data.encode()))


def open_ticket_stream(ticket: str) -> Stream:
    """The ticket's live stream: its answer at once, then again on every change of the
    doctor's queue. NotFound or TooManyRequests (TICKET_STREAM_LIMIT streams of this
    ticket already open), both before any byte is streamed."""
    fixed, expires, row = _open(ticket)
    app = app_object()

    def read_first(day: str) -> Encoded:
        try:
            return _encoded(fixed, _snapshot(fixed.doctor_id, date.fromisoformat(day)), row)
        finally:
            db.session.remove()

    return open_stream(
        app,
        topic=fixed.doctor_id,
        variant=ticket_topic(fixed.appointment_id),
        read_first=read_first,
        load=_loader(app, fixed),
        today=_the_day(fixed.day),
        still_allowed=_until(expires),
        limit=int(setting("TICKET_STREAM_LIMIT")),
        refused="Too many screens follow this ticket; close one or try again shortly.",
        limit_topic=ticket_topic(fixed.appointment_id),
    )


# The callables a stream keeps, shared by the streams of the same ticket (or day) in a
# worker (bounded: least recently used dropped first).


@lru_cache(maxsize=4096)
def _loader(app, fixed: _Fixed) -> Callable[[str], Encoded]:
    def load(day: str) -> Encoded:
        with app.app_context():
            try:
                return _encoded(fixed, _snapshot(fixed.doctor_id, date.fromisoformat(day)))
            finally:
                db.session.remove()

    return load


@lru_cache(maxsize=64)
def _the_day(day: str) -> Callable[[], str]:
    """A ticket follows its appointment's day, whatever today is."""

    def today() -> str:
        return day

    return today


@lru_cache(maxsize=64)
def _until(expires: int) -> Callable[[], bool]:
    """Whether the ticket is still valid: its stream ends at the first heartbeat after."""

    def still_allowed() -> bool:
        return time.time() < expires

    return still_allowed
