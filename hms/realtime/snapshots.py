"""Encoded queue events, and the per-worker memo that builds each one once per change.

An event is the `queue` event of the wire format (`id: <version>`, `event: queue`, the
snapshot as one line of JSON), kept as bytes: every stream of a doctor writes the same
bytes object, so nothing is encoded per stream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple


def snapshot_json(snapshot: dict) -> str:
    """A snapshot as the one line of compact JSON that both GET /api/queue answers and the
    stream's event carries: encoded once per change, used for both."""
    return json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False)


def event_text(version: int, data: str) -> str:
    """`id: <version>`, `event: queue`, `data:` the snapshot's JSON (one line). A stream
    sends `retry_line` once before its first event."""
    return f"id: {version}\nevent: queue\ndata: {data}\n\n"


def format_event(snapshot: dict) -> str:
    return event_text(snapshot["version"], snapshot_json(snapshot))


@lru_cache(maxsize=16)
def retry_line(retry_ms: int) -> bytes:
    """The `retry:` field a stream opens with, one bytes object per value per process."""
    return f"retry: {retry_ms}\n".encode()


class Encoded(NamedTuple):
    """What a stream needs of a snapshot: its version and date to compare, and its event."""

    version: int
    date: str
    event: bytes


def encode(snapshot: dict) -> Encoded:
    return Encoded(int(snapshot["version"]), str(snapshot["date"]), format_event(snapshot).encode())


class SnapshotMemo:
    """One snapshot build, and one encoding, per change per worker process.

    All the streams of a doctor wake together on a change. The event usually comes
    ready-made with the change's message (`offer`, see broker.py): then nobody builds.
    Otherwise the first stream builds (from the shared cache, else the database) and
    encodes it, and the others reuse it when its version is at least the one they were
    told about, or when it was started after the resync they were asked for. Only the
    version, the date and the encoded bytes are kept, not the snapshot's objects."""

    MAX_KEYS = 2000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        # key -> (started: monotonic time the build began, 0.0 for an offered one; encoded)
        self._latest: dict[tuple, tuple[float, Encoded]] = {}

    def _key_lock(self, key: tuple) -> threading.Lock:
        with self._lock:
            if len(self._key_locks) > self.MAX_KEYS:
                self._key_locks.clear()
                self._latest.clear()
            return self._key_locks.setdefault(key, threading.Lock())

    def offer(self, key: tuple, encoded: Encoded) -> bool:
        """Keep a snapshot built elsewhere (the publisher's) if it is newer than ours.

        Its build time is unknown here, so it never satisfies a resync (`since`)."""
        with self._key_lock(key):
            entry = self._latest.get(key)
            if entry is not None and (entry[1].version >= encoded.version and entry[1].date == encoded.date):
                return False
            self._latest[key] = (0.0, encoded)
            return True

    def share(self, key: tuple, snapshot: dict) -> Encoded:
        """The encoded event of a snapshot just read for a new stream: the memo's own
        object when it holds that very version (every stream of a doctor that opens
        between two changes writes the same bytes), else a new one, kept if newer.

        Sharing matters for memory, not only for speed: the server's write loop keeps
        the last chunk it wrote referenced while the stream waits, so a first event
        encoded per stream would stay alive in every idle stream until its next write."""
        version, day = int(snapshot["version"]), str(snapshot["date"])
        with self._key_lock(key):
            entry = self._latest.get(key)
            if entry is not None and entry[1].version == version and entry[1].date == day:
                return entry[1]
            encoded = encode(snapshot)
            if entry is None or entry[1].date != day or entry[1].version < version:
                # Read at some moment before now: like an offered one, it never satisfies
                # a resync (`since`).
                self._latest[key] = (0.0, encoded)
            return encoded

    def get(
        self, key: tuple, load: Callable[[], dict], min_version: int | None = None, since: float | None = None
    ) -> Encoded:
        with self._key_lock(key):
            entry = self._latest.get(key)
            if entry is not None:
                started, encoded = entry
                if min_version is not None and encoded.version >= min_version:
                    return encoded
                if since is not None and started >= since:
                    return encoded
            started = time.monotonic()
            encoded = encode(load())
            self._latest[key] = (started, encoded)
            return encoded
