"""Opening a live queue stream: everything that must hold before streaming starts.

Order matters: the mailbox is registered before the first snapshot is read, so no
change can slip between the two; an unknown doctor is 404 and one stream over the
limit is 429, both before any byte is streamed (and both give the mailbox back).

The callables a stream keeps (snapshot loader, clinic date, account check) are shared by
every stream of the same doctor and form, and of the same account, in a worker: an open
stream costs no closures of its own.
"""

from __future__ import annotations

import time
from datetime import date, datetime

from flask import Flask, current_app

from hms.appointments.service import queue_snapshot
from hms.auth.service import Identity, load_identity
from hms.core.roles import sees_masked_queue
from hms.core.time import clinic_today, clinic_zone
from hms.errors import TooManyRequests
from hms.extensions import db
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots, lease_ttl_seconds
from hms.realtime.stream import QueueStream

CALLABLES_KEY = "hms.realtime.callables"
# One identity check per account per second per worker, however many of its streams
# beat at once (a clinic's screens often share one display account).
IDENTITY_CHECK_SECONDS = 1.0
_identity_checks: dict[tuple[int, int], tuple[float, bool]] = {}


def _shared(app: Flask, key: tuple, make):
    """One callable per key per app (bounded: cleared when it grows past 10,000)."""
    callables = app.extensions.setdefault(CALLABLES_KEY, {})
    made = callables.get(key)
    if made is None:
        if len(callables) > 10_000:
            callables.clear()
        made = callables[key] = make()
    return made


def _today(zone):
    def today() -> str:
        return datetime.now(zone).date().isoformat()

    return today


def _snapshot_loader(app: Flask, doctor_id: int, masked: bool):
    def load(day: str) -> dict:
        # Its own app context: the stream outlives the request, and no database
        # session or pooled connection may stay checked out while it waits.
        with app.app_context():
            try:
                return queue_snapshot(doctor_id, date.fromisoformat(day), masked)
            finally:
                db.session.remove()

    return load


def _session_checker(app: Flask, identity: Identity):
    key = (identity.id, identity.token_epoch)

    def still_allowed() -> bool:
        """A disabled account or a changed password ends its open streams too."""
        now = time.monotonic()
        checked = _identity_checks.get(key)
        if checked is not None and now - checked[0] < IDENTITY_CHECK_SECONDS:
            return checked[1]
        with app.app_context():
            try:
                current = load_identity(identity.id)
            except Exception:  # noqa: BLE001 - an outage is not a sign-out
                return True
            finally:
                db.session.remove()
        allowed = current is not None and current.active and current.token_epoch == identity.token_epoch
        if len(_identity_checks) > 10_000:
            _identity_checks.clear()
        _identity_checks[key] = (now, allowed)
        return allowed

    return still_allowed


def open_queue_stream(doctor_id: int, identity: Identity) -> QueueStream:
    """Check, reserve and subscribe; the returned stream sends the current snapshot first.

    Raises NotFound (not a doctor) or TooManyRequests (the doctor's stream limit)."""
    app = current_app._get_current_object()
    config = app.config
    masked = sees_masked_queue(identity.role)
    zone = clinic_zone()
    heartbeat = float(config["SSE_HEARTBEAT_SECONDS"])
    broker = QueueBroker.get(app)
    slots = StreamSlots.get(app)
    load = _shared(app, ("load", doctor_id, masked), lambda: _snapshot_loader(app, doctor_id, masked))
    today = _shared(app, ("today", str(zone)), lambda: _today(zone))
    still_allowed = _shared(
        app, ("allowed", identity.id, identity.token_epoch), lambda: _session_checker(app, identity)
    )

    subscription = broker.subscribe(doctor_id, masked)
    try:
        # In the request's own session (a second one would wait on SQLite's write lock
        # that the first holds since authentication), given back before streaming.
        day = today()
        try:
            first = broker.memo.share(
                (doctor_id, day, masked), queue_snapshot(doctor_id, date.fromisoformat(day), masked)
            )
        finally:
            db.session.remove()
        lease = slots.acquire(
            doctor_id, int(config["SSE_MAX_CONNECTIONS_PER_DOCTOR"]), lease_ttl_seconds(heartbeat)
        )
        if lease is None:
            raise TooManyRequests(
                f"Too many live streams for doctor {doctor_id}; try again shortly.",
                retry_after=max(1, round(heartbeat)),
            )
    except BaseException:
        broker.unsubscribe(subscription)
        raise
    return QueueStream(
        doctor_id=doctor_id,
        masked=masked,
        first=first,
        subscription=subscription,
        broker=broker,
        lease=lease,
        slots=slots,
        load_snapshot=load,
        today=today,
        still_allowed=still_allowed,
        memo=broker.memo,
        heartbeat_seconds=heartbeat,
        retry_ms=int(config["SSE_RETRY_MS"]),
    )


def display_snapshot(doctor_id: int) -> dict:
    """Today's masked snapshot for the waiting-room page (NotFound if not a doctor)."""
    return queue_snapshot(doctor_id, clinic_today(), masked=True)
