"""Sign-in limits: one atomic count for the API and the form, lock-out resistance,
trusted proxies, equal-cost failures, and sign-in that survives a Redis outage."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import csrf_token, requires_postgres, run_server, uses_postgres

TOO_MANY = "Too many sign-in attempts: try again in a minute"


def api_login(client, username, password, address="10.0.0.1", **kw):
    return client.post(
        "/api/auth/token",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
        **kw,
    )


def form_login(client, username, password, address="10.0.0.1", **kw):
    """The /login form as a browser posts it: with the form's CSRF token."""
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
        **kw,
    )


def test_the_429_says_in_words_when_to_try_again(app, client, make_user):
    user = make_user("reception", password="right-pass")
    for _ in range(5):
        assert api_login(client, user.username, "wrong").status_code == 401
    res = api_login(client, user.username, "right-pass")
    assert res.status_code == 429
    assert 0 < int(res.headers["Retry-After"]) <= 60
    body = res.get_json()
    assert body == {"code": 429, "status": "Too Many Requests", "message": TOO_MANY}
    page = form_login(client, user.username, "right-pass")
    assert page.status_code == 429
    assert 0 < int(page.headers["Retry-After"]) <= 60
    assert TOO_MANY in page.get_data(as_text=True)
    assert "<form" in page.get_data(as_text=True)


def test_the_form_and_the_api_share_one_limit(app, client, make_user):
    user = make_user("reception", password="right-pass")
    for _ in range(3):
        assert api_login(client, user.username, "wrong").status_code == 401
    for _ in range(2):
        assert form_login(client, user.username, "wrong").status_code == 401
    # Five failures through either door: the right password is refused at both.
    assert form_login(client, user.username, "right-pass").status_code == 429
    assert api_login(client, user.username, "right-pass").status_code == 429

    other = make_user("reception", password="other-pass")
    for _ in range(5):
        assert form_login(client, other.username, "wrong").status_code == 401
    assert api_login(client, other.username, "other-pass").status_code == 429


def test_a_successful_sign_in_uses_up_no_attempt(app, client, make_user):
    user = make_user("reception", password="right-pass")
    for _ in range(8):
        assert api_login(client, user.username, "right-pass").status_code == 200
    for _ in range(5):
        assert api_login(client, user.username, "wrong").status_code == 401
    assert api_login(client, user.username, "wrong").status_code == 429


def test_successful_sign_ins_are_limited_per_client_too(app, client, make_user, monkeypatch):
    """Each sign-in costs a password check: a client signing in in a loop is refused, in
    words, after LOGIN_SUCCESS_LIMIT_PER_CLIENT; another client is not."""
    monkeypatch.setitem(app.config, "LOGIN_SUCCESS_LIMIT_PER_CLIENT", "6 per minute")
    users = [make_user("reception", password="right-pass") for _ in range(2)]
    for n in range(6):
        assert api_login(client, users[n % 2].username, "right-pass").status_code == 200
    res = api_login(client, users[0].username, "right-pass")
    assert res.status_code == 429
    assert res.get_json()["message"] == TOO_MANY == "Too many sign-in attempts: try again in a minute"
    assert 0 < int(res.headers["Retry-After"]) <= 60
    page = form_login(client, users[1].username, "right-pass")
    assert page.status_code == 429 and TOO_MANY in page.get_data(as_text=True)
    assert api_login(client, users[0].username, "right-pass", address="10.0.0.2").status_code == 200


def test_failures_do_not_use_up_the_success_limit(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_SUCCESS_LIMIT_PER_CLIENT", "2 per minute")
    user = make_user("reception", password="right-pass")
    for _ in range(4):
        assert api_login(client, user.username, "wrong").status_code == 401
    for _ in range(2):
        assert api_login(client, user.username, "right-pass").status_code == 200
    assert api_login(client, user.username, "right-pass").status_code == 429


def _parallel_wrong_attempts(attempt, count: int = 40) -> list[int]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: attempt(), range(count)))


def test_parallel_wrong_attempts_check_at_most_the_limit(app, make_user, monkeypatch):
    """The count is taken before the password is checked, so a burst cannot race past it."""
    from hms.auth import service

    user = make_user("reception", password="right-pass")
    checked = []
    real_check = service.check_password_hash

    def slow_check(pwhash, password):
        checked.append(1)
        time.sleep(0.05)  # widen the window a racing count would slip through
        return real_check(pwhash, password)

    monkeypatch.setattr(service, "check_password_hash", slow_check)

    def attempt():
        return api_login(app.test_client(), user.username, "wrong").status_code

    statuses = _parallel_wrong_attempts(attempt)
    assert statuses.count(401) <= 5
    assert len(checked) <= 5
    assert set(statuses) == {401, 429}


@requires_postgres
def test_parallel_wrong_attempts_on_a_live_server_check_at_most_the_limit(app, database_url, make_user):
    user = make_user("reception", password="right-pass")
    with run_server(database_url, workers=2) as base:

        def attempt():
            body = {"username": user.username, "password": "wrong"}
            return requests.post(base + "/api/auth/token", json=body, timeout=30).status_code

        statuses = _parallel_wrong_attempts(attempt)
        assert statuses.count(401) <= 5, statuses
        assert set(statuses) == {401, 429}


def test_a_strangers_burst_does_not_lock_the_user_out(app, client, make_user):
    user = make_user("reception", password="right-pass")
    for _ in range(20):
        assert api_login(client, user.username, "wrong", address="203.0.113.9").status_code in (401, 429)
    assert api_login(client, user.username, "wrong", address="203.0.113.9").status_code == 429
    assert api_login(client, user.username, "right-pass", address="10.0.0.7").status_code == 200
    assert form_login(client, user.username, "right-pass", address="10.0.0.8").status_code == 302


