"""GET /display/<doctor_id>: the waiting-room page (server-rendered, always masked)."""

from __future__ import annotations

import json
import re

import pytest

from tests.queue.stream_helpers import booking, make_patient


def sign_in(client, make_user, role: str = "display") -> None:
    user = make_user(role, password="screen-pass")
    res = client.post("/login", data={"username": user.username, "password": "screen-pass"})
    assert res.status_code == 302


def initial_snapshot(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="initial-snapshot">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_display_needs_a_signed_in_session(client, make_user):
    doctor = make_user("doctor")
    res = client.get(f"/display/{doctor.id}")
    assert res.status_code == 302
    assert res.headers["Location"].endswith(f"/login?next=/display/{doctor.id}")


@pytest.mark.parametrize("role", ["display", "reception", "admin", "doctor", "cashier"])
def test_display_is_always_masked(app, client, reception, make_user, role):
    doctor = make_user("doctor", name="Meera Rao")
    first = reception.post("/api/appointments", json=booking(make_patient(app, "Asha Kumar"), doctor.id))
    reception.post("/api/appointments", json=booking(make_patient(app, "Ravi Shankar"), doctor.id))
    assert first.status_code == 201
    reception.patch(f"/api/appointments/{first.get_json()['id']}/status", json={"status": "IN_CONSULTATION"})
    sign_in(client, make_user, role)
    res = client.get(f"/display/{doctor.id}")
    assert res.status_code == 200
    assert res.mimetype == "text/html"
    html = res.get_data(as_text=True)
    assert "Meera Rao" in html
    assert "Asha" not in html and "Ravi" not in html and "RT0" not in html  # no names, no MRNs
    assert re.search(r'<div id="room-token">1</div>\s*<div id="room-initials">A\.K\.</div>', html)
    assert re.search(
        r'<li data-token="2" data-priority="NORMAL"><span class="token">2</span>\s*<span class="initials">R\.S\.</span>',
        html,
    )
    snapshot = initial_snapshot(html)
    assert [entry["patient"] for entry in snapshot["entries"]] == [{"initials": "A.K."}, {"initials": "R.S."}]
    assert f'"/api/queue/{doctor.id}/stream"' in html and "new EventSource" in html
    assert "Reconnecting" in html


def test_display_marks_urgent_tokens_in_words(app, client, reception, make_user):
    """Triage: an URGENT patient waits ahead of NORMAL ones, and the screen says so in
    words (not only by colour), in the server-rendered list and in the page's renderer."""
    doctor = make_user("doctor", name="Meera Rao")
    for name, priority in (("Asha Kumar", "NORMAL"), ("Ravi Shankar", "URGENT")):
        res = reception.post(
            "/api/appointments", json={**booking(make_patient(app, name), doctor.id), "priority": priority}
        )
        assert res.status_code == 201
    sign_in(client, make_user)
    html = client.get(f"/display/{doctor.id}").get_data(as_text=True)
    items = re.findall(
        r'<li data-token="(\d+)" data-priority="(\w+)"( class="urgent")?>(.*?)</li>', html, re.S
    )
    assert [(token, priority, bool(urgent)) for token, priority, urgent, _ in items] == [
        ("2", "URGENT", True),
        ("1", "NORMAL", False),
    ]
    assert '<span class="urgent-flag">Urgent</span>' in items[0][3]
    assert "urgent-flag" not in items[1][3]
    assert [e["priority"] for e in initial_snapshot(html)["entries"]] == ["URGENT", "NORMAL"]
    assert 'entry.priority === "URGENT"' in html  # the live renderer marks them too


def test_display_of_an_empty_queue(client, make_user):
    doctor = make_user("doctor", name="Meera Rao")
    sign_in(client, make_user)
    html = client.get(f"/display/{doctor.id}").get_data(as_text=True)
    assert "Nobody yet" in html and "0 waiting" in html
    assert initial_snapshot(html)["entries"] == []


def test_display_escapes_names(app, client, reception, make_user):
    doctor = make_user("doctor", name="Dr <script>alert(1)</script>")
    reception.post("/api/appointments", json=booking(make_patient(app, "<img src=x>"), doctor.id))
    sign_in(client, make_user)
    html = client.get(f"/display/{doctor.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x>" not in html
    assert initial_snapshot(html)["doctor"]["name"] == "Dr <script>alert(1)</script>"


def test_display_of_an_unknown_doctor_is_404(client, make_user):
    sign_in(client, make_user)
    not_a_doctor = make_user("cashier")
    for path in (
        "/display/999999",
        f"/display/{not_a_doctor.id}",
        "/display/abc",
        "/display/0",
        f"/display/{2**31}",
    ):
        assert client.get(path).status_code == 404, path


def test_a_disabled_display_account_is_sent_back_to_login(app, client, make_user):
    from hms.auth.models import User
    from hms.auth.service import forget_identity
    from hms.extensions import db

    doctor = make_user("doctor")
    user = make_user("display", password="screen-pass")
    client.post("/login", data={"username": user.username, "password": "screen-pass"})
    assert client.get(f"/display/{doctor.id}").status_code == 200
    with app.app_context():
        row = db.session.get(User, user.id)
        row.active, row.token_epoch = False, row.token_epoch + 1
        db.session.commit()
        forget_identity(user.id)
    assert client.get(f"/display/{doctor.id}").status_code == 302
    assert client.get(f"/api/queue/{doctor.id}/stream").status_code == 401
