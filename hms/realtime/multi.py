"""One stream of several topics: a staff screen following many doctors' queues at once.

A browser opens at most six HTTP/1.1 connections to one host, across all its tabs, and an
EventSource holds one for good: a page with one stream per doctor stalls its own
requests from the sixth doctor on (and each stream would take one of the account's
stream slots). A `MultiStream` carries several topics on one connection and one lease.
The lease is counted in each topic (so each topic is watched, and limited like any
stream of it) and once in the account's topic.

On the wire it is the topics' own events one after another, each with its own `id:`
(that topic's version), so a client tells them apart by their data (a queue snapshot
names its doctor). Last-Event-ID means nothing across topics: a reconnect is sent every
topic's current event, as at the first open.

The mailboxes of its topics share one Event: the stream waits on it once, clears it, and
then takes what each mailbox holds (clearing before taking loses no wakeup). Everything
else (heartbeat, the account check, a new day, a failed build retried, the watcher that
notices a gone client, the lease) works as for a single-topic `Stream` (stream.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask

from hms.core.metrics import delivered, stream_refused
from hms.errors import TooManyRequests
from hms.realtime.broker import Broker, QueueBroker, Subscription, Wakeup
from hms.realtime.limiter import InProcessSlots, Lease, RedisSlots, StreamSlots, Topic, lease_ttl_seconds
from hms.realtime.memo import Encoded, SnapshotMemo, retry_line
from hms.realtime.stream import BUILD_RETRY_SECONDS, CLOSING, PING, WATCH, SseBody, watch_client
from hms.realtime.streams import refusal_reason

log = logging.getLogger(__name__)


class Part:
    """One topic of a MultiStream: its mailbox, its loader and what was last sent."""

    __slots__ = ("topic", "subscription", "load", "sent_version", "sent_date")

    def __init__(
        self, topic: int, subscription: Subscription, load: Callable[[str], Encoded], first: Encoded
    ):
        self.topic = topic
        self.subscription = subscription
        self.load = load
        self.sent_version, self.sent_date = first.version, first.date


class MultiStream(SseBody):
    """Several topics' events on one connection; itself the response body (bytes)."""

    def __init__(
        self,
        *,
        parts: list[Part],
        opening: bytes,  # `retry:` and every topic's current event
        ready: threading.Event,
        variant: str,
        broker: Broker,
        lease: Lease,
        slots: InProcessSlots | RedisSlots,
        today: Callable[[], str],
        still_allowed: Callable[[], bool],
        memo: SnapshotMemo,
        heartbeat_seconds: float,
    ):
        self.parts = parts
        self._opening: bytes | None = opening
        self._ready = ready
        self.variant = variant
        self.broker = broker
        self.lease = lease
        self.slots = slots
        self.today = today
        self.still_allowed = still_allowed
        self.memo = memo
        self.heartbeat_seconds = heartbeat_seconds
        self._closed = False
        self._gone = False
        self._pinged = False
        self._retry_build = False
        self._next_ping = 0.0
        self.fd = -1  # the client's socket, while the watcher watches it (stream.py)

    def end(self) -> None:
        """End the stream now, from the watcher (client gone, lease taken over)."""
        self._gone = True
        for part in self.parts:
            part.subscription.close()

    def close(self) -> None:
        """Give back the lease and the mailboxes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        WATCH.remove(self)
        for part in self.parts:
            self.broker.unsubscribe(part.subscription)
        try:
            self.slots.release(self.lease)
        except Exception:  # noqa: BLE001 - an unreleased lease expires by itself
            log.warning("multi-topic stream lease not released", exc_info=True)

    def _next_chunk(self) -> bytes | None:
        if self._opening is not None:
            opening, self._opening = self._opening, None
            self._next_ping = time.monotonic() + self.heartbeat_seconds
            return opening
        while True:
            recheck = None
            if self._pinged:
                self._pinged = False
                self._next_ping = time.monotonic() + self.heartbeat_seconds
                if not self.still_allowed():
                    return None
                if self._retry_build or any(part.sent_date != self.today() for part in self.parts):
                    recheck = Wakeup(recheck=True, since=time.monotonic())
            if recheck is None:
                now = time.monotonic()
                if now >= self._next_ping:
                    self._pinged = True
                    return PING
                if not self._ready.wait(self._next_ping - now):
                    continue
                self._ready.clear()
            chunks = []
            for part in self.parts:
                wakeup = part.subscription.take()
                if recheck is not None and (wakeup is None or not wakeup.closed):
                    wakeup = recheck  # a recheck covers whatever was announced
                if wakeup is None:
                    continue
                if wakeup.closed:
                    if self._gone:
                        return None  # nobody to tell
                    self.close()
                    return CLOSING
                event = self._event(part, wakeup)
                if event is not None:
                    chunks.append(event)
            if chunks:
                return b"".join(chunks)

    def _event(self, part: Part, wakeup: Wakeup) -> bytes | None:
        day = self.today()
        if not wakeup.recheck and day not in wakeup.changes:
            return None  # another day of this topic changed
        try:
            encoded = self.memo.get(
                (part.topic, day, self.variant),
                lambda: part.load(day),
                min_version=wakeup.changes.get(day) if not wakeup.recheck else None,
                since=wakeup.since if wakeup.recheck else None,
            )
        except Exception:  # noqa: BLE001 - keep the stream; try again in a second
            log.warning("event of topic %s not built; retrying", part.topic, exc_info=True)
            self._retry_build = True
            self._next_ping = min(self._next_ping, time.monotonic() + BUILD_RETRY_SECONDS)
            return None
        self._retry_build = False
        if wakeup.force or encoded.version != part.sent_version or encoded.date != part.sent_date:
            part.sent_version, part.sent_date = encoded.version, encoded.date
            if wakeup.published_at:
                delivered(wakeup.published_at)
            return encoded.event
        return None


def open_multi_stream(
    app: Flask,
    *,
    topics: tuple[int, ...],
    variant: str,
    read_first: Callable[[int, str], Encoded],
    loader: Callable[[int], Callable[[str], Encoded]],
    today: Callable[[], str],
    still_allowed: Callable[[], bool],
    claims: tuple[tuple[Topic, int | None], ...],
    refusals: dict[Topic, str],
) -> MultiStream:
    """Subscribe to every topic, read each one's current event, take one lease counted in
    every topic of `claims` (atomically: all or none). `read_first(topic, day)` runs in
    the caller's request (NotFound propagates); a full limit: TooManyRequests with that
    topic's message from `refusals`. Nothing is streamed before all of it holds."""
    heartbeat = float(app.config["SSE_HEARTBEAT_SECONDS"])
    broker = QueueBroker.get(app)
    slots = StreamSlots.get(app)
    ready = threading.Event()
    subscriptions: list[Subscription] = []
    try:
        for topic in topics:
            subscriptions.append(broker.subscribe(topic, variant, ready))
        day = today()
        firsts = [broker.memo.share((topic, day, variant), read_first(topic, day)) for topic in topics]
        lease = slots.claim(claims, lease_ttl_seconds(heartbeat))
        if lease.refused_by is not None:
            stream_refused(refusal_reason(lease.refused_by))
            raise TooManyRequests(refusals[lease.refused_by], retry_after=max(1, round(heartbeat)))
    except BaseException:
        for subscription in subscriptions:
            broker.unsubscribe(subscription)
        raise
    opening = retry_line(int(app.config["SSE_RETRY_MS"])) + b"".join(first.event for first in firsts)
    stream = MultiStream(
        parts=[
            Part(topic, subscription, loader(topic), first)
            for topic, subscription, first in zip(topics, subscriptions, firsts, strict=True)
        ],
        opening=opening,
        ready=ready,
        variant=variant,
        broker=broker,
        lease=lease,
        slots=slots,
        today=today,
        still_allowed=still_allowed,
        memo=broker.memo,
        heartbeat_seconds=heartbeat,
    )
    watch_client(stream)
    return stream
