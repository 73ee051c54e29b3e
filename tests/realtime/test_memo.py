"""The wire format of one event, and the per-worker memo that builds each event once."""

from __future__ import annotations

import json
import time

from hms.realtime.memo import Encoded, SnapshotMemo, retry_line, sse_event

KEY = (1, "2026-11-28", "plain")


def test_format_is_retry_id_event_and_one_line_of_data():
    data = json.dumps({"version": 7, "who": "Ä.Ø."}, separators=(",", ":"), ensure_ascii=False).encode()
    text = (retry_line(2500) + sse_event(7, "queue", data)).decode()  # a stream's opening
    assert text.startswith("retry: 2500\nid: 7\nevent: queue\ndata: {")
    assert text.endswith("}\n\n") and text.count("\n") == 5
    assert json.loads(text.split("data: ", 1)[1]) == {"version": 7, "who": "Ä.Ø."}
    assert not sse_event(7, "queue", data).startswith(b"retry")
    assert sse_event(7, "queue", data).endswith(data + b"\n\n")  # the very bytes, not re-encoded


def test_the_retry_line_is_one_object_per_value():
    assert retry_line(3000) is retry_line(3000)
    assert retry_line(3000) == b"retry: 3000\n"


def encoded(version: int, day: str = "2026-11-28") -> Encoded:
    return Encoded(version, day, sse_event(version, "change", b"{}"))


def test_a_build_is_shared_while_its_version_is_enough():
    memo, loads = SnapshotMemo(), []

    def load(version):
        def build():
            loads.append(version)
            return encoded(version)

        return build

    first = memo.get(KEY, load(3), min_version=3)
    assert memo.get(KEY, load(99), min_version=3) is first  # told about 3: 3 will do
    assert memo.get(KEY, load(99), min_version=2) is first
    assert loads == [3]
    assert memo.get(KEY, load(4), min_version=4).version == 4  # told about 4: built again
    assert loads == [3, 4]
    assert memo.get((2, "2026-11-28", "plain"), load(1), min_version=1).version == 1  # its own key
    assert loads == [3, 4, 1]


def test_a_resync_takes_only_a_build_started_after_it_was_asked(monkeypatch):
    clock = [100.0]

    class Clock:  # the memo's own view of time only (not the process's time module)
        @staticmethod
        def monotonic() -> float:
            return clock[0]

    monkeypatch.setattr("hms.realtime.memo.time", Clock)
    memo = SnapshotMemo()
    built = memo.get(KEY, lambda: encoded(5))
    clock[0] = 101.0
    assert memo.get(KEY, lambda: encoded(6), since=100.5).version == 6  # started before: built anew
    assert memo.get(KEY, lambda: encoded(7), since=101.0).version == 6  # started at 101: shared
    assert built.version == 5


def test_share_hands_out_the_memos_object_for_the_same_version():
    memo = SnapshotMemo()
    kept = memo.share(KEY, encoded(3))
    same = memo.share(KEY, encoded(3))  # equal bytes read by another new stream
    assert same is kept
    newer = memo.share(KEY, encoded(4))
    assert memo.share(KEY, encoded(4)) is newer
    older = encoded(2)
    assert memo.share(KEY, older) is older  # handed back, not kept
    assert memo.get(KEY, lambda: encoded(99), min_version=4) is newer
    # A shared (or offered) one was read at an unknown moment: it never satisfies a resync.
    assert memo.get(KEY, lambda: encoded(5), since=time.monotonic()).version == 5


def test_an_offered_event_is_kept_only_if_newer():
    memo = SnapshotMemo()
    assert memo.offer(KEY, encoded(5))
    assert not memo.offer(KEY, encoded(4))
    assert not memo.offer(KEY, encoded(5))
    assert memo.get(KEY, lambda: encoded(99), min_version=5).version == 5
    assert memo.offer(KEY, encoded(1, "2026-11-29"))  # another day replaces it whatever its version
    assert memo.get(KEY, lambda: encoded(99), min_version=1).date == "2026-11-29"
