"""Change notices for the live streams: publish a topic's new version, wake its streams.

A topic is a number (the queue package uses the doctor's id); a change names the topic,
a day ("YYYY-MM-DD") and the version it reached, and may carry its encoded events, one
bytes object per variant (the queue package's variants are the full and the masked
form). Realtime knows nothing of what the bytes say: it moves them.

Every open stream of the topic wakes and sends the event of at least that version: the
one the message carried, kept in this worker's memo, or one its memo builds once for all
the worker's streams of that topic and variant (`SnapshotMemo`).

Two brokers behind one interface:
- `InProcessBroker` for the embedded default (one worker): delivery is a function call,
  and messages carry no events (the first woken stream builds, the others reuse it).
- `RedisBroker` when REDIS_URL is set: a publish goes to the channel
  `hms:queue:<redis db>:<topic>`; each worker process holds exactly one pub/sub
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
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
from flask import Flask, current_app

from hms.core.metrics import broker_message
from hms.core.outage import Dependency, fail_fast
from hms.realtime.memo import Encoded, SnapshotMemo

log = logging.getLogger(__name__)
# A Redis outage is logged once when it starts and once when it ends, with a count.
REDIS_PUBLISH = Dependency("Redis publish")
REDIS_SUBSCRIBER = Dependency("Redis subscriber")
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
    Redis outage). `closed`: the worker is shutting down. `published_at`: when the
    earliest change it announces was published (time.time(); 0: unknown), for the
    delivery-lag metric."""

    changes: dict[str, int] = field(default_factory=dict)
    recheck: bool = False
    force: bool = False
    since: float = 0.0
    closed: bool = False
    published_at: float = 0.0


class Subscription:
    """One open stream's mailbox. Coalescing: while the stream is busy, further changes
    merge into one pending wakeup (highest version per date), so it sends the latest
    snapshot once instead of every intermediate one.

    A lock guards the pending wakeup and an Event wakes the stream: under gevent that
    Event is gevent's compiled one, where a Condition would be pure-Python code with a
    new waiter lock per wait (measured in a loop of 2,000 mailboxes under gevent: 15.5
    against 9.7 us of CPU per delivery and wakeup). The event is set and cleared under
    the lock, so a set never outlives the wakeup it announces and no wakeup is missed."""

    __slots__ = ("topic", "variant", "_lock", "_ready", "_pending", "_closed")

    def __init__(self, topic: int, variant: str, ready: threading.Event | None = None):
        self.topic = topic
        self.variant = variant
        self._lock = threading.Lock()
        # `ready`: an Event shared by the mailboxes of one stream of several topics
        # (multi.py), which waits on it once and then `take`s from each mailbox.
        self._ready = ready if ready is not None else threading.Event()
        self._pending: Wakeup | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, queue_date: str, version: int, published_at: float = 0.0) -> None:
        with self._lock:
            pending = self._pending or Wakeup()
            pending.changes[queue_date] = max(version, pending.changes.get(queue_date, version))
            if published_at and not pending.published_at:
                pending.published_at = published_at
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

    def take(self) -> Wakeup | None:
        """The pending wakeup (taking it) without waiting, for a stream that waits on a
        shared `ready` Event itself (and clears it before taking, so no set is lost)."""
        with self._lock:
            wakeup, self._pending = self._pending, None
            return Wakeup(closed=True) if self._closed else wakeup

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
    """topic -> the mailboxes of this process's open streams of that topic.

    A stream removes its mailbox when it ends (finally), so nothing accumulates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_topic: dict[int, set[Subscription]] = {}
        self.closed = False

    def add(self, topic: int, variant: str, ready: threading.Event | None = None) -> Subscription:
        subscription = Subscription(topic, variant, ready)
        with self._lock:
            if self.closed:
                subscription.close()
            self._by_topic.setdefault(topic, set()).add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._by_topic.get(subscription.topic)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._by_topic[subscription.topic]

    def deliver(self, topic: int, day: str, version: int, published_at: float = 0.0) -> int:
        with self._lock:
            subscribers = list(self._by_topic.get(topic, ()))
        for subscription in subscribers:
            subscription.deliver(day, version, published_at)
        return len(subscribers)

    def variants(self, topic: int) -> set[str]:
        """The variants this process's streams of a topic send."""
        with self._lock:
            return {s.variant for s in self._by_topic.get(topic, ())}

    def _everyone(self) -> list[Subscription]:
        with self._lock:
            return [s for subscribers in self._by_topic.values() for s in subscribers]

    def recheck_all(self, force: bool) -> None:
        for subscription in self._everyone():
            subscription.request_recheck(force)

    def close_all(self) -> None:
        with self._lock:
            self.closed = True
        for subscription in self._everyone():
            subscription.close()

    def count(self, topic: int | None = None) -> int:
        with self._lock:
            if topic is not None:
                return len(self._by_topic.get(topic, ()))
            return sum(len(s) for s in self._by_topic.values())


