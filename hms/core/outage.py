"""A dependency going down is logged once, and its return once, with a count.

A Redis outage makes every cache read, publish and lease call fail: logged one by one
with a traceback, a 25 s outage wrote 3,913 tracebacks (13.6 MB). Each component that
degrades gracefully when its dependency fails (the cache, the broker's publisher and
subscriber, the stream limits) holds one `Dependency`: `failed()` at every failure,
`ok()` after every success. The first failure logs one WARNING line ("... down"), the
failures after it are only counted, and the first success after them logs one line
("... back after N s; M operations failed meanwhile"). No traceback: the failure is
expected and handled (the type and message of the first exception are in the line).
Unexpected errors keep their full traceback where they are caught.

Each line carries the request it happened in (method, route, account, request id) when
there is one: see hms.errors.request_context. `ok()` on the hot path is one attribute read.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.backoff import NoBackoff
from redis.retry import Retry

from hms.errors import request_context

log = logging.getLogger("hms.outage")


def fail_fast() -> Retry:
    """The retry policy of every Redis client (the same as config.fail_fast for the cache
    and the rate limits): one immediate retry (a pooled connection that a Redis restart
    closed), no backoff. redis-py 7's default (3 retries, exponential backoff) held each
    operation on a stopped Redis for 8.7 s. One object per client (a client adapts it)."""
    return Retry(NoBackoff(), 1)


class Dependency:
    """One component's view of a dependency: up, or down since the first failure."""

    def __init__(self, name: str):
        self.name = name
        self.down = False
        self.failures = 0  # failures of the current (or last) outage
        self._since = 0.0
        self._lock = threading.Lock()

    def failed(self, what: str, exc: BaseException | None = None) -> None:
        """Count one failure; the first of an outage logs a line (no traceback)."""
        with self._lock:
            self.failures += 1
            if self.down:
                return
            self.down, self.failures, self._since = True, 1, time.monotonic()
        cause = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        log.warning(
            "%s down: %s failed%s; further failures are counted until it is back%s",
            self.name,
            what,
            cause,
            request_context(),
        )

    def ok(self) -> None:
        """A success: if the dependency was down, log its return once, with the count."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            failures, seconds = self.failures, time.monotonic() - self._since
        log.warning(
            "%s back after %.1f s; %d operations failed meanwhile%s",
            self.name,
            seconds,
            failures,
            request_context(),
        )
