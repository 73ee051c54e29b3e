"""The queue snapshot of one doctor and date, as one value: `Snapshot`.

A snapshot is who is waiting, who is in the room and how long each patient can expect
to wait, encoded once as compact JSON in its two forms: `full` (staff) and `masked` (the
waiting-room display: each patient reduced to {initials}). GET /api/queue sends one
form's bytes as they are; the live stream sends the same bytes inside its event.

Caching: the snapshot is cached per doctor and date under a tag that every committed
change of that queue replaces (`replace_tag`, run after the commit). A reader fetches
the tag with the stored snapshot in one round trip and uses the snapshot only if it was
stored under the current tag, so a reader that raced a write stores its result under
the old tag, which nobody reads again: a cached snapshot is never stale after a write.

SQL per uncached snapshot, whatever the queue length: one statement for the doctor, the
version and the active entries joined with their patients, and one for the recent
consultation lengths (skipped when nobody is waiting).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from sqlalchemy import and_, bindparam, select, text

from hms.appointments.models import ACTIVE_STATUS_SQL, IN_CONSULTATION, WAITING, Appointment, QueueDay
from hms.auth.models import User
from hms.core.cache import cache_get_many, cache_set
from hms.core.metrics import cache_result
from hms.core.time import utcnow
from hms.errors import NotFound
from hms.extensions import db
from hms.patients.models import Patient

RECENT_CONSULTATIONS = 20
DEFAULT_CONSULTATION_MINUTES = 10.0
MIN_CONSULTATION_MINUTES = 1.0
MAX_CONSULTATION_MINUTES = 120.0
TAG_SECONDS = 24 * 3600
FULL, MASKED = "full", "masked"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A queue at one version: its JSON, encoded once, in both forms."""

    doctor_id: int
    date: str  # YYYY-MM-DD
    version: int
    full: bytes
    masked: bytes

    def form(self, masked: bool) -> bytes:
        return self.masked if masked else self.full

    def data(self, masked: bool = False) -> dict:
        """The parsed JSON (tests and callers that need fields; the hot paths send bytes)."""
        return json.loads(self.form(masked))


# --- reading through the cache ----------------------------------------------------------


def tag_key(doctor_id: int, queue_date: date) -> str:
    return f"queue-tag:{doctor_id}:{queue_date.isoformat()}"


def snapshot_key(doctor_id: int, queue_date: date) -> str:
    return f"queue:{doctor_id}:{queue_date.isoformat()}"


def cache_keys(doctor_id: int, queue_date: date) -> tuple[str, str]:
    """What a cached read fetches in one round trip: the tag, then the stored snapshot."""
    return tag_key(doctor_id, queue_date), snapshot_key(doctor_id, queue_date)


def read_snapshot(doctor_id: int, queue_date: date, cache_seconds: int) -> Snapshot:
    """The snapshot through the cache: one round trip on a hit (see the module docstring).

    Raises NotFound if `doctor_id` is not a doctor."""
    tag, stored = cache_get_many(*cache_keys(doctor_id, queue_date))
    hit = tag is not None and isinstance(stored, tuple) and len(stored) == 2 and stored[0] == tag
    cache_result("queue_snapshot", hit)
    if hit:
        return stored[1]
    snapshot = build_snapshot(doctor_id, queue_date)
    store_snapshot(snapshot, tag or replace_tag(doctor_id, queue_date), cache_seconds)
    return snapshot


def replace_tag(doctor_id: int, queue_date: date) -> str:
    """A new tag for the queue: every snapshot cached before it is never read again.
    Run after COMMITTING a change of that queue."""
    tag = uuid.uuid4().hex[:12]
    cache_set(tag_key(doctor_id, queue_date), tag, timeout=TAG_SECONDS)
    return tag


def store_snapshot(snapshot: Snapshot, tag: str, cache_seconds: int) -> None:
    cache_set(
        snapshot_key(snapshot.doctor_id, date.fromisoformat(snapshot.date)), (tag, snapshot), cache_seconds
    )


# --- building it from the database ------------------------------------------------------

# Built once, at import; run on the session's connection (no ORM layer: the snapshot is
# read on every watched queue change).
_a, _q, _p, _u = Appointment.__table__, QueueDay.__table__, Patient.__table__, User.__table__
_SNAPSHOT_ROWS = (
    select(
        _u.c.name.label("doctor_name"),
        _u.c.room.label("doctor_room"),
        _q.c.version,
        _a.c.id,
        _a.c.token,
        _a.c.queue_position,
        _a.c.priority,
        _a.c.status,
        _a.c.waiting_since,
        _a.c.entry_time,
        _p.c.id.label("patient_id"),
        _p.c.mrn,
        _p.c.name,
    )
    .select_from(
        _u.outerjoin(_q, and_(_q.c.doctor_id == _u.c.id, _q.c.queue_date == bindparam("q_date")))
        .outerjoin(
            _a,
            and_(
                _a.c.doctor_id == _q.c.doctor_id,
                _a.c.appointment_date == _q.c.queue_date,
                text(ACTIVE_STATUS_SQL),
            ),
        )
        .outerjoin(_p, _p.c.id == _a.c.patient_id)
    )
    .where(_u.c.id == bindparam("q_doctor"), text("users.role = 'doctor'"))
    .order_by(_a.c.queue_position)
)
# The status is written as a literal so the partial index
# ix_appointments_doctor_completed_exit (doctor_id, exit_time WHERE status = 'COMPLETED')
# serves the query even from a generic prepared plan.
_RECENT_CONSULTATIONS = (
    select(_a.c.entry_time, _a.c.exit_time)
    .where(
        _a.c.doctor_id == bindparam("q_doctor"),
        text("appointments.status = 'COMPLETED'"),
        _a.c.exit_time.is_not(None),
        _a.c.entry_time.is_not(None),
    )
    .order_by(_a.c.exit_time.desc())
    .limit(RECENT_CONSULTATIONS)
)


