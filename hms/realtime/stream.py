"""One open Server-Sent Events stream of a doctor's queue, and its wire format.

The stream holds no request context, database session or pooled connection while it
waits: each snapshot is built by a callable that opens its own app context and removes
its session at once. Its lease and its mailbox are given back in `close()`, which runs
whichever way the stream ends (client gone at the next write, worker shutdown, error,
or a HEAD request whose body is never iterated).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from flask import Response

from hms.realtime.broker import Broker, Subscription, Wakeup
from hms.realtime.limiter import InProcessSlots, Lease, RedisSlots

log = logging.getLogger(__name__)
PING = ": ping\n\n"
CLOSING = ": server restarting, reconnect\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
BUILD_RETRY_SECONDS = 1.0


def format_event(snapshot: dict, retry_ms: int | None = None) -> str:
    """`id: <version>`, `event: queue`, the snapshot as one line of JSON."""
    data = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False)
    head = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{head}id: {snapshot['version']}\nevent: queue\ndata: {data}\n\n"


class SnapshotMemo:
    """One snapshot build, and one encoding, per change per worker process.

    All the streams of a doctor wake together on a change: the first one builds (from
    the shared cache, else the database) and encodes the event, the others reuse both
    when the snapshot is at least as new as the version they were told about, or was
    started after the resync they were asked for. Every stream then writes the same
    string object: nothing per stream but the socket buffer."""

    MAX_KEYS = 2000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._latest: dict[tuple, tuple[float, dict, str]] = {}

    def get(
        self, key: tuple, load: Callable[[], dict], min_version: int | None = None, since: float | None = None
    ) -> tuple[dict, str]:
        """(snapshot, its encoded `queue` event)."""
        with self._lock:
            if len(self._key_locks) > self.MAX_KEYS:
                self._key_locks.clear()
                self._latest.clear()
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            entry = self._latest.get(key)
            if entry is not None:
                started, snapshot, event = entry
                if min_version is not None and snapshot["version"] >= min_version:
                    return snapshot, event
                if since is not None and started >= since:
                    return snapshot, event
            started = time.monotonic()
            snapshot = load()
            event = format_event(snapshot)
            self._latest[key] = (started, snapshot, event)
            return snapshot, event


@dataclass
class QueueStream:
    """Everything one open stream needs; `events()` is the response body."""

    doctor_id: int
    masked: bool
    first_snapshot: dict | None
    subscription: Subscription
    broker: Broker
    lease: Lease
    slots: InProcessSlots | RedisSlots
    load_snapshot: Callable[[str], dict]  # (date "YYYY-MM-DD") -> snapshot; own app context
    today: Callable[[], str]  # the clinic's date, "YYYY-MM-DD"
    still_allowed: Callable[[], bool]  # the caller's account still active and signed in
    memo: SnapshotMemo
    heartbeat_seconds: float
    lease_ttl_seconds: float
    retry_ms: int
    _closed: bool = field(default=False, init=False)

    def close(self) -> None:
        """Give back the lease and the mailbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.broker.unsubscribe(self.subscription)
        try:
            self.slots.release(self.lease)
        except Exception:  # noqa: BLE001 - an unreleased lease expires by itself
            log.warning("stream lease of doctor %s not released", self.doctor_id, exc_info=True)

    def _build(self, day: str, wakeup: Wakeup) -> tuple[dict, str]:
        key = (self.doctor_id, day, self.masked)
        return self.memo.get(
            key,
            lambda: self.load_snapshot(day),
            min_version=wakeup.changes.get(day) if not wakeup.recheck else None,
            since=wakeup.since if wakeup.recheck else None,
        )

    def events(self) -> Iterator[str]:
        try:
            yield from self._run()
        finally:
            self.close()

    def _run(self) -> Iterator[str]:
        # Keep only what the comparisons need: a held snapshot would cost every open
        # stream tens of kilobytes for its whole life.
        first, self.first_snapshot = self.first_snapshot, None
        sent_version, sent_date = first["version"], first["date"]
        yield format_event(first, retry_ms=self.retry_ms)
        del first
        next_ping = time.monotonic() + self.heartbeat_seconds
        retry_build = False
        while True:
            now = time.monotonic()
            if now >= next_ping:
                # A vanished client makes this write fail: the server closes us then.
                yield PING
                next_ping = time.monotonic() + self.heartbeat_seconds
                self.slots.renew(self.lease, self.lease_ttl_seconds)
                if not self.still_allowed():
                    return
                if not (retry_build or self.today() != sent_date):
                    continue
                wakeup = Wakeup(recheck=True, since=now)  # a failed build, or a new day
            else:
                wakeup = self.subscription.wait(next_ping - now)
                if wakeup is None:
                    continue
                if wakeup.closed:
                    yield CLOSING
                    return
            day = self.today()
            if not wakeup.recheck and day not in wakeup.changes:
                continue  # another date of this doctor changed
            try:
                snapshot, event = self._build(day, wakeup)
            except Exception:  # noqa: BLE001 - keep the stream; try again in a second
                log.warning("queue snapshot of doctor %s failed; retrying", self.doctor_id, exc_info=True)
                retry_build = True
                next_ping = min(next_ping, time.monotonic() + BUILD_RETRY_SECONDS)
                continue
            retry_build = False
            if wakeup.force or snapshot["version"] != sent_version or snapshot["date"] != sent_date:
                sent_version, sent_date = snapshot["version"], snapshot["date"]
                yield event


def sse_response(stream: QueueStream) -> Response:
    response = Response(stream.events(), mimetype="text/event-stream", headers=SSE_HEADERS)
    # Also on close: a HEAD response never iterates the body, so its finally never runs.
    response.call_on_close(stream.close)
    return response