def test_guessing_from_many_addresses_is_bounded_per_username(app, client, make_user):
    user = make_user("reception", password="right-pass")
    ceiling = app.config["LOGIN_LIMIT_PER_USERNAME"]
    app.config["LOGIN_LIMIT_PER_USERNAME"] = "12 per hour"
    try:
        statuses = [
            api_login(client, user.username, "wrong", address=f"198.51.100.{i}").status_code
            for i in range(20)
        ]
        assert statuses.count(401) == 12
        assert api_login(client, user.username, "right-pass", address="10.0.0.7").status_code == 429
    finally:
        app.config["LOGIN_LIMIT_PER_USERNAME"] = ceiling


@pytest.fixture
def behind_proxies(app):
    """Apply create_app's trusted-proxy wrapping to the test app for one test."""
    from hms import trust_proxies

    original = app.wsgi_app

    def use(count: int) -> None:
        app.wsgi_app = original
        app.config["TRUSTED_PROXY_COUNT"] = count
        trust_proxies(app)

    yield use
    app.wsgi_app = original
    app.config["TRUSTED_PROXY_COUNT"] = 0


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(app, client, make_user, behind_proxies):
    behind_proxies(1)
    user = make_user("reception", password="right-pass")
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(20):
        api_login(client, user.username, "wrong", address="127.0.0.1", headers=attacker)
    assert api_login(client, "ghost", "wrong", address="127.0.0.1", headers=attacker).status_code == 429
    victim = {"X-Forwarded-For": "10.0.0.7"}
    assert (
        api_login(client, user.username, "right-pass", address="127.0.0.1", headers=victim).status_code == 200
    )


def test_without_trusted_proxies_x_forwarded_for_cannot_be_spoofed(app, client, make_user, behind_proxies):
    behind_proxies(0)
    user = make_user("reception", password="right-pass")
    for i in range(5):
        headers = {"X-Forwarded-For": f"198.51.100.{i}"}
        assert api_login(client, user.username, "wrong", headers=headers).status_code == 401
    headers = {"X-Forwarded-For": "198.51.100.99"}
    assert api_login(client, user.username, "right-pass", headers=headers).status_code == 429


def test_an_unknown_user_costs_as_much_as_a_wrong_password(app, make_user):
    """Both failures run one password check of the configured cost: timing names no account."""
    from hms.auth import service
    from hms.errors import Unauthorized

    cheap = app.config["PASSWORD_HASH_METHOD"]
    # Costlier than the suite's cheap method, so a dummy of another cost would show.
    app.config["PASSWORD_HASH_METHOD"] = "scrypt:16384:8:1"
    try:
        user = make_user("reception", password="right-pass")

        def seconds(username: str) -> float:
            start = time.perf_counter()
            with app.app_context(), pytest.raises(Unauthorized):
                service.authenticate(username, "wrong")
            return time.perf_counter() - start

        seconds("warm-up")
        unknown = statistics.median(seconds("no-such-user") for _ in range(5))
        known = statistics.median(seconds(user.username) for _ in range(5))
        assert 0.5 < unknown / known < 2, (unknown, known)
    finally:
        app.config["PASSWORD_HASH_METHOD"] = cheap


@pytest.fixture
def own_redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from tests.realtime.conftest import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_sign_in_works_while_redis_is_down(app, database_url, make_user, own_redis):
    """Redis down: sign-in is limited per worker in memory, logged once, and back once."""
    from hms.auth.throttle import RETRY_STORAGE_SECONDS

    if not uses_postgres() and not database_url.startswith("sqlite:///"):
        pytest.skip("the live server needs a database file or PostgreSQL")
    user = make_user("reception", password="right-pass")
    env = {"REDIS_URL": own_redis.url, "SESSION_COOKIE_SECURE": "0"}  # plain HTTP here
    with run_server(database_url, workers=1, extra_env=env) as base:

        def sign_in(password: str, path: str = "/api/auth/token") -> int:
            if path == "/login":  # a browser: the form (with its session and CSRF token), then the post
                browser = requests.Session()
                page = browser.get(base + path, timeout=30).text
                token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
                data = {"username": user.username, "password": password, "csrf_token": token}
                return browser.post(base + path, data=data, timeout=30, allow_redirects=False).status_code
            body = {"username": user.username, "password": password}
            return requests.post(base + path, json=body, timeout=30, allow_redirects=False).status_code

        assert sign_in("right-pass") == 200
        own_redis.stop()
        for _ in range(2):
            assert sign_in("right-pass") == 200
            assert sign_in("wrong") == 401
            assert sign_in("right-pass", "/login") == 302
            assert sign_in("wrong", "/login") == 401
        assert sign_in("wrong") == 401
        # Still limited, in this worker's memory: 5 failures through both doors.
        assert sign_in("right-pass") == 429
        assert sign_in("right-pass", "/login") == 429
        own_redis.start()
        time.sleep(RETRY_STORAGE_SECONDS + 0.5)
        assert sign_in("right-pass") == 200  # Redis is back: its count applies again
    port = base.rsplit(":", 1)[1]
    text = (Path(os.environ.get("TMPDIR", "/tmp")) / f"hms-live-{port}.log").read_text()
    assert text.count("sign-in limits: Redis unreachable") == 1, text
    assert text.count("sign-in limits: Redis is back") == 1, text
    assert "Traceback" not in text