class Broker(ABC):
    """Publish changes; hand out per-stream mailboxes."""

    # Whether publish() sends the encoded events along to other processes (a publisher
    # builds them only for a broker that carries them).
    carries_events = False

    def __init__(self) -> None:
        self.registry = SubscriberRegistry()
        self.memo = SnapshotMemo()
        _brokers.add(self)

    @abstractmethod
    def publish(self, topic: int, day: str, version: int, events: Mapping[str, bytes] | None = None) -> None:
        """Announce that `topic` reached `version` on `day`. `events`: variant -> the
        encoded event of exactly that version (optional; never carries an older one)."""

    def subscribe(self, topic: int, variant: str, ready: threading.Event | None = None) -> Subscription:
        return self.registry.add(topic, variant, ready)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.registry.remove(subscription)

    def close_all(self) -> None:
        """End every open stream of this process (gunicorn worker shutdown)."""
        self.registry.close_all()

    def stop(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release background resources (tests)."""


class InProcessBroker(Broker):
    """The embedded default: one worker process, delivery is a function call."""

    def publish(self, topic: int, day: str, version: int, events: Mapping[str, bytes] | None = None) -> None:
        broker_message("published")
        self.registry.deliver(topic, day, version, time.time())


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
                self.url,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                health_check_interval=30,
                retry=fail_fast(),
            )
            self._publisher_pid = os.getpid()
        return self._publisher

    @property
    def client_name(self) -> str:
        """The subscriber connection's name in Redis' CLIENT LIST (process id, broker number)."""
        return f"hms-queue-subscriber-{os.getpid()}-{self._serial}"

    def channel(self, topic: int) -> str:
        return f"{self.channel_base}{topic}"

    def publish(self, topic: int, day: str, version: int, events: Mapping[str, bytes] | None = None) -> None:
        payload: dict = {"topic": topic, "date": day, "version": version, "at": time.time()}
        if events:
            payload["events"] = {variant: event.decode() for variant, event in events.items()}
        message = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            self._client().publish(self.channel(topic), message)
        except redis.RedisError as exc:
            # The change is committed; only the push is lost. This worker's own streams
            # still hear it, the others resync when the subscriber reconnects.
            REDIS_PUBLISH.failed(f"publishing a change of topic {topic}", exc)
            self.registry.deliver(topic, day, version, payload["at"])
        else:
            REDIS_PUBLISH.ok()
            broker_message("published")

    # -- the one subscriber per process -------------------------------------------

    def subscribe(self, topic: int, variant: str, ready: threading.Event | None = None) -> Subscription:
        subscription = super().subscribe(topic, variant, ready)
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
                    retry=fail_fast(),
                    socket_connect_timeout=2,
                    socket_keepalive=True,
                    health_check_interval=max(2, int(self.poll_seconds * 5)),
                    client_name=self.client_name,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(self.pattern)
                self.connections_made += 1
                self.connected.set()
                REDIS_SUBSCRIBER.ok()
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
            except (redis.RedisError, OSError) as exc:
                # Logged once per outage, then each failed reconnection is only counted.
                REDIS_SUBSCRIBER.failed("queue subscriber (reconnecting)", exc)
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
            topic, day, version = int(data["topic"]), str(data["date"]), int(data["version"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed change message %r", message.get("data"))
            return
        broker_message("received")
        published_at = data.get("at")
        events = data.get("events")
        if isinstance(events, dict):
            self._keep_events(topic, day, version, events)
        self.registry.deliver(
            topic, day, version, float(published_at) if isinstance(published_at, (int, float)) else 0.0
        )

    def _keep_events(self, topic: int, day: str, version: int, events: dict) -> None:
        """Put the publisher's events in the memo, for the variants this worker's streams send."""
        try:
            for variant in self.registry.variants(topic):
                event = events.get(variant)
                if event is not None:
                    self.memo.offer((topic, day, variant), Encoded(version, day, event.encode()))
        except (TypeError, ValueError, AttributeError):
            log.warning("ignoring malformed events of a change message for topic %s", topic)


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


def close_all_streams() -> None:
    """End every open stream of this process (called when gunicorn stops the worker)."""
    for broker in list(_brokers):
        broker.close_all()
