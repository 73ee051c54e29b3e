"""Cache access that never fails a request.

Everything goes through flask-caching's `cache` (Redis when REDIS_URL is set, an
in-process SimpleCache otherwise). When Redis is down, reads miss and fall through
to the database, writes and deletes are skipped: the REST API keeps answering. An
outage is logged once when it starts and once when it ends, with the number of cache
operations that failed meanwhile (hms.core.outage), not once per failure.

Lists are cached under a per-namespace generation number, so one write can invalidate
every cached page and search of that namespace with a single increment.
Invalidate only after the transaction that changed the data has committed.

An invalidation that fails (Redis unreachable) is not forgotten: the worker keeps the
keys it could not delete, reads none of them from the cache (they miss, so they are
read from the database) and does not store them, and a background retrier deletes
them as soon as Redis answers again (every RETRY_SECONDS), so no worker reads the stale
entry once Redis is back. A failed generation bump is kept the same way, as the
deletion of the generation key: a namespace without a tag gets a new one at its next
read, which is a bump. Costs nothing while every invalidation has succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, has_app_context
from redis.exceptions import RedisError

from hms.core.metrics import cache_result
from hms.core.outage import Dependency
from hms.extensions import cache

log = logging.getLogger(__name__)
REDIS_CACHE = Dependency("Redis cache")
T = TypeVar("T")
_MISSING = object()
_ALONG = "_hms_cache_along"  # g attribute: [keys to add to the next read, {key: value read along}]
UNDELIVERED_KEY = "hms.core.cache.undelivered"  # app.extensions: this worker's Undelivered
RETRY_SECONDS = 0.25
_ever_undelivered = False  # until an invalidation fails, reads skip the check below


class Undelivered:
    """Invalidations this worker could not deliver: the keys still to delete."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.lock = threading.Lock()
        self.retrying = False


def _undelivered() -> Undelivered | None:
    if not _ever_undelivered:
        return None
    return current_app.extensions.get(UNDELIVERED_KEY) if has_app_context() else None


def _keep_undelivered(keys: tuple[str, ...]) -> None:
    global _ever_undelivered
    _ever_undelivered = True
    app = current_app._get_current_object()
    state = app.extensions.get(UNDELIVERED_KEY)
    if state is None:
        state = app.extensions.setdefault(UNDELIVERED_KEY, Undelivered())
    with state.lock:
        if not state.keys:
            log.warning(
                "cache invalidation failed; retrying every %ss until the cache answers", RETRY_SECONDS
            )
        state.keys.update(keys)
        if state.retrying:
            return
        state.retrying = True
    threading.Thread(target=_retry, args=(app, state), name="hms-cache-invalidation", daemon=True).start()


def _retry(app: Flask, state: Undelivered) -> None:
    """Delete the undelivered keys once the cache answers (runs until they are gone)."""
    while True:
        time.sleep(RETRY_SECONDS)
        with state.lock:
            keys = tuple(state.keys)
            if not keys or app.extensions.get(UNDELIVERED_KEY) is not state:
                state.retrying = False
                return
        try:
            with app.app_context():
                cache.delete_many(*keys)
        except Exception:  # noqa: BLE001 - still unreachable; try again
            continue
        with state.lock:
            state.keys.difference_update(keys)
        log.warning("cache reachable again: %d failed invalidation(s) delivered", len(keys))


def prefetch(*keys: str) -> None:
    """Keys this request will read soon: they ride along with its next cache read (the
    caller's identity, read first by authentication), so they cost no round trip of
    their own. The queue package asks for today's snapshot this way on its hottest read.

    Each value read along is handed out once, to a later read of exactly those keys, and
    everything read along is dropped at the request's first cache write or delete: a
    value is never older than the moment it was read, as if it had been read then."""
    if keys and has_app_context():
        setattr(g, _ALONG, [keys, {}])


def _read(keys: tuple[str, ...]) -> list[Any]:
    values = _read_cache(keys)
    state = _undelivered()
    if state is not None and state.keys:
        # What this worker failed to invalidate may still be there: not to be trusted.
        values = [None if key in state.keys else value for key, value in zip(keys, values, strict=True)]
    return values


