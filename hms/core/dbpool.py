"""The database connection pool: SQLAlchemy's QueuePool with a first-come, first-served
hand-off of connections to the requests waiting for one.

SQLAlchemy's own pool queue wakes a waiter with a Condition and lets any caller that
arrives meanwhile take the connection first. Under gunicorn's gevent worker the
Condition is the standard library's pure-Python one over gevent locks, and a woken
waiter runs two to three turns of the event loop later (measured: 2 extra turns, 82 ms
instead of 26, with 200 busy greenlets). In a saturated worker the newcomers therefore
take nearly every returned connection, and the first waiters wait out the whole
pool_timeout: in the 50,000-patient day of 2026-11-29 every step's slowest request took
10.0-10.2 s, the pool timeout, and 8 of 300,000 got its 503.

Here a returned connection goes straight to the oldest waiter, and a request only takes
a connection from the queue when nobody is waiting. Waiters wait on an Event (gevent's
compiled one under the gevent worker), which wakes in the same turn of the loop.
"""

from __future__ import annotations

import threading
from collections import deque
from time import perf_counter
from typing import Any

from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue

from hms.core.metrics import pool_changed, pool_waited

_NOTHING = object()


class _Waiter:
    __slots__ = ("ready", "item")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.item: Any = _NOTHING


class FairQueue(sqla_queue.QueueCommon):
    """The subset of SQLAlchemy's pool queue that QueuePool uses, handing items over in
    arrival order. Invariant: items wait in the queue only while nobody waits for one."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False):
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque = deque()
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # QueuePool never blocks on put: a connection with no room is closed (Full).
        with self._lock:
            if self._hand_over(item):
                return
            if self.full():
                raise sqla_queue.Full()
            self._items.append(item)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._lock:
            if self._items:
                return self._items.pop() if self.use_lifo else self._items.popleft()
            if not block:
                raise sqla_queue.Empty()
            waiter = _Waiter()
            self._waiters.append(waiter)
        started = perf_counter()
        try:
            waiter.ready.wait(timeout)
        except BaseException:  # killed while waiting (shutdown): pass on what it was given
            self._abandon(waiter)
            raise
        with self._lock:
            if waiter.item is _NOTHING:  # timed out before anything was handed over
                self._waiters.remove(waiter)
                pool_waited(perf_counter() - started, timed_out=True)  # QueuePool: a 503
                raise sqla_queue.Empty()
        pool_waited(perf_counter() - started, timed_out=False)
        return waiter.item

    def _abandon(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.item is _NOTHING:
                self._waiters.remove(waiter)
                return
            # A connection was handed over as the waiter died: to the next waiter, or
            # back to the queue even if full (QueuePool closes the one beyond its size
            # at a later return, as with any overflow connection).
            if not self._hand_over(waiter.item):
                self._items.append(waiter.item)

    def _hand_over(self, item: Any) -> bool:
        """Under the lock: give `item` to the oldest waiter; False if nobody waits."""
        if not self._waiters:
            return False
        waiter = self._waiters.popleft()
        waiter.item = item
        waiter.ready.set()
        return True


class FairQueuePool(QueuePool):
    """QueuePool whose waiters get returned connections in arrival order, and which
    reports its connections in use and its overflow to the metrics after each change."""

    _queue_class = FairQueue

    def _do_get(self):
        record = super()._do_get()
        pool_changed(self.checkedout(), self._overflow)
        return record

    def _do_return_conn(self, record) -> None:
        super()._do_return_conn(record)
        pool_changed(self.checkedout(), self._overflow)
