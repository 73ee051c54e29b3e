"""API rate limits: per account on authenticated calls, per client address on the others.

RATE_LIMIT_PER_ACCOUNT (default "600 per minute") counts every call an account makes;
RATE_LIMIT_PER_ADDRESS (default "300 per minute") counts the calls that carry no valid
token or session (sign-in, the patient's ticket, the login page, a 401), per client
address (behind a proxy, TRUSTED_PROXY_COUNT makes that the client's, not the proxy's).
"0" turns a limit off. The probes and the metrics (/healthz, /readyz, /metrics), the
static files, OPTIONS and unknown URLs (404/405) are never counted.

One check per request, made by the access hook (hms.auth.access) once it knows who is
calling, so it costs one storage round trip: flask-limiter's per-request hook is not used
(hms/__init__.py removes it), only its storage, with the `limits` library's moving
window (a Redis Lua script: one EVALSHA per request). The window moves: 600 per minute
means at most 600 calls in any 60 seconds, with no fresh allowance at the top of the
minute. With REDIS_URL the counts are shared by every worker and instance; without it
they are the worker's own (the embedded default runs one worker).

A stream (SSE) is one request: it counts once, when it is opened, not per event.

A refusal is a 429 with Retry-After (the seconds until the oldest call in the window
leaves it) and the error body of API.md; pages (not /api) get a short HTML page instead.

While Redis is unreachable calls are not refused (fail open): the outage is logged once
(hms.core.outage), and Redis is tried again at most every RETRY_STORAGE_SECONDS, so a hung
Redis does not hold every request for its socket timeout.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

from flask import Response, current_app, request
from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from hms.core.db import end_read_transaction
from hms.core.metrics import rate_limited
from hms.core.outage import Dependency
from hms.errors import TooManyRequests
from hms.extensions import limiter

RETRY_STORAGE_SECONDS = 2
# Endpoints never counted: the probes, the metrics scrape and the static files.
UNLIMITED_ENDPOINTS = frozenset({"static", "ops.healthz", "ops.readyz", "ops.metrics"})
_OFF = {"", "0", "off", "none"}


@lru_cache(maxsize=32)
def parse_limit(text: str) -> RateLimitItem | None:
    """The limit a setting names ("600 per minute"), or None when it is off ("0")."""
    if text.strip().lower() in _OFF:
        return None
    return parse(text)


class Refused(TooManyRequests):
    """A call over the account's or the address's limit."""

    def __init__(self, limit_name: str, retry_after: int):
        who = "this account" if limit_name == "account" else "this address"
        seconds = "1 second" if retry_after == 1 else f"{retry_after} seconds"
        super().__init__(f"Too many requests from {who}: try again in {seconds}.", retry_after=retry_after)
        self.limit_name = limit_name


class ApiLimits:
    """The moving-window check on the limiter's storage; skips it while Redis is down."""

    def __init__(self) -> None:
        self._storage: Storage | None = None
        self._window: MovingWindowRateLimiter | None = None
        self._skip_until = 0.0
        self.redis = Dependency("Redis API rate limits")

    def _strategy(self) -> MovingWindowRateLimiter:
        storage = limiter.storage
        if storage is not self._storage:  # the first call, or another app's limiter
            self._window, self._storage = MovingWindowRateLimiter(storage), storage
        return self._window

    def hit(self, limit_name: str, item: RateLimitItem, key: str) -> None:
        """Count one call; Refused (a 429) when the window is full."""
        if self.redis.down and time.monotonic() < self._skip_until:
            return
        window = self._strategy()
        storage = self._storage
        # The check may yield (a Redis round trip; the memory storage starts its expiry
        # timer thread): the identity's read transaction must not be held across it.
        end_read_transaction()
        try:
            if window.hit(item, limit_name, key):
                self.redis.ok()
                return
            reset_at = window.get_window_stats(item, limit_name, key).reset_time
        except storage.base_exceptions as exc:
            self._skip_until = time.monotonic() + RETRY_STORAGE_SECONDS
            self.redis.failed("rate-limit check", exc)
            return
        self.redis.ok()
        rate_limited(limit_name)  # hms_rate_limit_refusals_total{limit=account|address}
        raise Refused(limit_name, max(1, math.ceil(reset_at - time.time())))

    def reset(self) -> None:
        """Forget an outage seen (tests); the counts live in the limiter's storage."""
        self._skip_until = 0.0
        self.redis.down = False


api_limits = ApiLimits()


def limit_account(account_id: int) -> None:
    """Count an authenticated call against its account's limit."""
    item = parse_limit(current_app.config["RATE_LIMIT_PER_ACCOUNT"])
    if item is not None:
        api_limits.hit("account", item, str(account_id))


def limit_address(endpoint: str | None) -> None:
    """Count a call with no valid credentials against its client address's limit."""
    if endpoint in UNLIMITED_ENDPOINTS:
        return
    item = parse_limit(current_app.config["RATE_LIMIT_PER_ADDRESS"])
    if item is not None:
        api_limits.hit("address", item, request.remote_addr or "-")


def refusal_page(refused: Refused) -> Response:
    """The refusal for a page (not /api): a few words in HTML, with Retry-After."""
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Too many requests</title>"
        f"<h1>Too many requests</h1><p>{refused.message}</p>"
    )
    return Response(body, 429, refused.headers, mimetype="text/html")


def check_settings(config) -> None:
    """Refuse to start with a limit flask-limiter's syntax cannot read."""
    for name in ("RATE_LIMIT_PER_ACCOUNT", "RATE_LIMIT_PER_ADDRESS"):
        try:
            parse_limit(str(config[name]))
        except ValueError:
            raise RuntimeError(
                f"{name}={config[name]!r}: write a limit like '600 per minute', or 0 for none"
            ) from None
