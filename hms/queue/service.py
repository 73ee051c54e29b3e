"""The queue's operations: read a snapshot, call the next patient in, open a live stream.

Reads go through the snapshot cache; `call_next` is one unit of work under the queue
lock; a stream is opened on the realtime transport with this package's loaders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from hms.appointments.models import COMPLETED, IN_CONSULTATION, WAITING
from hms.auth.service import Identity, load_identity, session_live
from hms.core.cache import prefetch
from hms.core.roles import own_records_only, sees_masked_queue
from hms.core.settings import app_object, setting
from hms.core.time import clinic_today, clinic_zone
from hms.core.uow import unit_of_work
from hms.errors import Conflict, Forbidden
from hms.extensions import db
from hms.queue.changes import EVENT_NAME, record_change
from hms.queue.events import record_events
from hms.queue.line import ROOM_TAKEN, lock_queue, move, queue_head
from hms.queue.snapshot import FULL, MASKED, Snapshot, build_snapshot, cache_keys, read_snapshot
from hms.realtime.memo import Encoded, sse_event
from hms.realtime.multi import MultiStream, open_multi_stream
from hms.realtime.stream import Stream
from hms.realtime.streams import open_stream

# One identity check per account per second per worker, however many of its streams
# beat at once (a clinic's screens often share one display account).
IDENTITY_CHECK_SECONDS = 1.0
# Snapshots of dates this close to today are cached (the rest: a key per date is unbounded).
CACHED_DAYS = 7


def prefetch_today(doctor_id: int) -> None:
    """Ask the cache to read today's snapshot of this doctor with the request's first
    cache read (the caller's identity): a staff member's cached GET is one round trip."""
    prefetch(*cache_keys(doctor_id, clinic_today()))


def get_snapshot(doctor_id: int, queue_date: date) -> Snapshot:
    """The snapshot through the cache (NotFound if `doctor_id` is not a doctor). Only
    dates within CACHED_DAYS of today go through it: a key (and a day-long tag) per
    distinct ?date= would be unbounded; older and later days are read from the database."""
    if abs((queue_date - clinic_today()).days) > CACHED_DAYS:
        return build_snapshot(doctor_id, queue_date)
    return read_snapshot(doctor_id, queue_date, setting("QUEUE_CACHE_SECONDS"))


def call_next(doctor_id: int, identity: Identity) -> Snapshot:
    """Complete the patient in the room (if any) and call in the first WAITING one, in one
    unit of work; answer today's snapshot. 409 (and nothing changed) if nobody waits."""
    if own_records_only(identity.role, "appointments.change_status") and doctor_id != identity.id:
        raise Forbidden("A doctor may only call the next patient of their own queue.")
    today = clinic_today()
    with unit_of_work():
        _, version = lock_queue(doctor_id, today)  # NotFound for a doctor that isn't one
        head = queue_head(doctor_id, today)  # the patient in the room sorts first, then the line
        in_room = head[0] if head and head[0].status == IN_CONSULTATION else None
        if len(head) == 2 and head[1].status == IN_CONSULTATION:
            raise Conflict(ROOM_TAKEN)  # two in the room: nobody can be called in
        first_waiting = next((row for row in head if row.status == WAITING), None)
        events: list[dict] = []
        if in_room is not None:
            left_from = in_room.queue_position
            move(in_room, COMPLETED, identity.id, None, events)
            if first_waiting is not None and first_waiting.queue_position > left_from:
                first_waiting.queue_position -= 1  # the completion moved everyone behind up one
        if first_waiting is None:
            raise Conflict("Nobody is waiting in this queue.")
        # The room is free: emptied just now, or nobody was in it (read under the lock).
        move(first_waiting, IN_CONSULTATION, identity.id, None, events, room_free=True)
        record_events(events)  # both events in one INSERT
        # Read under the queue lock, just before the commit: exactly the committed state.
        snapshot = build_snapshot(doctor_id, today)
        record_change(doctor_id, today, version, snapshot=snapshot)
    return snapshot


# --- live streams -----------------------------------------------------------------------


def open_queue_stream(doctor_id: int, identity: Identity, session_id: str | None = None) -> Stream:
    """A live stream of today's queue of a doctor, in the form the caller's role sees.

    NotFound (not a doctor) or TooManyRequests, both before any byte is streamed. Two
    limits, counted across workers and instances: SSE_MAX_CONNECTIONS_PER_DOCTOR streams
    of one doctor's queue, and SSE_MAX_CONNECTIONS_PER_ACCOUNT streams of one account
    (whatever the doctors). A doctor's own queue is counted in the doctor's limit (so
    it is watched) but never refused by it: other accounts cannot lock a doctor out of
    their own queue; the doctor's own account cap still bounds their streams. A stream
    opened with a page session (`session_id`) ends when that session signs out."""
    app = app_object()
    variant = MASKED if sees_masked_queue(identity.role) else FULL

    def read_first(day: str) -> Encoded:
        # In the request's own session (a second one would wait on SQLite's write lock
        # that the first holds since authentication), given back before streaming.
        try:
            return _encoded(get_snapshot(doctor_id, date.fromisoformat(day)), variant)
        finally:
            db.session.remove()

    return open_stream(
        app,
        topic=doctor_id,
        variant=variant,
        read_first=read_first,
        load=_loader(app, doctor_id, variant),
        today=clinic_day_reader(str(clinic_zone())),
        still_allowed=session_checker(app, identity.id, identity.token_epoch, identity.role, session_id),
        limit=None if identity.id == doctor_id else int(setting("SSE_MAX_CONNECTIONS_PER_DOCTOR")),
        refused=f"Too many live streams for doctor {doctor_id}; try again shortly.",
        also=(
            (
                account_topic(identity.id),
                int(setting("SSE_MAX_CONNECTIONS_PER_ACCOUNT")),
                "Too many live streams for this account; close one or try again shortly.",
            ),
        ),
        owner=account_topic(identity.id),
    )


def open_queues_stream(
    doctor_ids: tuple[int, ...], identity: Identity, session_id: str | None = None
) -> MultiStream:
    """One live stream of several doctors' queues today (a staff screen's: a browser holds
    at most six connections to one host, so a page follows its queues on one).

    Counted once in the account's limit and once in each doctor's (a doctor's own queue
    never refused there, as for one doctor's stream); all or nothing. NotFound for any id
    that is not a doctor, before any byte is streamed."""
    app = app_object()
    variant = MASKED if sees_masked_queue(identity.role) else FULL

    def read_first(doctor_id: int, day: str) -> Encoded:
        return _encoded(get_snapshot(doctor_id, date.fromisoformat(day)), variant)

    per_doctor = int(setting("SSE_MAX_CONNECTIONS_PER_DOCTOR"))
    account = account_topic(identity.id)
    try:
        return open_multi_stream(
            app,
            topics=doctor_ids,
            variant=variant,
            read_first=read_first,
            loader=lambda doctor_id: _loader(app, doctor_id, variant),
            today=clinic_day_reader(str(clinic_zone())),
            still_allowed=session_checker(app, identity.id, identity.token_epoch, identity.role, session_id),
            claims=(
                *((doctor_id, None if doctor_id == identity.id else per_doctor) for doctor_id in doctor_ids),
                (account, int(setting("SSE_MAX_CONNECTIONS_PER_ACCOUNT"))),
            ),
            refusals={
                **{
                    doctor_id: f"Too many live streams for doctor {doctor_id}; try again shortly."
                    for doctor_id in doctor_ids
                },
                account: "Too many live streams for this account; close one or try again shortly.",
            },
        )
    finally:
        db.session.remove()  # read in the request's own session; given back before streaming


def account_topic(account_id: int) -> str:
    """The limiter topic counting one account's streams (a doctor's is the doctor id)."""
    return f"account:{account_id}"


def _encoded(snapshot: Snapshot, variant: str) -> Encoded:
    event = sse_event(snapshot.version, EVENT_NAME, snapshot.masked if variant == MASKED else snapshot.full)
    return Encoded(snapshot.version, snapshot.date, event)


# The callables a stream keeps are shared by every stream of the same doctor and form, and
# of the same account, in a worker (bounded: least recently used dropped first).


@lru_cache(maxsize=4096)
def _loader(app, doctor_id: int, variant: str) -> Callable[[str], Encoded]:
    def load(day: str) -> Encoded:
        # Its own app context: the stream outlives the request, and no database
        # session or pooled connection may stay checked out while it waits.
        with app.app_context():
            try:
                return _encoded(get_snapshot(doctor_id, date.fromisoformat(day)), variant)
            finally:
                db.session.remove()

    return load


@lru_cache(maxsize=64)
def clinic_day_reader(zone_name: str) -> Callable[[], str]:
    zone = ZoneInfo(zone_name)

    def today() -> str:
        return datetime.now(zone).date().isoformat()

    return today


@lru_cache(maxsize=4096)
def session_checker(
    app, account_id: int, token_epoch: int, role: str, session_id: str | None
) -> Callable[[], bool]:
    checked: list[tuple[float, bool]] = []

    def still_allowed() -> bool:
        """A disabled account, a changed password or a changed role ends its open streams
        too, at their next heartbeat: a stream was opened in the form its role saw (full
        or masked) and for a role allowed to follow the queue; the client reconnects and
        is answered for the role it has now. So does signing out the page session the
        stream was opened with."""
        now = time.monotonic()
        if checked and now - checked[0][0] < IDENTITY_CHECK_SECONDS:
            return checked[0][1]
        with app.app_context():
            try:
                current = load_identity(account_id)
                live = session_id is None or session_live(session_id)
            except Exception:  # noqa: BLE001 - an outage is not a sign-out
                return True
            finally:
                db.session.remove()
        allowed = (
            current is not None
            and current.active
            and current.token_epoch == token_epoch
            and current.role == role
            and live
        )
        checked[:] = [(now, allowed)]
        return allowed

    return still_allowed


def display_snapshot(doctor_id: int) -> dict:
    """Today's masked snapshot for the waiting-room page (NotFound if not a doctor)."""
    return get_snapshot(doctor_id, clinic_today()).data(masked=True)
