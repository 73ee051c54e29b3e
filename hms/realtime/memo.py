"""Encoded events, and the per-worker memo that builds each one once per change.

An event is the wire format's event block (`id: <version>`, `event: <name>`, the data as
one line), kept as bytes: every stream of a topic and variant writes the same bytes
object, so nothing is encoded per stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from hms.core.lru import BoundedCache


def sse_event(event_id: int, name: str, data: bytes) -> bytes:
    """`id: <event_id>`, `event: <name>`, `data: <data>` (one line: no newline in it). A
    stream sends `retry_line` once before its first event."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), data)


@lru_cache(maxsize=16)
def retry_line(retry_ms: int) -> bytes:
    """The `retry:` field a stream opens with, one bytes object per value per process."""
    return f"retry: {retry_ms}\n".encode()


class Encoded(NamedTuple):
    """What a stream needs of a state: its version and day to compare, and its event."""

    version: int
    date: str
    event: bytes


class _Slot:
    """One key's build lock and its latest event: (started, encoded), where started is
    the monotonic time its build began (0.0 for one offered or shared)."""

    __slots__ = ("lock", "latest")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest: tuple[float, Encoded] | None = None


class SnapshotMemo:
    """One build per change per worker process, keyed by (topic, day, variant).

    All the streams of a topic wake together on a change. The event usually comes
    ready-made with the change's message (`offer`, see broker.py): then nobody builds.
    Otherwise the first stream builds it (its loader: the publisher's package reads the
    shared cache, else the database), and the others reuse it when its version is at
    least the one they were told about, or when it was started after the resync they
    were asked for. Only the version, the day and the encoded bytes are kept."""

    MAX_KEYS = 2000  # (topic, day, variant) kept per worker; the least recently used go first

    def __init__(self) -> None:
        # key -> its slot: a lock (one build at a time per key) and the latest event.
        self._slots: BoundedCache[tuple, _Slot] = BoundedCache(self.MAX_KEYS)

    def _slot(self, key: tuple) -> _Slot:
        return self._slots.get_or_make(key, _Slot)

    def offer(self, key: tuple, encoded: Encoded) -> bool:
        """Keep a snapshot built elsewhere (the publisher's) if it is newer than ours.

        Its build time is unknown here, so it never satisfies a resync (`since`)."""
        slot = self._slot(key)
        with slot.lock:
            entry = slot.latest
            if entry is not None and (entry[1].version >= encoded.version and entry[1].date == encoded.date):
                return False
            slot.latest = (0.0, encoded)
            return True

    def share(self, key: tuple, encoded: Encoded) -> Encoded:
        """The event of a state just read for a new stream: the memo's own object when it
        holds that very version (every stream of a topic that opens between two changes
        writes the same bytes), else `encoded`, kept if newer.

        Sharing matters for memory, not only for speed: the server's write loop keeps
        the last chunk it wrote referenced while the stream waits, so a first event
        encoded per stream would stay alive in every idle stream until its next write."""
        slot = self._slot(key)
        with slot.lock:
            entry = slot.latest
            if entry is not None and entry[1].version == encoded.version and entry[1].date == encoded.date:
                return entry[1]
            if entry is None or entry[1].date != encoded.date or entry[1].version < encoded.version:
                # Read at some moment before now: like an offered one, it never satisfies
                # a resync (`since`).
                slot.latest = (0.0, encoded)
            return encoded

    def get(
        self,
        key: tuple,
        load: Callable[[], Encoded],
        min_version: int | None = None,
        since: float | None = None,
    ) -> Encoded:
        slot = self._slot(key)
        with slot.lock:
            entry = slot.latest
            if entry is not None:
                started, encoded = entry
                if min_version is not None and encoded.version >= min_version:
                    return encoded
                if since is not None and started >= since:
                    return encoded
            started = time.monotonic()
            encoded = load()
            slot.latest = (started, encoded)
            return encoded
