"""CPU-heavy calls (password hashing) off the gevent event loop.

Under gunicorn's gevent worker every request and every open stream of a worker shares
one thread: a scrypt check (about 50-100 ms of CPU with the default cost) run there
stops them all for its duration, and 16 parallel sign-ins stalled a cached queue read
for up to 1.9 s. `off_loop` runs such a call in gevent's thread pool instead (hashlib's
scrypt releases the GIL while it works), and the greenlet waits without blocking the
others. Without monkey-patching (tests, a threaded server) it is a plain call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import gevent
from gevent import monkey

T = TypeVar("T")


def under_gevent() -> bool:
    """Whether this process's threading is gevent's (gunicorn's gevent worker patches it)."""
    return monkey.is_module_patched("threading")


def off_loop(function: Callable[..., T], *args) -> T:
    """`function(*args)`, in gevent's thread pool when running under gevent."""
    if under_gevent():
        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)
