"""hms.core.lru: the bounded map behind the per-process memos."""

from __future__ import annotations

import threading

import pytest

from hms.core.lru import BoundedCache


def test_it_never_holds_more_than_maxsize_and_evicts_the_least_recently_used():
    cache: BoundedCache[int, str] = BoundedCache(3)
    for key in range(3):
        cache.set(key, f"v{key}")
    assert cache.get(0) == "v0"  # 0 is now the most recent: 1 is the oldest
    cache.set(3, "v3")
    assert len(cache) == 3
    assert 1 not in cache
    assert [cache.get(key) for key in (0, 2, 3)] == ["v0", "v2", "v3"]
    for key in range(4, 1000):
        cache.set(key, f"v{key}")
        assert len(cache) <= 3
    assert [key for key in range(1000) if key in cache] == [997, 998, 999]


def test_a_full_cache_keeps_its_hot_entries():
    """Unlike the dicts wiped whole at their limit, a constantly read entry survives."""
    cache: BoundedCache[str, int] = BoundedCache(10)
    cache.set("hot", 1)
    for number in range(100):
        cache.set(f"cold{number}", number)
        assert cache.get("hot") == 1


def test_get_set_pop_clear():
    cache: BoundedCache[str, int | None] = BoundedCache(2)
    marker = object()
    assert cache.get("a") is None and cache.get("a", marker) is marker
    cache.set("a", None)  # None is a value like any other
    assert "a" in cache and cache.get("a", marker) is None
    cache.set("a", 2)
    assert cache.pop("a") == 2 and cache.pop("a", marker) is marker
    cache.set("b", 3)
    cache.clear()
    assert len(cache) == 0 and "b" not in cache


def test_a_size_below_one_is_refused():
    with pytest.raises(ValueError):
        BoundedCache(0)


def test_concurrent_writers_keep_the_bound():
    cache: BoundedCache[tuple[int, int], int] = BoundedCache(50)

    def write(worker: int) -> None:
        for number in range(2000):
            cache.set((worker, number), number)
            cache.get((worker, number - 1))
            if number % 7 == 0:
                cache.pop((worker, number - 3))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
