"""Every page may not be framed and runs only HMS's own scripts and styles (CSP)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import form_login

CSP = "default-src 'self'; script-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"


def assert_page_headers(res) -> None:
    assert res.headers["Content-Security-Policy"] == CSP
    assert res.headers["X-Frame-Options"] == "DENY"
    assert res.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def signed_in(client, make_user):
    user = make_user("display", password="screen-pass")
    assert form_login(client, user.username, "screen-pass").status_code == 302
    return client


def test_every_page_sends_the_csp_and_may_not_be_framed(client, signed_in, make_user):
    doctor = make_user("doctor")
    for path in ("/", f"/display/{doctor.id}", "/login"):
        res = client.get(path)
        assert res.status_code == 200 and res.mimetype == "text/html", path
        assert_page_headers(res)
    anonymous = client.application.test_client()
    assert_page_headers(anonymous.get("/login"))
    failed = anonymous.post("/login", data={"username": "x", "password": "y"})  # an error page too
    assert_page_headers(failed)


def test_api_answers_may_not_be_framed_or_sniffed(client, reception):
    for res in (reception.get("/api/auth/me"), client.get("/api/auth/me"), client.get("/healthz")):
        assert res.headers["X-Frame-Options"] == "DENY"
        assert res.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_have_no_inline_script_or_style(client, signed_in, make_user):
    doctor = make_user("doctor")
    for path in ("/", f"/display/{doctor.id}", "/login"):
        html = client.get(path).get_data(as_text=True)
        assert "<style" not in html, path
        assert " style=" not in html, path
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert 'type="application/json"' in attributes or (
                ' src="/static/' in attributes and not body.strip()
            )


def test_the_display_script_and_styles_are_served_by_hms(client, signed_in, make_user):
    doctor = make_user("doctor")
    html = client.get(f"/display/{doctor.id}").get_data(as_text=True)
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        res = client.get(asset)
        assert res.status_code == 200, asset
        assert res.mimetype in ("text/javascript", "application/javascript", "text/css"), asset
    assert re.search(r'<script src="/static/display\.js', html)
    assert f'data-stream-url="/api/queue/stream?doctors={doctor.id}"' in html


def test_the_swagger_ui_may_not_be_framed_and_runs_hms_s_own_scripts_only(client):
    """/api/docs is the vendored Swagger UI, started by a static script (tests/web/test_api_docs.py)."""
    res = client.get("/api/docs")
    assert res.status_code == 200
    assert res.headers["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
    )
    assert res.headers["X-Frame-Options"] == "DENY"
