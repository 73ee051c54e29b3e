"""The session cookie of the pages: Secure in production, a bounded lifetime, a sign-out
that ends it on the server, and CSRF tokens on the /login and /logout forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from tests.conftest import csrf_token, form_login

COOKIE = "session"


def session_cookie(client) -> str:
    return client.get_cookie(COOKIE).value


def test_production_cookie_is_secure_with_a_twelve_hour_default(monkeypatch):
    from config import Config, ProductionConfig

    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    monkeypatch.delenv("SESSION_HOURS", raising=False)
    production = ProductionConfig()
    assert production.SESSION_COOKIE_SECURE is True
    assert production.SESSION_HOURS == 12
    assert production.PERMANENT_SESSION_LIFETIME.total_seconds() == 12 * 3600
    assert Config().SESSION_COOKIE_HTTPONLY is True


def test_the_cookie_expires_after_session_hours(app, client, make_user):
    user = make_user("display", password="screen-pass")
    res = form_login(client, user.username, "screen-pass")
    assert res.status_code == 302
    cookie = next(v for v in res.headers.getlist("Set-Cookie") if v.startswith(f"{COOKIE}="))
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0])
    hours = (expires - datetime.now(UTC)).total_seconds() / 3600
    assert app.config["SESSION_HOURS"] - 0.1 < hours <= app.config["SESSION_HOURS"]


def test_a_session_older_than_session_hours_is_refused_by_the_server(app, client, make_user, monkeypatch):
    from hms.auth import service

    user = make_user("display", password="screen-pass")
    form_login(client, user.username, "screen-pass")
    assert client.get("/").status_code == 200
    later = time.time() + app.config["SESSION_HOURS"] * 3600 + 60
    monkeypatch.setattr(service, "_now", lambda: later)
    assert client.get("/").status_code == 302
    assert client.get("/api/auth/me").status_code == 401


def test_a_cookie_replayed_after_sign_out_is_refused(app, client, make_user):
    user = make_user("reception", password="pw-123456")
    form_login(client, user.username, "pw-123456")
    assert client.get("/reception").status_code == 200
    stolen = session_cookie(client)
    res = client.post("/logout", data={"csrf_token": csrf_token(client, "/reception")})
    assert res.status_code == 302 and res.headers["Location"] == "/login"
    assert client.get("/reception").status_code == 302
    client.set_cookie(COOKIE, stolen)  # the old cookie, as an attacker kept it
    assert client.get("/reception").status_code == 302
    assert client.get("/api/auth/me").status_code == 401
    # Signing in again works, with a new session.
    assert form_login(client, user.username, "pw-123456").status_code == 302
    assert client.get("/reception").status_code == 200


def test_sign_out_ends_only_that_session(app, make_user):
    user = make_user("display", password="screen-pass")
    first, second = app.test_client(), app.test_client()
    form_login(first, user.username, "screen-pass")
    form_login(second, user.username, "screen-pass")
    first.post("/logout", data={"csrf_token": csrf_token(first, "/")})
    assert first.get("/").status_code == 302
    assert second.get("/").status_code == 200  # another screen on the same account


def test_login_without_the_form_s_csrf_token_is_refused(client, make_user):
    user = make_user("admin", password="pw")
    client.get("/login")
    for data in ({}, {"csrf_token": "forged"}):
        res = client.post("/login", data={"username": user.username, "password": "pw", **data})
        assert res.status_code == 400
        assert client.get("/").status_code == 302  # not signed in


def test_logout_without_the_csrf_token_is_refused(client, make_user):
    user = make_user("admin", password="pw")
    form_login(client, user.username, "pw")
    for data in ({}, {"csrf_token": "forged"}):
        assert client.post("/logout", data=data).status_code == 400
        assert client.get("/admin").status_code == 200  # still signed in


def test_logout_is_post_only(client):
    assert client.get("/logout").status_code == 405


@pytest.mark.parametrize("path", ["/login", "/admin"])
def test_forms_carry_the_csrf_token(client, make_user, path):
    user = make_user("admin", password="pw")
    form_login(client, user.username, "pw")
    assert len(csrf_token(client, path)) >= 32


def test_sign_out_holds_across_a_cache_flush(app, client, make_user):
    """The ended session is stored in the database: flushing the cache (or a Redis
    restart) does not let the old cookie back in."""
    from hms.extensions import cache

    user = make_user("reception", password="pw-123456")
    form_login(client, user.username, "pw-123456")
    stolen = session_cookie(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/reception")})
    with app.app_context():
        cache.clear()
    client.set_cookie(COOKIE, stolen)
    signed_out = client.get("/reception")
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]
    assert client.get("/api/auth/me").status_code == 401
    # And a live session is not affected by the flush.
    other = app.test_client()
    form_login(other, user.username, "pw-123456")
    with app.app_context():
        cache.clear()
    assert other.get("/reception").status_code == 200


def test_ended_sessions_are_kept_until_they_would_have_expired(app, make_user, monkeypatch):
    from sqlalchemy import func, select

    from hms.auth import service
    from hms.auth.models import EndedSession
    from hms.extensions import db

    user = make_user("display", password="screen-pass")
    first, second = app.test_client(), app.test_client()
    form_login(first, user.username, "screen-pass")
    first.post("/logout", data={"csrf_token": csrf_token(first, "/")})
    with app.app_context():
        row = db.session.scalars(select(EndedSession)).one()
        left = (row.expires_at - datetime.now(UTC)).total_seconds()
        assert app.config["SESSION_HOURS"] * 3600 - 60 < left <= app.config["SESSION_HOURS"] * 3600 + 60
    # Once past its expiry the row goes at the next sign-out (no table that only grows).
    later = time.time() + app.config["SESSION_HOURS"] * 3600 + 120
    form_login(second, user.username, "screen-pass")
    monkeypatch.setattr(service, "_now", lambda: later - app.config["SESSION_HOURS"] * 3600 + 10)
    monkeypatch.setattr(service, "utcnow", lambda: datetime.fromtimestamp(later, UTC))
    second.post("/logout", data={"csrf_token": csrf_token(second, "/")})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(EndedSession)) == 1
        db.session.remove()
