"""A Redis that a test can cut off and bring back with its data intact.

`RedisLink` relays TCP to a private redis-server. While cut, it resets every relayed
connection and every new one, so a command sent meanwhile is lost (as over a broken
network: a paused Redis would still run it from its socket buffer when resumed), and
Redis keeps what it held, stale entries included. `cache_at(app, url)` points the
app's cache at that relay for the length of a test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from contextlib import contextmanager

import pytest
import redis
from cachelib.redis import RedisCache

from tests.realtime.conftest import PrivateRedis


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class RedisLink:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        self._up = True
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    _reset(client)
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                if not self._up:
                    break
                dst.sendall(chunk)
        except OSError:
            pass
        _reset(src)
        _reset(dst)

    def cut(self) -> None:
        with self._lock:
            self._up = False
            for sock in self._open:
                _reset(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def redis_link():
    """A private redis-server behind a RedisLink; yields (link, direct client)."""
    server = PrivateRedis()
    try:
        server.start()
    except (FileNotFoundError, RuntimeError):
        pytest.skip("redis-server is not available")
    link = RedisLink(server.port)
    direct = redis.Redis.from_url(server.url)
    try:
        yield link, direct
    finally:
        direct.close()
        link.close()
        server.stop()


@contextmanager
def cache_at(app, url: str):
    """The app's cache is the Redis at `url` (timeouts as in production) meanwhile."""
    from hms.core.cache import UNDELIVERED_KEY
    from hms.extensions import cache

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    backends = app.extensions["cache"]
    before = backends[cache]
    backends[cache] = RedisCache(client, key_prefix="hms:", default_timeout=300)
    try:
        yield
    finally:
        backends[cache] = before
        app.extensions.pop(UNDELIVERED_KEY, None)  # its retrier stops
        client.close()
