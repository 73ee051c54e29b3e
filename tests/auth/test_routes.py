"""Sign-in, tokens, sessions and the access-control mechanism."""

import pytest

from tests.conftest import form_login


def login(client, username, password, **kw):
    return client.post("/api/auth/token", json={"username": username, "password": password}, **kw)


def test_token_login_and_me(client, make_user):
    user = make_user("reception", password="right-pass", name="Rita")
    res = login(client, user.username, "right-pass")
    assert res.status_code == 200
    body = res.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["user"] == {"id": user.id, "username": user.username, "name": "Rita", "role": "reception"}
    assert "password" not in str(body) and "hash" not in str(body)
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["id"] == user.id


def test_wrong_password_and_unknown_user_get_the_same_401(client, make_user):
    user = make_user("cashier", password="right-pass")
    wrong = login(client, user.username, "nope")
    unknown = login(client, "no-such-user", "nope")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["message"] == unknown.get_json()["message"]


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-token", "Basic abc", "Bearer ", "bearer x.y.z"],
)
def test_bad_tokens_are_401(client, header):
    res = client.get("/api/auth/me", headers={"Authorization": header})
    assert res.status_code == 401
    assert res.get_json()["code"] == 401


def test_disabled_account_token_stops_working(app, client, make_user):
    from hms.auth.models import User
    from hms.auth.service import forget_identity
    from hms.extensions import db

    user = make_user("reception", password="pw-123456")
    token = login(client, user.username, "pw-123456").get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    with app.app_context():
        row = db.session.get(User, user.id)
        row.active = False
        row.token_epoch += 1
        db.session.commit()
        forget_identity(user.id)
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert login(client, user.username, "pw-123456").status_code == 401


def test_expired_token_is_401(app, client, make_user):
    user = make_user("doctor")
    from tests.conftest import token_for

    token = token_for(app, user)
    app.config["TOKEN_TTL_SECONDS"] = -1
    try:
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    finally:
        app.config["TOKEN_TTL_SECONDS"] = 3600


def test_a_token_is_verified_once_and_still_expires(app, client, make_user, monkeypatch):
    from itsdangerous import URLSafeTimedSerializer

    from tests.conftest import token_for

    token = token_for(app, make_user("doctor"))
    headers = {"Authorization": f"Bearer {token}"}
    verifications = []
    loads = URLSafeTimedSerializer.loads

    def counted(self, *args, **kwargs):
        verifications.append(1)
        return loads(self, *args, **kwargs)

    monkeypatch.setattr(URLSafeTimedSerializer, "loads", counted)
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    assert len(verifications) == 1  # the signature is checked once per worker
    # A tampered token is not the same text: verified (and refused) on its own.
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token[:-2]}xx"}).status_code == 401
    app.config["TOKEN_TTL_SECONDS"] = -1
    try:  # the expiry is checked on every request, kept or not
        assert client.get("/api/auth/me", headers=headers).status_code == 401
    finally:
        app.config["TOKEN_TTL_SECONDS"] = 3600


def test_failed_logins_are_throttled_per_username_and_client(app, client, make_user):
    user = make_user("reception", password="right-pass")
    limit = int(app.config["LOGIN_LIMIT_PER_USERNAME_AND_CLIENT"].split()[0])
    for _ in range(limit):
        assert login(client, user.username, "wrong").status_code == 401
    res = login(client, user.username, "right-pass")
    assert res.status_code == 429
    assert int(res.headers["Retry-After"]) > 0
    assert res.get_json()["code"] == 429
    # Another username from the same client is still allowed (per-client limit is higher).
    other = make_user("reception", password="pw-2")
    assert login(client, other.username, "pw-2").status_code == 200


def test_failed_logins_are_throttled_per_client(app, client):
    limit = int(app.config["LOGIN_LIMIT_PER_CLIENT"].split()[0])
    for i in range(limit):
        assert login(client, f"ghost{i}", "wrong").status_code == 401
    assert login(client, "ghost-next", "wrong").status_code == 429


def test_session_cookie_login_page(client, make_user):
    user = make_user("display", password="screen-pass")
    page = client.get("/login")
    assert page.status_code == 200 and b"<form" in page.data
    bad = form_login(client, user.username, "x")
    assert bad.status_code == 401
    ok = form_login(client, user.username, "screen-pass", next="/")
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    # The cookie authenticates safe API calls (a browser EventSource) ...
    assert client.get("/api/auth/me").get_json()["role"] == "display"
    # ... but never state-changing ones (no CSRF through the cookie).
    assert client.post("/api/patients", json={"name": "X", "gender": "male"}).status_code == 401