def _read_cache(keys: tuple[str, ...]) -> list[Any]:
    along = g.get(_ALONG) if has_app_context() else None
    if along is None:
        return list(cache.get_many(*keys))
    wanted, have = along
    if wanted:
        along[0] = ()
        extra = [key for key in wanted if key not in keys]
        values = list(cache.get_many(*keys, *extra))
        have.update(zip(extra, values[len(keys) :], strict=True))
        return values[: len(keys)]
    if all(key in have for key in keys):
        return [have.pop(key) for key in keys]
    return list(cache.get_many(*keys))


def _forget_along() -> None:
    if has_app_context():
        g.pop(_ALONG, None)


def _failed(what: str, exc: Exception) -> None:
    """A cache operation failed: an outage (counted, logged once), or a bug (traceback)."""
    if isinstance(exc, (RedisError, OSError)):
        REDIS_CACHE.failed(what, exc)
    else:
        log.warning("%s failed", what, exc_info=True)


def cache_get(key: str) -> Any:
    try:
        value = _read((key,))[0]
    except Exception as exc:  # noqa: BLE001 - a cache outage must not fail the request
        _failed("cache get", exc)
        return None
    REDIS_CACHE.ok()
    return value


def cache_get_many(*keys: str) -> list[Any]:
    """Several keys in one round trip; None for each miss (or all, if the cache is down)."""
    try:
        values = _read(keys)
    except Exception as exc:  # noqa: BLE001
        _failed("cache get_many", exc)
        return [None] * len(keys)
    REDIS_CACHE.ok()
    return values


def cache_set(key: str, value: Any, timeout: int) -> None:
    _forget_along()
    state = _undelivered()
    if state is not None and key in state.keys:
        return  # its deletion is pending: the retrier's, not overwritten meanwhile
    try:
        cache.set(key, value, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        _failed("cache set", exc)
    else:
        REDIS_CACHE.ok()


def cache_delete(*keys: str) -> None:
    """Delete `keys` now, or as soon as the cache answers again (see the module notes)."""
    _forget_along()
    try:
        cache.delete_many(*keys)
    except Exception as exc:  # noqa: BLE001
        _failed("cache delete", exc)
        _keep_undelivered(keys)
    else:
        REDIS_CACHE.ok()


def cached(key: str, timeout: int, load: Callable[[], T], *, name: str = "other") -> T:
    """Return the cached value of `key`, or load, store and return it. `name`: the
    cache's name in the hit and miss counts (a fixed word, never the key)."""
    value = cache_get(key)
    cache_result(name, value is not None)
    if value is not None:
        return value
    value = load()
    if value is not None:
        cache_set(key, value, timeout)
    return value


def cached_in_generation(
    namespace: str, key: str, timeout: int, load: Callable[[], T], *, name: str = "other"
) -> T:
    """Like `cached`, for a key that `bump_generation(namespace)` must invalidate, in ONE
    round trip: the value is stored with the generation tag it was read under, and the
    tag and the value are fetched together. A value stored under an older tag (read
    before the write that bumped it committed) is never returned."""
    tag, stored = cache_get_many(generation_key(namespace), key)
    hit = tag is not None and isinstance(stored, tuple) and len(stored) == 2 and stored[0] == tag
    cache_result(name, hit)
    if hit:
        return stored[1]
    tag = tag or _new_generation(namespace)
    value = load()
    if value is not None:
        cache_set(key, (tag, value), timeout)
    return value


def generation_key(namespace: str) -> str:
    return f"gen:{namespace}"


def _new_generation(namespace: str) -> str:
    tag = uuid.uuid4().hex[:12]
    cache_set(generation_key(namespace), tag, timeout=0)
    return tag


def generation(namespace: str) -> str:
    """The current generation tag of `namespace`, for building list cache keys.

    Tags are random and never reused: if the tag itself is evicted or lost, a new one
    is drawn and old entries are simply never read again (they expire on their own).
    """
    return cache_get(generation_key(namespace)) or _new_generation(namespace)


def bump_generation(namespace: str) -> None:
    """Invalidate every key built with `generation(namespace)`: a new tag, or, if the
    cache cannot be reached, the tag's deletion as soon as it can."""
    _forget_along()
    try:
        cache.set(generation_key(namespace), uuid.uuid4().hex[:12], timeout=0)
    except Exception:  # noqa: BLE001
        log.warning("cache generation bump failed for %s", namespace, exc_info=True)
        _keep_undelivered((generation_key(namespace),))
