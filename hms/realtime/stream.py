"""One open Server-Sent Events stream of a topic, and its wire format.

The stream holds no request context, database session or pooled connection while it
waits: each event is built by a loader the stream was given (the publishing package's),
which opens its own app context and removes its session at once. Its lease and its mailbox are given back in `close()`, which runs
whichever way the stream ends (client gone: seen by the watcher below or at the next
write; worker shutdown, error, a lease taken over, or a HEAD request whose body is
never iterated).

The stream is itself the response body: an iterator object (not a generator) handed to
the server as is (`direct_passthrough`), yielding bytes. Under gevent every open stream
is a greenlet parked in `__next__`, and a greenlet keeps a copy of the C stack it had
when it was switched out; every generator between the server's loop and the wait (the
body generator, werkzeug's encoding generator and its closing wrapper) would be one more
interpreter frame on that stack, in every stream, for its whole life. Lease renewal is
not the stream's business: the limiter renews every lease of the process in one batch
per heartbeat (limiter.py).

A client that goes away is noticed within about WATCH_SECONDS, not at the next write:
one watcher per worker process (`StreamWatch`, a greenlet under gevent, started with the
first stream and stopped with the last) holds every open stream's socket in one epoll
set that it asks, without waiting, twice a second: a peer's FIN (EPOLLRDHUP) or reset
(EPOLLHUP/EPOLLERR) wakes that stream, which ends at once and gives its lease back. The
cost is one epoll_ctl when a stream opens and when it closes, and one epoll_wait per
worker per tick whatever the number of streams (a peek at each socket would be 10,000
system calls a tick at 10,000 streams). The same tick ends the streams whose lease was
taken over by their own client's reconnect (limiter.py, `take_displaced`). Without a
socket (the test client, a server that does not hand it over) or without epoll, a gone
client is noticed at the next write, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable

from flask import Response, has_request_context, request

from hms.core.metrics import delivered, stream_closed, stream_opened
from hms.realtime.broker import Broker, Subscription, Wakeup
from hms.realtime.limiter import InProcessSlots, Lease, RedisSlots
from hms.realtime.memo import Encoded, SnapshotMemo, retry_line

try:  # gevent's monkey-patching removes select.epoll; the watcher never blocks in it
    from gevent.monkey import get_original

    _epoll = get_original("select", "epoll")
except (ImportError, AttributeError):
    _epoll = getattr(select, "epoll", None)

log = logging.getLogger(__name__)
PING = b": ping\n\n"
CLOSING = b": server restarting, reconnect\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
BUILD_RETRY_SECONDS = 1.0
# How often the watcher looks for gone clients and taken-over leases.
WATCH_SECONDS = 0.5
# A peer's FIN; reset and errors (EPOLLHUP, EPOLLERR) are reported whatever the mask.
_GONE_EVENTS = getattr(select, "EPOLLRDHUP", 0x2000)


class SseBody:
    """A stream as the WSGI response body: an iterator of byte chunks, closed (its lease
    and mailboxes given back) whichever way it ends. Subclasses give `_next_chunk` (None:
    the stream ends), `close` and a `_closed` flag."""

    __slots__ = ()

    def __iter__(self) -> SseBody:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            chunk = self._next_chunk()
        except BaseException:
            self.close()
            raise
        if chunk is None:
            self.close()
            raise StopIteration
        return chunk


class Stream(SseBody):
    """Everything one open stream needs; the stream itself is the response body."""

    __slots__ = (
        "topic",
        "variant",
        "_retry",
        "_first",
        "subscription",
        "broker",
        "lease",
        "slots",
        "load",
        "today",
        "still_allowed",
        "memo",
        "heartbeat_seconds",
        "retry_ms",
        "_closed",
        "_sent_version",
        "_sent_date",
        "_next_ping",
        "_pinged",
        "_retry_build",
        "_gone",
        "fd",
    )

    def __init__(
        self,
        *,
        topic: int,
        variant: str,
        first: Encoded,  # the current state's event, from the memo (SnapshotMemo.share)
        subscription: Subscription,
        broker: Broker,
        lease: Lease,
        slots: InProcessSlots | RedisSlots,
        load: Callable[[str], Encoded],  # (day "YYYY-MM-DD") -> that day's event; own app context
        today: Callable[[], str],  # the clinic's date, "YYYY-MM-DD"
        still_allowed: Callable[[], bool],  # the caller's account still active and signed in
        memo: SnapshotMemo,
        heartbeat_seconds: float,
        retry_ms: int,
    ):
        self.topic = topic
        self.variant = variant
        # The opening is two chunks, `retry:` and the first event, both objects shared by
        # every stream: the server keeps the last chunk it wrote referenced while the
        # stream waits, so an opening encoded per stream would cost every idle stream the
        # size of its event (measured: 39.5 KB per stream at 10,000 with queues of 83).
        self._retry: bytes | None = retry_line(retry_ms)
        self._first: Encoded | None = first
        self._sent_version, self._sent_date = first.version, first.date
        self.subscription = subscription
        self.broker = broker
        self.lease = lease
        self.slots = slots
        self.load = load
        self.today = today
        self.still_allowed = still_allowed
        self.memo = memo
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_ms = retry_ms
        self._closed = False
        self._next_ping = 0.0
        self._pinged = False  # a ping was the last thing handed out: check the account now
        self._retry_build = False
        self._gone = False  # the client went away, or the lease was taken over
        self.fd = -1  # the client's socket, while the watcher watches it

    def end(self) -> None:
        """End the stream now, from another greenlet or thread (the watcher): it wakes,
        writes nothing more and closes."""
        self._gone = True
        self.subscription.close()

    def close(self) -> None:
        """Give back the lease and the mailbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        WATCH.remove(self)
        self.broker.unsubscribe(self.subscription)
        try:
            self.slots.release(self.lease)
        except Exception:  # noqa: BLE001 - an unreleased lease expires by itself
            log.warning("stream lease of topic %s not released", self.topic, exc_info=True)

    def _build(self, day: str, wakeup: Wakeup) -> Encoded:
        return self.memo.get(
            (self.topic, day, self.variant),
            lambda: self.load(day),
            min_version=wakeup.changes.get(day) if not wakeup.recheck else None,
            since=wakeup.since if wakeup.recheck else None,
        )

    def _next_chunk(self) -> bytes | None:
        """The next bytes to write, or None when the stream ends. Each call resumes where
        the previous chunk was handed out, i.e. after the server has written it."""
        if self._retry is not None:
            retry, self._retry = self._retry, None
            return retry
        if self._first is not None:
            first, self._first = self._first, None
            self._next_ping = time.monotonic() + self.heartbeat_seconds
            return first.event
        while True:
            wakeup = None
            if self._pinged:
                # The ping was written (a vanished client makes that write fail and the
                # server closes us instead).
                self._pinged = False
                self._next_ping = time.monotonic() + self.heartbeat_seconds
                if not self.still_allowed():
                    return None
                if self._retry_build or self.today() != self._sent_date:
                    wakeup = Wakeup(recheck=True, since=time.monotonic())  # a failed build, or a new day
            if wakeup is None:
                now = time.monotonic()
                if now >= self._next_ping:
                    self._pinged = True
                    return PING
                wakeup = self.subscription.wait(self._next_ping - now)
                if wakeup is None:
                    continue
                if wakeup.closed:
                    if self._gone:
                        return None  # nobody to tell
                    self.close()  # CLOSING is the last chunk: the next call ends the stream
                    return CLOSING
            day = self.today()
            if not wakeup.recheck and day not in wakeup.changes:
                continue  # another day of this topic changed
            try:
                encoded = self._build(day, wakeup)
            except Exception:  # noqa: BLE001 - keep the stream; try again in a second
                log.warning("event of topic %s not built; retrying", self.topic, exc_info=True)
                self._retry_build = True
                self._next_ping = min(self._next_ping, time.monotonic() + BUILD_RETRY_SECONDS)
                continue
            self._retry_build = False
            if wakeup.force or encoded.version != self._sent_version or encoded.date != self._sent_date:
                self._sent_version, self._sent_date = encoded.version, encoded.date
                if wakeup.published_at:
                    delivered(wakeup.published_at)
                return encoded.event


