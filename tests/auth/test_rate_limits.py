"""API rate limits (hms/auth/ratelimit.py): per account on authenticated calls, per client
address on the others; a moving window in the limiter's storage (memory or Redis)."""

from __future__ import annotations

import logging
import re

import limits.storage.memory
import limits.storage.redis
import pytest
import requests

from hms.auth import ratelimit
from tests.conftest import requires_postgres, run_server, token_for
from tests.queue.stream_helpers import StreamReader, booking, make_patient

REFUSED = re.compile(r"Too many requests from this (account|address): try again in (1 second|\d+ seconds)\.")


class FakeClock:
    """time.time() and time.monotonic() for the limits' storages and hms.auth.ratelimit."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    # 20 s before the top of a minute: a fixed window would start afresh at 1_000_020.
    fake = FakeClock(1_000_000.0)
    for module in (limits.storage.memory, limits.storage.redis, ratelimit):
        monkeypatch.setattr(module, "time", fake)
    return fake


def assert_refused(res, who: str, longest: int = 60) -> int:
    assert res.status_code == 429, res.get_data(as_text=True)
    retry_after = int(res.headers["Retry-After"])
    assert 1 <= retry_after <= longest
    body = res.get_json()
    assert (
        body["code"] == 429
        and body["status"] == "Too Many Requests"
        and set(body)
        == {
            "code",
            "status",
            "message",
        }
    )
    match = REFUSED.fullmatch(body["message"])
    assert match and match.group(1) == who, body["message"]
    return retry_after


def test_the_account_limit_refuses_the_call_over_it_and_no_other_account(app, as_role, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ACCOUNT", "3 per minute")
    reception, other = as_role("reception"), as_role("cashier")
    for _ in range(3):
        assert reception.get("/api/auth/me").status_code == 200
    assert_refused(reception.get("/api/auth/me"), "account")
    # Every route counts, whatever its answer would have been.
    assert_refused(reception.get("/api/patients"), "account")
    assert_refused(reception.post("/api/staff", json={}), "account")  # not even the 403
    assert other.get("/api/auth/me").status_code == 200
    # The account's limit follows the account, not the client address.
    assert_refused(reception.get("/api/auth/me", environ_base={"REMOTE_ADDR": "10.9.9.9"}), "account")


def test_the_window_moves_no_fresh_allowance_at_the_top_of_the_minute(app, as_role, monkeypatch, clock):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ACCOUNT", "3 per minute")
    reception = as_role("reception")
    for at in (1_000_000.0, 1_000_001.0, 1_000_019.0):
        clock.now = at
        assert reception.get("/api/auth/me").status_code == 200
    clock.now = 1_000_021.0  # a new clock minute: a fixed window would let this through
    assert (
        assert_refused(reception.get("/api/auth/me"), "account") == 39
    )  # the first call leaves at 1_000_060
    clock.now = 1_000_060.5  # the first call has left the window: one slot
    assert reception.get("/api/auth/me").status_code == 200
    assert assert_refused(reception.get("/api/auth/me"), "account") == 1  # the second leaves at 1_000_061
    clock.now = 1_000_200.0
    for _ in range(3):
        assert reception.get("/api/auth/me").status_code == 200


def test_calls_without_credentials_are_limited_per_client_address(app, client, as_role, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ADDRESS", "3 per minute")
    here = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(2):
        assert client.get("/api/tickets/not-a-ticket", environ_base=here).status_code == 404
    assert client.get("/api/auth/me", environ_base=here).status_code == 401  # no token: counts too
    assert_refused(client.get("/api/tickets/not-a-ticket", environ_base=here), "address")
    assert_refused(client.get("/api/auth/me", environ_base=here), "address")
    bad_token = {"Authorization": "Bearer forged"}
    assert_refused(client.get("/api/auth/me", headers=bad_token, environ_base=here), "address")
    assert_refused(
        client.post("/api/auth/token", json={"username": "x", "password": "y"}, environ_base=here), "address"
    )
    # Another address has its own count; an account is not counted by its address.
    assert (
        client.get("/api/tickets/not-a-ticket", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 404
    )
    reception = as_role("reception")
    for _ in range(5):
        assert reception.get("/api/auth/me", environ_base=here).status_code == 200
    # The probes and the static files are never counted.
    for path in ("/healthz", "/readyz", "/static/hms.css"):
        assert client.get(path, environ_base=here).status_code == 200, path


def test_a_page_over_the_limit_gets_a_page_in_words(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ADDRESS", "2 per minute")
    here = {"REMOTE_ADDR": "10.0.0.7"}
    assert client.get("/login", environ_base=here).status_code == 200
    assert client.get("/reception", environ_base=here).status_code == 302  # to the login page
    res = client.get("/login", environ_base=here)
    assert res.status_code == 429 and res.mimetype == "text/html"
    assert 1 <= int(res.headers["Retry-After"]) <= 60
    assert REFUSED.search(res.get_data(as_text=True))


def test_zero_turns_each_limit_off(app, client, as_role, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ACCOUNT", "0")
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ADDRESS", "0")
    reception = as_role("reception")
    for _ in range(30):
        assert reception.get("/api/auth/me").status_code == 200
        assert client.get("/api/auth/me").status_code == 401


def test_a_stream_counts_once_when_it_is_opened(app, as_role, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ACCOUNT", "4 per minute")
    doctor_user = make_user("doctor")
    doctor = as_role("doctor", user=doctor_user)
    reception = as_role("reception")
    res = doctor.get(f"/api/queue/{doctor_user.id}/stream", buffered=False)
    assert res.status_code == 200
    reader = StreamReader(res, iter(res.response), in_process=True)
    try:
        reader.next_event()
        for _ in range(2):
            assert (
                reception.post(
                    "/api/appointments", json=booking(make_patient(app), doctor_user.id)
                ).status_code
                == 201
            )
            reader.next_event(timeout=3)
        assert reader.next(3).is_ping  # events and heartbeats went out: none of them counted
    finally:
        reader.close()
    for _ in range(3):  # the stream took one of the doctor's four
        assert doctor.get("/api/auth/me").status_code == 200
    assert_refused(doctor.get("/api/auth/me"), "account")


def test_while_the_storage_is_down_calls_pass_and_the_outage_is_logged_once(
    app, as_role, monkeypatch, caplog
):
    monkeypatch.setitem(app.config, "RATE_LIMIT_PER_ACCOUNT", "1 per minute")
    reception = as_role("reception")
    from hms.extensions import limiter

    broken = limiter.storage.base_exceptions
    failure = broken[0] if isinstance(broken, tuple) else broken

    class Down:
        def hit(self, *args, **kwargs):
            raise failure("storage unreachable")

    monkeypatch.setattr(ratelimit.api_limits, "_strategy", lambda: Down())
    monkeypatch.setattr(ratelimit.api_limits, "_storage", limiter.storage)
    with caplog.at_level(logging.WARNING, logger="hms.outage"):
        for _ in range(3):
            assert reception.get("/api/auth/me").status_code == 200
    downs = [r for r in caplog.records if r.getMessage().startswith("Redis API rate limits down")]
    assert len(downs) == 1


def test_a_limit_the_syntax_cannot_read_stops_the_start(monkeypatch):
    from config import TestingConfig
    from hms import create_app

    settings = TestingConfig()
    settings.RATE_LIMIT_PER_ACCOUNT = "lots"
    with pytest.raises(RuntimeError, match="RATE_LIMIT_PER_ACCOUNT='lots'"):
        create_app(settings)


def test_the_hourly_sign_in_limit_says_an_hour(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_USERNAME", "2 per hour")
    user = make_user("reception", password="right-pass")
    for address in ("10.0.0.1", "10.0.0.2"):
        res = client.post(
            "/api/auth/token",
            json={"username": user.username, "password": "wrong"},
            environ_base={"REMOTE_ADDR": address},
        )
        assert res.status_code == 401
    res = client.post(
        "/api/auth/token",
        json={"username": user.username, "password": "right-pass"},
        environ_base={"REMOTE_ADDR": "10.0.0.3"},
    )
    assert res.status_code == 429
    assert res.get_json()["message"] == "Too many sign-in attempts: try again in an hour"
    assert 60 < int(res.headers["Retry-After"]) <= 3600


@requires_postgres
def test_live_the_account_limit_is_shared_by_every_worker_and_instance(app, database_url, make_user):
    """Two gunicorn instances of two workers each, one Redis: one count per account."""
    user = make_user("reception")
    headers = {"Authorization": f"Bearer {token_for(app, user)}"}
    env = {"RATE_LIMIT_PER_ACCOUNT": "6 per minute", "RATE_LIMIT_PER_ADDRESS": "0"}
    with (
        run_server(database_url, workers=2, extra_env=env) as first,
        run_server(database_url, workers=2, extra_env=env) as second,
    ):
        statuses = []
        for base in (first, second, first, second, first, second, first, second):
            # A new connection each time: the calls spread over both workers of each instance.
            with requests.Session() as session:
                statuses.append(session.get(base + "/api/auth/me", headers=headers, timeout=10).status_code)
        assert statuses == [200] * 6 + [429, 429]
        refused = requests.get(second + "/api/auth/me", headers=headers, timeout=10)
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert REFUSED.fullmatch(refused.json()["message"])
