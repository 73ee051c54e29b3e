"""The connection pool's queue: first come, first served, and nothing lost."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.util import queue as sqla_queue

from hms.core.dbpool import FairQueue, FairQueuePool


def test_items_come_back_in_order_and_the_queue_has_a_size():
    queue = FairQueue(2)
    assert queue.empty() and queue.qsize() == 0
    queue.put("a", False)
    queue.put("b", False)
    assert queue.full()
    with pytest.raises(sqla_queue.Full):
        queue.put("c", False)
    assert queue.get(False) == "a" and queue.get_nowait() == "b"
    with pytest.raises(sqla_queue.Empty):
        queue.get(False)


def test_lifo_hands_out_the_most_recent():
    queue = FairQueue(3, use_lifo=True)
    for item in "abc":
        queue.put(item, False)
    assert [queue.get(False) for _ in range(3)] == ["c", "b", "a"]


def test_a_wait_times_out_and_leaves_no_waiter_behind():
    queue = FairQueue(1)
    started = time.monotonic()
    with pytest.raises(sqla_queue.Empty):
        queue.get(True, 0.1)
    assert time.monotonic() - started >= 0.09
    queue.put("a", False)  # nobody waits any more: it is queued, not handed to a ghost
    assert queue.qsize() == 1 and queue.get(False) == "a"


def test_a_returned_item_goes_to_the_oldest_waiter_not_to_a_newcomer():
    queue = FairQueue(1)
    got: list[tuple[str, str]] = []

    def waiter(name: str) -> None:
        got.append((name, queue.get(True, 5)))

    first = threading.Thread(target=waiter, args=("first",))
    first.start()
    time.sleep(0.1)
    second = threading.Thread(target=waiter, args=("second",))
    second.start()
    time.sleep(0.1)
    queue.put("x", False)
    with pytest.raises(sqla_queue.Empty):
        queue.get(False)  # a newcomer finds nothing: the item went to a waiter
    first.join(5)
    queue.put("y", False)
    second.join(5)
    assert got == [("first", "x"), ("second", "y")]


def test_a_waiter_killed_after_the_hand_over_passes_the_item_on():
    from hms.core import dbpool

    queue = FairQueue(1)
    waiter = dbpool._Waiter()
    queue._waiters.append(waiter)
    queue.put("x", False)  # handed to the waiter...
    queue._abandon(waiter)  # ...which dies before taking it: back in the queue
    assert queue.get(False) == "x"


def test_a_wait_killed_before_any_hand_over_leaves_nothing_behind(monkeypatch):
    class Killed(BaseException):
        pass

    def killed(self, timeout=None):
        raise Killed

    queue = FairQueue(1)
    monkeypatch.setattr(threading.Event, "wait", killed)
    with pytest.raises(Killed):
        queue.get(True, 1)
    assert not queue._waiters


def test_the_pool_hands_connections_in_order_under_contention():
    """A pool of one: three threads queue for it; each gets it in turn, and a pool
    timeout still raises SQLAlchemy's TimeoutError."""
    import sqlite3

    from sqlalchemy import exc

    pool = FairQueuePool(lambda: sqlite3.connect(":memory:", check_same_thread=False), pool_size=1,
                         max_overflow=0, timeout=2)  # fmt: skip
    held = pool.connect()
    order: list[int] = []

    def user(number: int) -> None:
        connection = pool.connect()
        order.append(number)
        time.sleep(0.05)
        connection.close()

    threads = []
    for number in range(3):
        thread = threading.Thread(target=user, args=(number,))
        thread.start()
        threads.append(thread)
        time.sleep(0.05)
    held.close()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2]
    held = pool.connect()
    quick = FairQueuePool(lambda: sqlite3.connect(":memory:", check_same_thread=False), pool_size=1,
                          max_overflow=0, timeout=0.1)  # fmt: skip
    busy = quick.connect()
    with pytest.raises(exc.TimeoutError):
        quick.connect()
    busy.close()
    held.close()
