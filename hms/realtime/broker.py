"""Queue-change notifications for the live streams.

Contract used by the appointments domain: after a transaction that changed a doctor's
queue has COMMITTED, call `notify_queue_changed(doctor_id, queue_date, version)`.
The message is {doctor_id, date, version}; every open stream of that doctor then sends
the snapshot of at least that version, built once per worker process (SnapshotMemo).

With Redis, the message also carries the encoded events themselves (full and masked)
when the change is to today's queue and some stream of that doctor is open anywhere
(its lease set exists): the publisher builds the snapshot once, right after its commit
(from the cache it has just invalidated, so from the database; the request that made
the change then usually reads it back from the cache), and no worker builds anything,
however many there are. Each worker keeps the event in its memo if it is newer than
the one it has, and its streams write those bytes. A message without them (nobody was
watching, the build failed, another date, the in-process broker) makes the streams
build as before.

Two brokers behind one interface:
- `InProcessBroker` for the embedded default (one worker): delivery is a function call.
- `RedisBroker` when REDIS_URL is set: a publish goes to the channel
  `hms:queue:<redis db>:<doctor_id>`; each worker process holds exactly one pub/sub
  connection, a single background greenlet subscribed to the pattern, started lazily on
  the first stream of that process (after gunicorn's fork, never at import). It fans
  each message out to the mailboxes of the local streams. After Redis comes back from
  an outage it reconnects with backoff and tells every local stream to resync.

The Redis database number is part of the channel name because pub/sub channels are
shared by every database of a Redis server: apps on different databases are different
clinics and must not hear each other.

Blocking calls use the standard library's threading primitives: under gunicorn's gevent
worker they are monkey-patched into their cooperative gevent versions (the subscriber
"thread" is a greenlet); without gevent (tests, a threaded server) they still work.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import redis
from flask import Flask, current_app, has_app_context

from hms.realtime.snapshots import Encoded, SnapshotMemo, event_text, format_event

if TYPE_CHECKING:
    from hms.appointments.queue import EncodedSnapshot

log = logging.getLogger(__name__)
EXTENSION_KEY = "hms.realtime.broker"
# Every broker built in this process, for the shutdown drain (see gunicorn.conf.py).
_brokers: weakref.WeakSet[Broker] = weakref.WeakSet()
_serials = itertools.count(1)


@dataclass
class Wakeup:
    """What a stream finds in its mailbox.

    `changes`: the highest version announced per changed date. `recheck`: look at the
    current snapshot whatever was announced (the subscriber (re)connected, since
    `since`); `force`: send it even if its version is the one already sent (after a
    Redis outage). `closed`: the worker is shutting down."""

    changes: dict[str, int] = field(default_factory=dict)
    recheck: bool = False
    force: bool = False
    since: float = 0.0
    closed: bool = False


class Subscription:
    """One open stream's mailbox. Coalescing: while the stream is busy, further changes
    merge into one pending wakeup (highest version per date), so it sends the latest
    snapshot once instead of every intermediate one.

    A lock guards the pending wakeup and an Event wakes the stream: under gevent that
    Event is gevent's compiled one, where a Condition would be pure-Python code with a
    new waiter lock per wait (measured in a loop of 2,000 mailboxes under gevent: 15.5
    against 9.7 us of CPU per delivery and wakeup). The event is set and cleared under
    the lock, so a set never outlives the wakeup it announces and no wakeup is missed."""

    __slots__ = ("doctor_id", "masked", "_lock", "_ready", "_pending", "_closed")

    def __init__(self, doctor_id: int, masked: bool = False):
        self.doctor_id = doctor_id
        self.masked = masked
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pending: Wakeup | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, queue_date: str, version: int) -> None:
        with self._lock:
            pending = self._pending or Wakeup()
            pending.changes[queue_date] = max(version, pending.changes.get(queue_date, version))
            self._pending = pending
            self._ready.set()

    def request_recheck(self, force: bool) -> None:
        with self._lock:
            pending = self._pending or Wakeup()
            pending.recheck = True
            pending.force = pending.force or force
            pending.since = time.monotonic()
            self._pending = pending
            self._ready.set()

    def close(self) -> None:
        """Ask the stream to end (worker shutdown)."""
        with self._lock:
            self._closed = True
            self._ready.set()

    def wait(self, timeout: float) -> Wakeup | None:
        """The pending wakeup (taking it), or None once `timeout` seconds pass quietly."""
        self._ready.wait(max(0.0, timeout))
        with self._lock:
            self._ready.clear()
            wakeup, self._pending = self._pending, None
            if self._closed:
                self._ready.set()  # every later wait returns at once, closed
                return Wakeup(closed=True)
            return wakeup


class SubscriberRegistry:
    """doctor_id -> the mailboxes of this process's open streams of that doctor.

    A stream removes its mailbox when it ends (finally), so nothing accumulates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_doctor: dict[int, set[Subscription]] = {}
        self.closed = False

    def add(self, doctor_id: int, masked: bool = False) -> Subscription:
        subscription = Subscription(doctor_id, masked)
        with self._lock:
            if self.closed:
                subscription.close()
            self._by_doctor.setdefault(doctor_id, set()).add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._by_doctor.get(subscription.doctor_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._by_doctor[subscription.doctor_id]

    def deliver(self, doctor_id: int, queue_date: str, version: int) -> int:
        with self._lock:
            subscribers = list(self._by_doctor.get(doctor_id, ()))
        for subscription in subscribers:
            subscription.deliver(queue_date, version)
        return len(subscribers)

    def variants(self, doctor_id: int) -> set[bool]:
        """The forms (masked or not) this process's streams of a doctor send."""
        with self._lock:
            return {s.masked for s in self._by_doctor.get(doctor_id, ())}

    def _everyone(self) -> list[Subscription]:
        with self._lock:
            return [s for subscribers in self._by_doctor.values() for s in subscribers]

    def recheck_all(self, force: bool) -> None:
        for subscription in self._everyone():
            subscription.request_recheck(force)

    def close_all(self) -> None:
        with self._lock:
            self.closed = True
        for subscription in self._everyone():
            subscription.close()

    def count(self, doctor_id: int | None = None) -> int:
        with self._lock:
            if doctor_id is not None:
                return len(self._by_doctor.get(doctor_id, ()))
            return sum(len(s) for s in self._by_doctor.values())


class Broker(ABC):
    """Publish queue changes; hand out per-stream mailboxes."""

    # Whether publish() sends the encoded events along (notify_queue_changed builds them).
    carries_events = False

    def __init__(self) -> None:
        self.registry = SubscriberRegistry()
        self.memo = SnapshotMemo()
        _brokers.add(self)

    @abstractmethod
    def publish(self, doctor_id: int, queue_date: date, version: int, events: dict | None = None) -> None:
        """`events`: {"version": the snapshot's, "full": event text, "masked": event
        text} of a snapshot of at least `version`, built by the publisher; optional."""

    def subscribe(self, doctor_id: int, masked: bool = False) -> Subscription:
        return self.registry.add(doctor_id, masked)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.registry.remove(subscription)

    def close_all(self) -> None:
        """End every open stream of this process (gunicorn worker shutdown)."""
        self.registry.close_all()

    def stop(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release background resources (tests)."""


class InProcessBroker(Broker):
    """The embedded default: one worker process, delivery is a function call."""

    def publish(self, doctor_id: int, queue_date: date, version: int, events: dict | None = None) -> None:
        self.registry.deliver(doctor_id, queue_date.isoformat(), version)


class RedisBroker(Broker):
    """Redis pub/sub shared by every worker and instance on the same Redis database."""

    CHANNEL_PREFIX = "hms:queue"
    carries_events = True
    MAX_BACKOFF_SECONDS = 5.0

    def __init__(self, url: str, poll_seconds: float = 1.0):
        super().__init__()
        self.url = url
        self.poll_seconds = poll_seconds
        database = redis.connection.parse_url(url).get("db", 0)
        self.channel_base = f"{self.CHANNEL_PREFIX}:{database}:"
        self.pattern = self.channel_base + "*"
        self._publisher: redis.Redis | None = None
        self._publisher_pid: int | None = None
        self._subscriber: threading.Thread | None = None
        self._subscriber_pid: int | None = None
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        self.connected = threading.Event()
        self.connections_made = 0
        self._serial = next(_serials)

    # -- publishing ---------------------------------------------------------------

    def _client(self) -> redis.Redis:
        # Built lazily and rebuilt after a fork: a connection pool is never shared
        # between processes.
        if self._publisher is None or self._publisher_pid != os.getpid():
            self._publisher = redis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
            )
            self._publisher_pid = os.getpid()
        return self._publisher

    @property
    def client_name(self) -> str:
        """The subscriber connection's name in Redis' CLIENT LIST (process id, broker number)."""
        return f"hms-queue-subscriber-{os.getpid()}-{self._serial}"

    def channel(self, doctor_id: int) -> str:
        return f"{self.channel_base}{doctor_id}"

    def publish(self, doctor_id: int, queue_date: date, version: int, events: dict | None = None) -> None:
        payload = {"doctor_id": doctor_id, "date": queue_date.isoformat(), "version": version}
        if events:
            payload["events"] = events
        message = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            self._client().publish(self.channel(doctor_id), message)
        except redis.RedisError:
            # The change is committed; only the push is lost. This worker's own streams
            # still hear it, the others resync when the subscriber reconnects.
            log.warning("queue change for doctor %s not published: Redis unavailable", doctor_id)
            self.registry.deliver(doctor_id, queue_date.isoformat(), version)

    # -- the one subscriber per process -------------------------------------------

    def subscribe(self, doctor_id: int, masked: bool = False) -> Subscription:
        subscription = super().subscribe(doctor_id, masked)
        self.ensure_subscriber()
        return subscription

    def ensure_subscriber(self) -> None:
        """Start this process's subscriber if it is not running (lazily, after fork)."""
        pid = os.getpid()
        if self._subscriber is not None and self._subscriber_pid == pid and self._subscriber.is_alive():
            return
        with self._start_lock:
            if self._subscriber is not None and self._subscriber_pid == pid and self._subscriber.is_alive():
                return
            self._stopping.clear()
            self.connected.clear()
            self._subscriber_pid = pid
            self._subscriber = threading.Thread(target=self._listen, name="hms-queue-subscriber", daemon=True)
            self._subscriber.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._subscriber is not None and self._subscriber_pid == os.getpid():
            self._subscriber.join(timeout=5)
        self._subscriber = None

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=2,
                    socket_keepalive=True,
                    health_check_interval=max(2, int(self.poll_seconds * 5)),
                    client_name=self.client_name,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(self.pattern)
                self.connections_made += 1
                self.connected.set()
                reconnected = self.connections_made > 1
                if reconnected:
                    log.info("queue subscriber reconnected to Redis; resyncing open streams")
                # Even on the first connection a stream opened meanwhile may have missed
                # a change: it re-checks (and sends only a newer version). After an outage
                # every stream sends a fresh snapshot.
                self.registry.recheck_all(force=reconnected)
                backoff = 0.1
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=self.poll_seconds)
                    if message is not None:
                        self._dispatch(message)
            except (redis.RedisError, OSError):
                if self.connected.is_set():
                    log.warning("queue subscriber lost Redis; reconnecting", exc_info=True)
            except Exception:  # noqa: BLE001 - the subscriber must outlive any bad message
                log.exception("queue subscriber failed; restarting it")
            finally:
                self.connected.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.MAX_BACKOFF_SECONDS)

    def _dispatch(self, message: dict) -> None:
        if message.get("type") != "pmessage":
            return
        try:
            data = json.loads(message["data"])
            doctor_id, queue_date, version = int(data["doctor_id"]), str(data["date"]), int(data["version"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed queue message %r", message.get("data"))
            return
        events = data.get("events")
        if isinstance(events, dict):
            self._keep_events(doctor_id, queue_date, events)
        self.registry.deliver(doctor_id, queue_date, version)

    def _keep_events(self, doctor_id: int, queue_date: str, events: dict) -> None:
        """Put the publisher's events in the memo, for the forms this worker's streams send."""
        try:
            version = int(events["version"])
            for masked in self.registry.variants(doctor_id):
                text = events["masked" if masked else "full"]
                self.memo.offer((doctor_id, queue_date, masked), Encoded(version, queue_date, text.encode()))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("ignoring malformed events of a queue message for doctor %s", doctor_id)


class QueueBroker:
    """The Flask extension: picks the broker for the app (Redis when REDIS_URL is set).

    Building a broker opens nothing: the publisher pool connects on first publish and
    the subscriber starts with the first stream of each worker process."""

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        app.extensions[EXTENSION_KEY] = RedisBroker(url) if url else InProcessBroker()

    @staticmethod
    def get(app: Flask | None = None) -> Broker:
        return (app or current_app).extensions[EXTENSION_KEY]


def streams_want_events(doctor_id: int, queue_date: date) -> bool:
    """Whether a change to this queue should carry its snapshot's events: the broker
    carries them (Redis), the date is today, and a stream of the doctor is open
    somewhere. A change that asks before its transaction can read the snapshot inside
    it, under the queue lock, instead of after its commit. Never raises (False)."""
    from hms.core.time import clinic_today
    from hms.realtime.limiter import StreamSlots

    try:
        return (
            QueueBroker.get().carries_events
            and queue_date == clinic_today()
            and StreamSlots.get().watched(doctor_id)
        )
    except Exception:  # noqa: BLE001 - the streams build the snapshot themselves
        log.warning("could not tell whether doctor %s has open streams", doctor_id, exc_info=True)
        return False


def notify_queue_changed(
    doctor_id: int,
    queue_date: date,
    version: int,
    encoded: EncodedSnapshot | None = None,
    *,
    watched: bool | None = None,
) -> None:
    """Announce a committed change of a doctor's queue. Never raises.

    `encoded`: the caller's own unmasked snapshot as it cached it (JSON text and data),
    read under the queue lock just before its commit, if it has one: it is then neither
    built nor encoded again for the message. `watched`: what `streams_want_events`
    answered the caller, if it asked (not asked again)."""
    if not has_app_context() or EXTENSION_KEY not in current_app.extensions:
        log.warning("notify_queue_changed outside the app: doctor %s not announced", doctor_id)
        return
    try:
        broker = QueueBroker.get()
        events = (
            _events_for_streams(doctor_id, queue_date, version, encoded, watched)
            if broker.carries_events and watched is not False
            else None
        )
        broker.publish(doctor_id, queue_date, version, events)
    except Exception:  # noqa: BLE001 - the booking is committed; a lost push must not fail it
        log.exception("queue change for doctor %s not announced", doctor_id)


def _events_for_streams(
    doctor_id: int,
    queue_date: date,
    version: int,
    encoded: EncodedSnapshot | None = None,
    watched: bool | None = None,
) -> dict | None:
    """The encoded events (full and masked) of today's snapshot, if a stream of this
    doctor is open anywhere; None otherwise or if the build fails (the streams build)."""
    from hms.appointments.queue import encoded_queue_snapshot, mask_snapshot

    try:
        if watched is None and not streams_want_events(doctor_id, queue_date):
            return None
        if (
            encoded is None
            or int(encoded.data["version"]) < version
            or encoded.data["date"] != queue_date.isoformat()
        ):
            encoded = encoded_queue_snapshot(doctor_id, queue_date, masked=False)
        snapshot = encoded.data
        current = int(snapshot["version"])
        if current < version:
            return None  # older than the change (not expected after its commit): let streams build
        return {
            "version": current,
            "full": event_text(current, encoded.json),  # the very JSON text cached for GET
            "masked": format_event(mask_snapshot(snapshot)),
        }
    except Exception:  # noqa: BLE001 - the streams build it themselves
        log.warning("queue events of doctor %s not built for the message", doctor_id, exc_info=True)
        return None


def close_all_streams() -> None:
    """End every open stream of this process (called when gunicorn stops the worker)."""
    for broker in list(_brokers):
        broker.close_all()
