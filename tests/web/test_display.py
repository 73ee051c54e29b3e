"""GET /display/<doctor_id> and /display?doctors=1,2,3: the waiting-room page
(server-rendered, always masked; one doctor or several side by side)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import form_login
from tests.queue.stream_helpers import booking, make_patient


def sign_in(client, make_user, role: str = "display") -> None:
    user = make_user(role, password="screen-pass")
    res = form_login(client, user.username, "screen-pass")
    assert res.status_code == 302


def initial_snapshots(html: str) -> list[dict]:
    match = re.search(r'<script type="application/json" id="initial-snapshots">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def initial_snapshot(html: str) -> dict:
    (snapshot,) = initial_snapshots(html)
    return snapshot


def display_script(client) -> str:
    """The page's live renderer, a static file (the page's CSP allows no inline script)."""
    res = client.get("/static/display.js")
    assert res.status_code == 200
    return res.get_data(as_text=True)


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
    assert re.search(r'<div class="room-token">1</div>\s*<div class="room-initials">A\.K\.</div>', html)
    assert re.search(
        r'<li data-token="2" data-priority="NORMAL"><span class="token">2</span>\s*<span class="initials">R\.S\.</span>',
        html,
    )
    snapshot = initial_snapshot(html)
    assert [entry["patient"] for entry in snapshot["entries"]] == [{"initials": "A.K."}, {"initials": "R.S."}]
    assert f'data-stream-url="/api/queue/stream?doctors={doctor.id}"' in html
    assert "new EventSource" in display_script(client)
    assert "Reconnecting" in display_script(client)  # the screen says when the stream is down


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
    assert 'entry.priority === "URGENT"' in display_script(client)  # the live renderer marks them too


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
    form_login(client, user.username, "screen-pass")
    assert client.get(f"/display/{doctor.id}").status_code == 200
    with app.app_context():
        row = db.session.get(User, user.id)
        row.active, row.token_epoch = False, row.token_epoch + 1
        db.session.commit()
        forget_identity(user.id)
    assert client.get(f"/display/{doctor.id}").status_code == 302
    assert client.get(f"/api/queue/{doctor.id}/stream").status_code == 401


# --- several doctors on one screen --------------------------------------------------------


def test_several_doctors_side_by_side_masked_with_clinic_name(app, client, reception, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "CLINIC_NAME", "Sunrise Clinic")
    doctors = [make_user("doctor", name=f"Doctor {n}", room=f"Room {n}") for n in "ABC"]
    for doctor, name in zip(doctors, ("Asha Kumar", "Ravi Shankar", "Uma Iyer"), strict=True):
        assert (
            reception.post("/api/appointments", json=booking(make_patient(app, name), doctor.id)).status_code
            == 201
        )
    sign_in(client, make_user, "reception")  # a role that sees names elsewhere: masked here
    ids = ",".join(str(d.id) for d in doctors)
    res = client.get(f"/display?doctors={ids},{doctors[0].id}")  # a repeat shows once
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert "Sunrise Clinic" in html
    assert [s["doctor"]["name"] for s in initial_snapshots(html)] == ["Doctor A", "Doctor B", "Doctor C"]
    assert html.count('class="panel-doctor"') == 3
    assert re.findall(r'<span class="doctor-room">([^<]*)</span>', html) == ["Room A", "Room B", "Room C"]
    # One stream for the whole screen (the browser holds few connections to one host).
    assert html.count("data-stream-url=") == 1
    assert f'data-stream-url="/api/queue/stream?doctors={ids}"' in html
    assert "Asha" not in html and "Ravi" not in html and "Uma" not in html and "RT0" not in html
    assert ">Turn on sound</button>" in html


def test_the_display_script_chimes_flashes_and_shows_the_room(client, make_user):
    sign_in(client, make_user)
    script = display_script(client)
    assert "createOscillator" in script  # the chime: Web Audio, no sound file
    assert 'classList.add("called")' in script  # the flash of the called token
    assert "snapshot.doctor.room" in script
    assert "localStorage" in script  # "Turn on sound" is remembered


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("", 400, "Choose the doctors to show"),
        ("?doctors=", 400, "Choose the doctors to show"),
        ("?doctors=1,abc", 400, "numbers separated by commas"),
        ("?doctors=-1", 400, "numbers separated by commas"),
        (f"?doctors={2**31}", 400, "numbers separated by commas"),
        ("?doctors=" + ",".join(["1"] * 500), 400, "numbers separated by commas"),
        ("?doctors=999999", 404, "There is no doctor number 999999"),
    ],
)
def test_a_bad_doctor_list_is_refused_in_words(client, make_user, query, status, words):
    sign_in(client, make_user)
    res = client.get(f"/display{query}")
    assert res.status_code == status
    assert words in res.get_data(as_text=True)


def test_at_most_ten_doctors_on_one_screen(client, make_user):
    """Side by side, ten doctors still read across a waiting room at 1280x720; no more."""
    doctors = [make_user("doctor") for _ in range(11)]
    sign_in(client, make_user)
    ids = [str(d.id) for d in doctors]
    assert client.get(f"/display?doctors={','.join(ids[:10])}").status_code == 200
    res = client.get(f"/display?doctors={','.join(ids)}")
    assert res.status_code == 400
    assert "at most 10 doctors" in res.get_data(as_text=True)
    assert client.get("/display?doctors=all").status_code == 400  # 11 doctors


def test_all_doctors(client, make_user):
    doctors = [make_user("doctor", name=f"Doctor {n}") for n in "BA"]
    sign_in(client, make_user)
    html = client.get("/display?doctors=all").get_data(as_text=True)
    assert [s["doctor"]["id"] for s in initial_snapshots(html)] == [doctors[1].id, doctors[0].id]