def test_login_redirect_is_never_off_site(client, make_user):
    user = make_user("admin", password="pw")
    res = form_login(client, user.username, "pw", next="//evil.example/x")
    assert res.status_code == 302 and res.headers["Location"] == "/"


def test_pages_redirect_to_login_without_session(client):
    res = client.get("/")
    assert res.status_code == 302 and res.headers["Location"].startswith("/login")


def test_every_route_declares_a_policy_and_needs_a_token(app, client):
    """Walk the URL map: everything but sign-in, docs, the patient's ticket (signed: no
    account), pages and ops answers 401 without a token."""
    public = {
        "/api/auth/token",
        "/api/openapi.json",
        "/api/docs",
        "/healthz",
        "/readyz",
        "/login",
        "/logout",
        "/api/tickets/<ticket>",
        "/api/tickets/<ticket>/stream",
    }
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in public or rule.endpoint == "static" or not rule.rule.startswith("/api"):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<id:{arg}>", "1").replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            res = client.open(url, method=method, json={"bogus": True})
            assert res.status_code == 401, f"{method} {url} answered {res.status_code}"
            assert res.get_json()["code"] == 401
            checked += 1
    assert checked >= 1


def test_unknown_route_and_wrong_method_have_the_error_body(client, admin):
    res = admin.get("/api/nope")
    assert res.status_code == 404 and res.get_json()["status"] == "Not Found"
    res = admin.delete("/api/auth/me")
    assert res.status_code == 405 and res.get_json()["code"] == 405


def test_malformed_json_is_400(client):
    res = client.post("/api/auth/token", data="{not json", content_type="application/json")
    assert res.status_code == 400
    body = res.get_json()
    assert body["code"] == 400 and body["message"]


def test_other_workers_see_an_account_change_within_the_local_time(app, client, make_user):
    """A change committed elsewhere (another worker drops only the shared cache entry)
    applies here once this worker's local copy is older than IDENTITY_LOCAL_SECONDS."""
    import time

    from hms.auth.models import User
    from hms.auth.service import _identity_key
    from hms.core.cache import cache_delete
    from hms.extensions import db

    user = make_user("reception", password="pw-123456")
    token = login(client, user.username, "pw-123456").get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    app.config["IDENTITY_LOCAL_SECONDS"] = 0.3
    try:
        assert client.get("/api/auth/me", headers=headers).status_code == 200
        with app.app_context():
            row = db.session.get(User, user.id)
            row.active = False
            db.session.commit()
            cache_delete(_identity_key(user.id))  # what forget_identity does on another worker
        assert client.get("/api/auth/me", headers=headers).status_code == 200  # this worker's copy
        time.sleep(0.35)
        assert client.get("/api/auth/me", headers=headers).status_code == 401
    finally:
        app.config["IDENTITY_LOCAL_SECONDS"] = 0


def test_by_default_a_change_made_elsewhere_applies_at_once(app, client, make_user):
    """API.md: a disabled account's tokens stop working at once, whichever worker the
    next request reaches (here: only the shared cache entry is dropped)."""
    from hms.auth.models import User
    from hms.auth.service import _identity_key
    from hms.core.cache import cache_delete
    from hms.extensions import db

    assert app.config["IDENTITY_LOCAL_SECONDS"] == 0
    user = make_user("reception", password="pw-123456")
    token = login(client, user.username, "pw-123456").get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    with app.app_context():
        db.session.get(User, user.id).active = False
        db.session.commit()
        cache_delete(_identity_key(user.id))
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_only_decorated_views_are_rate_limited(app):
    """flask-limiter's per-request hook is gone; a default limit, which needs it, is refused."""
    import pytest
    from flask import Flask

    from hms import _limit_decorated_views_only
    from hms.extensions import limiter

    assert limiter._check_request_limit not in app.before_request_funcs.get(None, [])
    other = Flask("other")
    other.config["RATELIMIT_DEFAULT"] = "100 per minute"
    with pytest.raises(RuntimeError, match="RATELIMIT_DEFAULT"):
        _limit_decorated_views_only(other, limiter)
