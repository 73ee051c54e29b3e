"""A bounded least-recently-used map for the per-process memos (verified tokens,
identities read locally, the realtime registries).

When full, the entry unused longest makes room for the new one, so a busy worker keeps
its hot entries instead of wiping the whole map at a size limit and paying for every
entry again at once. Every operation holds one lock: greenlets (gevent patches the lock)
and plain threads alike never see a half-evicted map.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `maxsize` entries; reading or writing an entry makes it the most recent."""

    __slots__ = ("_entries", "_lock")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._entries: LRUCache = LRUCache(maxsize)
        self._lock = threading.Lock()

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            return self._entries.get(key, default)

    def set(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The entry of `key`, made by `make()` and kept if there is none (atomically)."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                value = self._entries[key] = make()
            return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            return self._entries.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
