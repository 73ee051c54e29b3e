"""Counting sign-in attempts: one count for the API and the login form, taken before
the password is checked.

Each attempt first reserves a slot in every limit that covers it (Redis INCR with expiry,
a fixed window, through the `limits` storage that Flask-Limiter configured). A reservation
is atomic, so a burst of parallel guesses gets at most the limit's number of password
checks; the rest are refused without one. A failed check keeps its slot; a successful
sign-in gives its slots back, so only failures use up the limits.

While the shared storage (Redis) is unreachable, sign-in is not refused: each worker
counts in its own memory instead, says so once in the log, tries Redis again every
RETRY_STORAGE_SECONDS and says once when it is back. Flask-Limiter's own in-memory
fallback does not fit here: it swaps a view's limits for one list keyed by client
address (the per-username limits would vanish), and it looks for Redis's return in the
per-request hook that HMS removes (hms/__init__.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from hms.extensions import limiter

log = logging.getLogger(__name__)

RETRY_STORAGE_SECONDS = 2


@lru_cache(maxsize=32)
def _limit(text: str) -> RateLimitItem:
    return parse(text)


@dataclass(frozen=True)
class Reservation:
    """The slots one attempt holds: given back after a successful sign-in."""

    storage: Storage
    keys: tuple[tuple[RateLimitItem, tuple[str, ...]], ...]

    def part(self, start: int, stop: int | None) -> Reservation:
        """The slots of the limits start..stop (in the order reserved), to give back."""
        return Reservation(self.storage, self.keys[start:stop])


class Refused(Exception):
    """A full limit: `item` is the limit, `retry_after` the seconds until its window ends,
    `limit` which limit refused (the first word of its key)."""

    def __init__(self, item: RateLimitItem, retry_after: int, limit: str):
        super().__init__(item, retry_after, limit)
        self.item = item
        self.retry_after = retry_after
        self.limit = limit  # which limit refused: the first word of its key

    def window_in_words(self) -> str:
        """The limit's window in words: "a minute", "an hour", "10 minutes"."""
        unit = self.item.GRANULARITY.name
        if self.item.multiples != 1:
            return f"{self.item.multiples} {unit}s"
        return f"{'an' if unit == 'hour' else 'a'} {unit}"


class SignInThrottle:
    """Reserves and gives back sign-in slots; falls back to this worker's memory."""

    def __init__(self) -> None:
        # Made when first needed: a MemoryStorage starts a timer thread when it is made,
        # which must not happen at import (before gevent patches threading in a worker).
        self._memory: MemoryStorage | None = None
        self._lock = threading.Lock()
        self._shared_down = False
        self._next_try = 0.0
        self._counted_in_memory = 0

    def reserve(self, counts: list[tuple[str, tuple[str, ...]]]) -> Reservation:
        """Take one slot in each (limit, key) in order; Refused at the first one that is full.

        The slots taken before a full one stay taken: a refused attempt counts too."""
        storage = self._storage()
        if storage is not None:
            try:
                return self._reserve(storage, counts)
            except storage.base_exceptions:
                self._went_down()
        self._counted_in_memory += 1
        return self._reserve(self._memory_storage(), counts)

    def give_back(self, reservation: Reservation) -> None:
        try:
            for item, key in reservation.keys:
                reservation.storage.incr(item.key_for(*key), item.get_expiry(), amount=-1)
        except reservation.storage.base_exceptions:
            self._went_down()

    def reset(self) -> None:
        """Forget every count and any outage seen (tests: between one test and the next)."""
        with self._lock:
            if self._memory is not None:
                self._memory.reset()
            self._shared_down, self._next_try, self._counted_in_memory = False, 0.0, 0

    def _memory_storage(self) -> MemoryStorage:
        with self._lock:
            if self._memory is None:
                self._memory = MemoryStorage()
            return self._memory

    def _reserve(self, storage: Storage, counts: list[tuple[str, tuple[str, ...]]]) -> Reservation:
        window = FixedWindowRateLimiter(storage)
        taken = []
        for text, key in counts:
            item = _limit(text)
            if not window.hit(item, *key):
                reset_at = window.get_window_stats(item, *key).reset_time
                raise Refused(item, max(1, math.ceil(reset_at - time.time())), key[0])
            taken.append((item, key))
        return Reservation(storage, tuple(taken))

    def _storage(self) -> Storage | None:
        """The shared storage, or None while it is down (count in memory then)."""
        shared = limiter.storage
        if not self._shared_down:
            return shared
        if time.monotonic() < self._next_try:
            return None
        with self._lock:
            if not self._shared_down:
                return shared
            self._next_try = time.monotonic() + RETRY_STORAGE_SECONDS
        if not shared.check():
            return None
        with self._lock:
            if self._shared_down:
                self._shared_down = False
                log.warning(
                    "sign-in limits: Redis is back; counting there again (%d attempts counted in memory)",
                    self._counted_in_memory,
                )
        return shared

    def _went_down(self) -> None:
        with self._lock:
            if self._shared_down:
                return
            self._shared_down = True
            self._counted_in_memory = 0
            self._next_try = time.monotonic() + RETRY_STORAGE_SECONDS
        log.warning(
            "sign-in limits: Redis unreachable; each worker limits sign-in in its own memory until it returns"
        )


sign_in_throttle = SignInThrottle()
