"""Fixtures of the realtime tests: the shared test Redis, and a private Redis server
that a test may stop and start again."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import redis

from hms.realtime.limiter import KEY_PREFIX, stop_all_renewers
from tests.conftest import free_port


def _drop_leases(url: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=KEY_PREFIX + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("needs Redis: set TEST_REDIS_URL")
    return url


@pytest.fixture(autouse=True)
def _no_stale_leases():
    """Stream leases outlive a test only by accident; never let one leak into the next."""
    url = os.environ.get("TEST_REDIS_URL")
    stop_all_renewers()  # an earlier test's renewer would re-add its leases
    if url:
        _drop_leases(url)
    yield
    stop_all_renewers()
    if url:
        _drop_leases(url)


class PrivateRedis:
    """A throw-away redis-server on a free port (no persistence): stop() and start()
    simulate an outage and a restart without touching the shared test Redis."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis():
    # Runs with the Redis suite only, like every other Redis-backed test.
    if not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs Redis: set TEST_REDIS_URL")
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
