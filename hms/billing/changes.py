"""The bills of the day, live: one small topic that says "bills changed".

A cashier's screen lists today's bills to collect. It follows this one topic instead of
every doctor's queue (each doctor's queue has SSE_MAX_CONNECTIONS_PER_DOCTOR stream
slots; a till must not take one of each). Every change of a bill records itself in its
unit of work (`record_bills_change`): opening one (booking opens bills through the
ledger), adding items, a payment or a refund, a void. After the COMMIT, and only then,
the broker tells the topic's streams, and each sends

    event: bills
    data: {"version": <microseconds>}

The version is the clock in microseconds when the change was announced or the event
built, so it only grows; the event carries no bill (the page reads its own list, in its
reader's role), so it is the same bytes for everyone (one variant). Nothing is read to
build it, so a resync (Redis' subscriber reconnecting) cannot tell whether anything
changed meanwhile and sends an event too: to a client every event means "read again".
"""

from __future__ import annotations

import json
import logging
import time

from hms.auth.service import Identity
from hms.core.settings import app_object, setting
from hms.core.time import clinic_today, clinic_zone
from hms.core.uow import UnitOfWork, current_unit_of_work
from hms.queue.service import account_topic, clinic_day_reader, session_checker
from hms.realtime.broker import QueueBroker
from hms.realtime.memo import Encoded, sse_event
from hms.realtime.stream import Stream
from hms.realtime.streams import open_stream

log = logging.getLogger(__name__)
# Topics are ints: doctors' queues use the doctor's id (from 1), so 0 is free for this one.
BILLS_TOPIC = 0
EVENT_NAME = "bills"
VARIANT = "bills"
_KEY = "billing.bills_changed"


def _now_version() -> int:
    return time.time_ns() // 1000


def _event(version: int) -> bytes:
    return sse_event(version, EVENT_NAME, json.dumps({"version": version}).encode())


def record_bills_change() -> None:
    """Inside the unit of work that changes a bill: announce it after the commit (once
    per unit of work however many bills or rows it touched)."""
    current_unit_of_work().after_commit(_publish, key=_KEY)


def _publish(_uow: UnitOfWork) -> None:
    """After COMMIT: tell the streams. Never raises: the change is committed."""
    try:
        broker = QueueBroker.get()
        version = _now_version()
        events = {VARIANT: _event(version)} if broker.carries_events else None
        broker.publish(BILLS_TOPIC, clinic_today().isoformat(), version, events)
    except Exception:  # noqa: BLE001 - committed: a lost push must not fail the request
        log.exception("change of the bills not announced")


def _load(day: str) -> Encoded:
    """The topic's current event: no database read (the event names no bill)."""
    version = _now_version()
    return Encoded(version, day, _event(version))


def open_bills_stream(identity: Identity, session_id: str | None = None) -> Stream:
    """A live stream of "bills changed" events: the current one at once, then one after
    every committed change. Counted in the account's SSE_MAX_CONNECTIONS_PER_ACCOUNT
    (TooManyRequests over it, before any byte is streamed); it takes no doctor's slot."""
    app = app_object()
    return open_stream(
        app,
        topic=BILLS_TOPIC,
        variant=VARIANT,
        read_first=_load,
        load=_load,
        today=clinic_day_reader(str(clinic_zone())),
        still_allowed=session_checker(app, identity.id, identity.token_epoch, identity.role, session_id),
        limit=None,
        refused="Too many live streams; try again shortly.",
        also=(
            (
                account_topic(identity.id),
                int(setting("SSE_MAX_CONNECTIONS_PER_ACCOUNT")),
                "Too many live streams for this account; close one or try again shortly.",
            ),
        ),
        owner=account_topic(identity.id),
    )