class StreamWatch:
    """This process's open streams: their sockets in one epoll set, and their leases, for
    the one watcher loop that ends those whose client is gone or whose lease was taken
    over (see the module notes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_lease: dict[str, Stream] = {}
        self._by_fd: dict[int, Stream] = {}
        self._slots: weakref.WeakSet = weakref.WeakSet()
        self._epoll = None
        self._loop: threading.Thread | None = None
        self._pid: int | None = None
        self.ticks = 0  # watcher rounds (tests)

    def add(self, stream: Stream, sock) -> None:
        """Watch `stream`, and its client's socket `sock` (None: only its lease)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: nothing of the parent's applies
                self._by_lease, self._by_fd, self._epoll, self._loop = {}, {}, None, None
                self._pid = os.getpid()
            self._by_lease[stream.lease.lease_id] = stream
            stream_opened()
            self._slots.add(stream.slots)
            fd = self._fd_of(sock)
            if fd >= 0 and self._watch_fd(fd):
                stream.fd = fd
                self._by_fd[fd] = stream
            if self._loop is None:
                self._loop = threading.Thread(target=self._run, name="hms-stream-watch", daemon=True)
                self._loop.start()

    @staticmethod
    def _fd_of(sock) -> int:
        try:
            return sock.fileno() if sock is not None else -1
        except (OSError, AttributeError, ValueError):
            return -1

    def _watch_fd(self, fd: int) -> bool:
        if _epoll is None:
            return False
        try:
            if self._epoll is None:
                self._epoll = _epoll()
            try:
                self._epoll.register(fd, _GONE_EVENTS)
            except FileExistsError:  # a closed socket's number, reused
                self._epoll.modify(fd, _GONE_EVENTS)
        except OSError:
            return False
        return True

    def remove(self, stream: Stream) -> None:
        with self._lock:
            if self._by_lease.get(stream.lease.lease_id) is stream:
                del self._by_lease[stream.lease.lease_id]
                stream_closed()
            fd, stream.fd = stream.fd, -1
            if fd >= 0 and self._by_fd.get(fd) is stream:
                del self._by_fd[fd]
                with contextlib.suppress(OSError, ValueError):  # closed: the kernel dropped it
                    self._epoll.unregister(fd)

    def count(self) -> int:
        with self._lock:
            return len(self._by_lease)

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            with self._lock:
                if not self._by_lease:
                    self._loop = None
                    return
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad round
                log.warning("stream watcher round failed", exc_info=True)

    def tick(self) -> None:
        """One round: end the streams whose client is gone or whose lease was taken over."""
        ending = []
        with self._lock:
            if self._epoll is not None and self._by_fd:
                ending += [self._by_fd.get(fd) for fd, _ in self._epoll.poll(0)]
            slots = list(self._slots)
        for one in slots:
            for lease_id in one.take_displaced():
                with self._lock:
                    ending.append(self._by_lease.get(lease_id))
        for stream in ending:
            if stream is not None:
                stream.end()
        self.ticks += 1


WATCH = StreamWatch()


def watch_client(stream: SseBody) -> None:
    """Let the watcher end `stream` when the request's client goes away (its socket, when
    the server hands it over: gunicorn's environ["gunicorn.socket"])."""
    WATCH.add(stream, request.environ.get("gunicorn.socket") if has_request_context() else None)


def sse_response(stream: SseBody) -> Response:
    # The stream is the WSGI body as is (bytes, closed by the server): no encoding
    # generator or closing wrapper per stream.
    response = Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS, direct_passthrough=True)
    # Also on close: a HEAD response never iterates the body, so the stream is never closed
    # by the server; werkzeug then closes the Response.
    response.call_on_close(stream.close)
    return response
