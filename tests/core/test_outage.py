"""A dependency going down is logged once, and its return once, with a count of what
failed meanwhile: unit tests of hms.core.outage, then a real outage of a private Redis
under the cache, the broker and the stream limits."""

from __future__ import annotations

import logging

import pytest

from hms.core.outage import Dependency
from tests.realtime.conftest import _no_stale_leases, private_redis

__all__ = ["_no_stale_leases", "private_redis"]


def outage_lines(caplog, name: str) -> tuple[list[str], list[str]]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(name + " ")]
    return [line for line in lines if " down: " in line], [line for line in lines if " back after " in line]


def test_down_once_back_once_with_the_count(caplog):
    dep = Dependency("Thing")
    caplog.set_level(logging.INFO)
    dep.ok()  # up: nothing to say
    for _ in range(50):
        dep.failed("read", ConnectionError("refused"))
    dep.ok()
    dep.ok()
    down, back = outage_lines(caplog, "Thing")
    assert len(down) == 1 and "ConnectionError: refused" in down[0]
    assert len(back) == 1 and "50 operations failed meanwhile" in back[0]
    assert all(record.exc_info is None for record in caplog.records)
    dep.failed("read")  # a second outage: its own pair of lines and its own count
    dep.ok()
    down, back = outage_lines(caplog, "Thing")
    assert len(down) == 2 and "1 operations failed" in back[1]


def test_lines_carry_method_route_account_and_request_id(app, caplog):
    from flask import g

    dep = Dependency("Thing")
    caplog.set_level(logging.INFO)
    with app.test_request_context("/api/patients/7", headers={"X-Request-ID": "req-42"}):
        app.url_map.bind("localhost").match("/api/patients/7")
        g.identity = type("Identity", (), {"id": 3})()
        dep.failed("read")
    down, _ = outage_lines(caplog, "Thing")
    assert "GET " in down[0] and "account=3" in down[0] and "request=req-42" in down[0]
    dep.ok()  # outside a request: no context, no error
    assert outage_lines(caplog, "Thing")[1][0].endswith("meanwhile")


def test_a_forged_request_id_is_replaced(app, caplog):
    dep = Dependency("Thing")
    caplog.set_level(logging.INFO)
    with app.test_request_context("/x", headers={"X-Request-ID": "evil line<script>"}):
        dep.failed("read")
    line = outage_lines(caplog, "Thing")[0][0]
    assert "evil" not in line and "request=" in line and "account=-" in line


@pytest.fixture
def app_on_private_redis(app, private_redis, monkeypatch):
    """The test app with its cache, broker and stream limits on the private Redis (a second
    app would rebind the process-wide rate limiter's storage)."""
    from flask_caching.backends.rediscache import RedisCache

    from config import fail_fast
    from hms.extensions import cache
    from hms.realtime.broker import EXTENSION_KEY as BROKER_KEY
    from hms.realtime.broker import RedisBroker
    from hms.realtime.limiter import EXTENSION_KEY as SLOTS_KEY
    from hms.realtime.limiter import RedisSlots

    backend = RedisCache(
        port=private_redis.port,
        key_prefix="hms:",
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=fail_fast(),
    )
    monkeypatch.setitem(app.extensions["cache"], cache, backend)
    monkeypatch.setitem(app.extensions, BROKER_KEY, RedisBroker(private_redis.url))
    monkeypatch.setitem(app.extensions, SLOTS_KEY, RedisSlots(private_redis.url))
    return app


def test_a_redis_outage_logs_each_component_once_down_and_once_back(
    app_on_private_redis, private_redis, make_user, caplog
):
    from tests.conftest import token_for

    other = app_on_private_redis
    token = token_for(other, make_user("admin"))
    client = other.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/categories", headers=headers).status_code == 200
    caplog.set_level(logging.INFO)
    private_redis.stop()
    for n in range(40):  # identity and list reads, each missing the cache
        assert client.get(f"/api/categories?page={n + 1}", headers=headers).status_code == 200
    from hms.realtime.broker import QueueBroker
    from hms.realtime.limiter import StreamSlots

    broker, slots = QueueBroker.get(other), StreamSlots.get(other)
    for _ in range(20):
        broker.publish(1, "2026-01-01", 1)
        slots.release(slots.claim(((1, 5),), 30))
    private_redis.start()
    assert client.get("/api/categories", headers=headers).status_code == 200
    broker.publish(1, "2026-01-01", 2)
    slots.release(slots.claim(((1, 5),), 30))

    for name in ("Redis cache", "Redis publish", "Redis stream limits"):
        down, back = outage_lines(caplog, name)
        assert len(down) == 1, (name, down)
        assert len(back) == 1, (name, back)
    cache_down, cache_back = outage_lines(caplog, "Redis cache")
    assert "GET /api/categories" in cache_down[0] and "request=" in cache_down[0]
    assert int(cache_back[0].split(" operations failed")[0].rsplit(" ", 1)[1]) >= 40
    assert "20 operations failed" in outage_lines(caplog, "Redis publish")[1][0]
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("hms")]
    assert tracebacks == []
    # not one per failure (the one line per request of hms.request aside)
    assert sum(1 for r in caplog.records if r.name.startswith("hms") and r.name != "hms.request") < 20


def test_redis_clients_fail_fast_while_redis_is_down(monkeypatch):
    """redis-py 7 retries 3 times with a growing backoff: 8.7 s per operation on a stopped
    Redis, for every cache read of every request. HMS's clients fail at once."""
    import time

    import redis

    from config import TestingConfig
    from hms.realtime.broker import RedisBroker
    from hms.realtime.limiter import RedisSlots
    from tests.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setenv("TEST_REDIS_URL", url)
    config = TestingConfig()
    clients = {
        "cache": redis.from_url(url, **config.CACHE_OPTIONS),
        "rate limits": redis.from_url(url, **config.RATELIMIT_STORAGE_OPTIONS),
        "broker": RedisBroker(url)._client(),
        "limits": RedisSlots(url)._redis(),
    }
    for name, client in clients.items():
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            client.get("x")
        assert time.monotonic() - started < 0.5, name


def test_an_unexpected_error_keeps_its_traceback_and_names_its_request(app, admin, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    import importlib

    monkeypatch.setattr(importlib.import_module("hms.reference.service"), "list_items", broken)
    caplog.set_level(logging.INFO)
    res = admin.get("/api/categories", headers={"X-Request-ID": "req-7"})
    assert res.status_code == 500
    [record] = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert record.exc_info is not None
    assert (
        record.getMessage() == f"unhandled error [GET /api/categories account={admin.user.id} request=req-7]"
    )
