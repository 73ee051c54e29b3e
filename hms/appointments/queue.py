"""The queue snapshot of one doctor and date: who is waiting, who is in the room, and
how long each patient can expect to wait.

The snapshot is a JSON-ready dict, cached per doctor and date (unmasked, and masked
for the waiting-room display) for QUEUE_CACHE_SECONDS. Cache keys carry a tag that
every committed queue change replaces (`invalidate_queue`). A reader fetches the tag
BEFORE reading the database, so a reader that raced a write stores its result under
the old tag, which nobody reads again: a cached snapshot is never stale after a write.

SQL per uncached snapshot, whatever the queue length: the doctor (usually from the
staff cache, else one statement), one statement for the version and the active
entries joined with their patients, and one for the recent consultation lengths
(skipped when nobody is waiting).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from functools import lru_cache

from flask import current_app
from sqlalchemy import and_, bindparam, select, text

from hms.appointments.models import ACTIVE_STATUS_SQL, IN_CONSULTATION, WAITING, Appointment, QueueDay
from hms.core.cache import cache_get_many, cache_set
from hms.core.time import utcnow
from hms.errors import NotFound
from hms.extensions import db
from hms.patients.models import Patient
from hms.realtime.snapshots import snapshot_json
from hms.staff.service import get_doctor_fees

RECENT_CONSULTATIONS = 20
DEFAULT_CONSULTATION_MINUTES = 10.0
MIN_CONSULTATION_MINUTES = 1.0
MAX_CONSULTATION_MINUTES = 120.0
_TAG_SECONDS = 24 * 3600


# --- cache ------------------------------------------------------------------------------


def _tag_key(doctor_id: int, queue_date: date) -> str:
    return f"queue-tag:{doctor_id}:{queue_date.isoformat()}"


def _new_tag(doctor_id: int, queue_date: date) -> str:
    tag = uuid.uuid4().hex[:12]
    cache_set(_tag_key(doctor_id, queue_date), tag, timeout=_TAG_SECONDS)
    return tag


def invalidate_queue(
    doctor_id: int, queue_date: date, snapshot: dict | None = None
) -> EncodedSnapshot | None:
    """Call after COMMITTING any change to this doctor's queue on this date.

    `snapshot`: the unmasked snapshot the change's own transaction read just before
    its commit, under the queue lock (so it is exactly the committed state). It is
    cached under the new tag, and returned encoded."""
    tag = _new_tag(doctor_id, queue_date)
    return _store(doctor_id, queue_date, tag, snapshot, masked=False) if snapshot is not None else None


def _snapshot_key(doctor_id: int, queue_date: date, masked: bool) -> str:
    return f"queue:{doctor_id}:{queue_date.isoformat()}:{'masked' if masked else 'full'}"


def snapshot_cache_keys(doctor_id: int, queue_date: date, masked: bool) -> tuple[str, str]:
    """The keys a cached snapshot read fetches, in one round trip: the tag, the snapshot."""
    return _tag_key(doctor_id, queue_date), _snapshot_key(doctor_id, queue_date, masked)


def _store(doctor_id: int, queue_date: date, tag: str, snapshot: dict, masked: bool) -> EncodedSnapshot:
    """Encode a snapshot (compact JSON, the same text the stream's event carries) and
    cache it under `tag`."""
    encoded = EncodedSnapshot(snapshot_json(snapshot), snapshot)
    cache_set(
        _snapshot_key(doctor_id, queue_date, masked),
        (tag, encoded.json),
        current_app.config["QUEUE_CACHE_SECONDS"],
    )
    return encoded


# --- the snapshot -----------------------------------------------------------------------

# Built once, at import; run on the session's connection (no ORM layer: the snapshot is
# read on every queue change).
_a, _q, _p = Appointment.__table__, QueueDay.__table__, Patient.__table__
_SNAPSHOT_ROWS = (
    select(
        _q.c.version,
        _a.c.id,
        _a.c.token,
        _a.c.queue_position,
        _a.c.status,
        _a.c.waiting_since,
        _a.c.entry_time,
        _p.c.id.label("patient_id"),
        _p.c.mrn,
        _p.c.name,
    )
    .select_from(
        _q.outerjoin(
            _a,
            and_(
                _a.c.doctor_id == _q.c.doctor_id,
                _a.c.appointment_date == _q.c.queue_date,
                text(ACTIVE_STATUS_SQL),
            ),
        ).outerjoin(_p, _p.c.id == _a.c.patient_id)
    )
    .where(_q.c.doctor_id == bindparam("q_doctor"), _q.c.queue_date == bindparam("q_date"))
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


class EncodedSnapshot:
    """A snapshot as the JSON text that is cached and sent, parsed only when needed."""

    __slots__ = ("json", "_data")

    def __init__(self, json_text: str, data: dict | None = None):
        self.json = json_text
        self._data = data

    @property
    def data(self) -> dict:
        if self._data is None:
            self._data = json.loads(self.json)
        return self._data


def queue_snapshot(doctor_id: int, queue_date: date, masked: bool) -> dict:
    """The queue of one doctor on one date as a JSON-ready dict (see API.md).

    `masked` (the display role) reduces every patient to {initials}. Raises NotFound
    if `doctor_id` is not a doctor. `version` is the queue's version (0 before any
    booking); the live stream uses it as the event id.
    """
    return encoded_queue_snapshot(doctor_id, queue_date, masked).data


def encoded_queue_snapshot(doctor_id: int, queue_date: date, masked: bool) -> EncodedSnapshot:
    """The snapshot as JSON text (what GET /api/queue sends as is), read through the cache.

    A cache hit costs one round trip: the queue's current tag and the stored snapshot
    are read together, and the snapshot counts only if it was stored under that tag.
    A snapshot built from data older than the last commit carries an older tag, so it
    is never served after the write that replaced the tag. The cache holds the encoded
    text, so a hit is neither unpickled into objects nor encoded again.
    """
    tag, stored = cache_get_many(*snapshot_cache_keys(doctor_id, queue_date, masked))
    if tag is not None and isinstance(stored, tuple) and stored[0] == tag:
        return EncodedSnapshot(stored[1])
    tag = tag or _new_tag(doctor_id, queue_date)
    snapshot = build_snapshot(doctor_id, queue_date)
    encoded = _store(doctor_id, queue_date, tag, snapshot, masked=False)
    return _store(doctor_id, queue_date, tag, mask_snapshot(snapshot), masked=True) if masked else encoded


def build_snapshot(doctor_id: int, queue_date: date, doctor: dict | None = None) -> dict:
    """Read the snapshot from the database (no cache). `doctor`: the doctor's profile
    (get_doctor_fees), if the caller has read it already."""
    if doctor is None:
        doctor = get_doctor_fees(doctor_id)
    if doctor is None:
        raise NotFound(f"Doctor {doctor_id} not found.")
    # Version and entries in ONE statement, so they always describe the same state.
    params = {"q_doctor": doctor_id, "q_date": queue_date}
    rows = db.session.connection().execute(_SNAPSHOT_ROWS, params).all()
    version = rows[0].version if rows else 0
    active = [row for row in rows if row.id is not None]
    has_waiting = any(row.status == WAITING for row in active)
    average = average_consultation_minutes(doctor_id) if has_waiting else DEFAULT_CONSULTATION_MINUTES
    waits = estimate_waits(active, average, utcnow())
    entries = [
        {
            "appointment_id": row.id,
            "token": row.token,
            "queue_position": row.queue_position,
            "status": row.status,
            "patient": {"id": row.patient_id, "mrn": row.mrn, "name": row.name},
            "waiting_since": row.waiting_since.isoformat(),
            "estimated_wait_minutes": wait,
        }
        for row, wait in zip(active, waits, strict=True)
    ]
    return {
        "doctor": {"id": doctor["id"], "name": doctor["name"]},
        "date": queue_date.isoformat(),
        "version": version,
        "waiting_count": sum(1 for entry in entries if entry["status"] == WAITING),
        "in_consultation": next((e for e in entries if e["status"] == IN_CONSULTATION), None),
        "entries": entries,
    }


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


def estimate_waits(entries: list, average_minutes: float, now: datetime) -> list[int]:
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


def mask_snapshot(snapshot: dict) -> dict:
    """The display role's form: each patient is only {initials}."""

    def mask(entry: dict) -> dict:
        return {**entry, "patient": {"initials": initials(entry["patient"]["name"])}}

    entries = [mask(entry) for entry in snapshot["entries"]]
    return {
        **snapshot,
        "entries": entries,
        "in_consultation": next((e for e in entries if e["status"] == IN_CONSULTATION), None),
    }