def build_snapshot(doctor_id: int, queue_date: date) -> Snapshot:
    """Read the snapshot from the database (no cache), in the caller's transaction.

    Under the queue lock, just before a change's commit, it is exactly the committed state."""
    params = {"q_doctor": doctor_id, "q_date": queue_date}
    rows = db.session.connection().execute(_SNAPSHOT_ROWS, params).all()
    if not rows:
        raise NotFound(f"Doctor {doctor_id} not found.")
    version = rows[0].version or 0
    active = [row for row in rows if row.id is not None]
    has_waiting = any(row.status == WAITING for row in active)
    average = average_consultation_minutes(doctor_id) if has_waiting else DEFAULT_CONSULTATION_MINUTES
    waits = estimate_waits(active, average, utcnow())
    entries = [
        {
            "appointment_id": row.id,
            "token": row.token,
            "queue_position": row.queue_position,
            "priority": row.priority,
            "status": row.status,
            "patient": {"id": row.patient_id, "mrn": row.mrn, "name": row.name},
            "waiting_since": row.waiting_since.isoformat(),
            "estimated_wait_minutes": wait,
        }
        for row, wait in zip(active, waits, strict=True)
    ]
    doctor = {"id": doctor_id, "name": rows[0].doctor_name, "room": rows[0].doctor_room}
    full = _snapshot_dict(doctor, queue_date, version, entries)
    masked_entries = [
        {**entry, "patient": {"initials": initials(entry["patient"]["name"])}} for entry in entries
    ]
    masked = _snapshot_dict(doctor, queue_date, version, masked_entries)
    return Snapshot(doctor_id, queue_date.isoformat(), version, _encode(full), _encode(masked))


def _snapshot_dict(doctor: dict, queue_date: date, version: int, entries: list) -> dict:
    return {
        "doctor": doctor,
        "date": queue_date.isoformat(),
        "version": version,
        "waiting_count": sum(1 for entry in entries if entry["status"] == WAITING),
        "in_consultation": next((e for e in entries if e["status"] == IN_CONSULTATION), None),
        "entries": entries,
    }


def _encode(snapshot: dict) -> bytes:
    """Compact JSON, one line: what GET /api/queue answers and the stream's event carries."""
    return json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False).encode()


# --- estimated waits --------------------------------------------------------------------


def average_consultation_minutes(doctor_id: int) -> float:
    """Mean length (exit_time - entry_time) of this doctor's last 20 COMPLETED
    consultations that have both times, in minutes; 10 when there are none; clamped to
    1..120 so one forgotten or instant consultation cannot distort every estimate."""
    rows = db.session.connection().execute(_RECENT_CONSULTATIONS, {"q_doctor": doctor_id}).all()
    if not rows:
        return DEFAULT_CONSULTATION_MINUTES
    minutes = sum((row.exit_time - row.entry_time).total_seconds() for row in rows) / 60 / len(rows)
    return min(max(minutes, MIN_CONSULTATION_MINUTES), MAX_CONSULTATION_MINUTES)


def estimate_waits(entries: Sequence, average_minutes: float, now: datetime) -> list[int]:
    """Estimated minutes until each active entry (ordered by queue_position) is seen.

    IN_CONSULTATION: 0. WAITING with n WAITING patients ahead of it:
        n * average + max(average - minutes the current patient has been in the room, 0)
    (the second term only when someone is in the room), rounded to whole minutes.
    Entries need `.status` and `.entry_time`.
    """
    in_room = next((e for e in entries if e.status == IN_CONSULTATION), None)
    remaining = 0.0
    if in_room is not None and in_room.entry_time is not None:
        elapsed = (now - in_room.entry_time).total_seconds() / 60
        remaining = max(average_minutes - elapsed, 0.0)
    waits, ahead = [], 0
    for entry in entries:
        if entry.status == IN_CONSULTATION:
            waits.append(0)
            continue
        waits.append(round(ahead * average_minutes + remaining))
        ahead += 1
    return waits


# --- masking for the waiting-room display -------------------------------------------------


@lru_cache(maxsize=65536)
def initials(name: str) -> str:
    """ "Asha Kumar" -> "A.K."; first and last name only ("Asha Rani Kumar" -> "A.K.").

    Cached: a patient is masked in every snapshot of their queue while they wait (80
    waiting: 80 names per change, 2.6 us each, about a quarter of a millisecond)."""
    letters = [next((ch for ch in word if ch.isalnum()), "") for word in name.split()]
    letters = [letter.upper() for letter in letters if letter]
    if not letters:
        return "?"
    chosen = letters if len(letters) <= 2 else [letters[0], letters[-1]]
    return "".join(f"{letter}." for letter in chosen)
