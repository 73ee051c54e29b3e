"""The per-worker memo of encoded events is bounded: the least recently used key goes first."""

from __future__ import annotations

from hms.realtime.memo import Encoded, SnapshotMemo


def test_the_memo_keeps_at_most_max_keys_and_drops_the_least_recently_used(monkeypatch):
    monkeypatch.setattr(SnapshotMemo, "MAX_KEYS", 3)
    memo = SnapshotMemo()
    builds = []

    def load(key):
        def make():
            builds.append(key)
            return Encoded(1, "2026-12-03", f"{key}".encode())

        return make

    for key in ("a", "b", "c"):
        memo.get((key,), load(key))
    memo.get(("a",), load("a"), min_version=1)  # a is used again: b is now the oldest
    memo.get(("d",), load("d"))  # over the bound: b goes, a and c stay
    assert builds == ["a", "b", "c", "d"]
    memo.get(("a",), load("a"), min_version=1)
    memo.get(("c",), load("c"), min_version=1)
    assert builds == ["a", "b", "c", "d"]  # still held: no new build
    memo.get(("b",), load("b"), min_version=1)
    assert builds == ["a", "b", "c", "d", "b"]  # dropped, so built again
    assert len(memo._slots) == 3
