"""/t/<ticket>: the patient's own ticket page (public; the signature is the credential)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.queue.stream_helpers import booking


@pytest.fixture
def ticket_of(app, reception, admin, make_user):
    """Book a patient (name, MRN, phone known) and return (path, appointment)."""
    doctor = make_user("doctor", name="Meera Rao", room="Room 4")

    def book(name: str = "Asha Kumar", priority: str = "NORMAL"):
        patient = admin.post(
            "/api/patients", json={"name": name, "gender": "female", "age": 40, "phone": "+919845011223"}
        ).get_json()
        res = reception.post(
            "/api/appointments", json={**booking(patient["id"], doctor.id), "priority": priority}
        )
        assert res.status_code == 201
        appointment = res.get_json()
        link = reception.get(f"/api/appointments/{appointment['id']}/ticket").get_json()
        path = "/" + link["url"].split("/", 3)[3]
        return path, appointment, patient

    book.doctor = doctor
    return book


def test_the_ticket_page_shows_the_token_and_leaks_nothing(client, ticket_of, reception):
    ticket_of("Ravi Shankar")  # someone ahead
    path, appointment, patient = ticket_of("Asha Kumar", priority="URGENT")
    res = client.get(path)  # no account
    assert res.status_code == 200 and res.mimetype == "text/html"
    assert res.headers["Cache-Control"] == "no-store"
    assert res.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    html = res.get_data(as_text=True)
    assert re.search(r'<span id="token" class="token">2</span>', html)
    assert '<span id="initials">A.K.</span>' in html
    assert "Meera Rao" in html and "Urgent" in html and '<dd id="room">Room 4</dd>' in html
    assert '<dd id="position">' in html and "Estimated wait" in html and "Now in the room" in html
    for secret in ("Asha", "Kumar", patient["mrn"], "9845011223", "Ravi", "R.S."):
        assert secret not in html, secret
    ticket = path.removeprefix("/t/")
    assert f'data-stream-url="/api/tickets/{ticket}/stream"' in html
    assert "Please wait" in html


def test_the_ticket_page_follows_the_call(client, ticket_of, reception):
    path, appointment, _ = ticket_of()
    reception.patch(f"/api/appointments/{appointment['id']}/status", json={"status": "IN_CONSULTATION"})
    html = client.get(path).get_data(as_text=True)
    assert "It is your turn: please go in to Room 4." in html
    assert '<dd id="now-serving">1</dd>' in html


def test_every_bad_ticket_is_the_same_friendly_404(app, client, ticket_of):
    from hms.queue.tickets import sign_ticket

    path, appointment, _ = ticket_of()
    ticket = path.removeprefix("/t/")
    tampered = ticket[:-1] + ("A" if ticket[-1] != "A" else "B")
    other_id = ticket.replace(ticket.split(".")[0], "zz", 1)
    with app.test_request_context():
        expired = sign_ticket(appointment["id"], datetime.now(UTC) - timedelta(minutes=1))
        unknown = sign_ticket(999999, datetime.now(UTC) + timedelta(hours=1))
    bodies = set()
    for bad in ("nonsense", tampered, other_id, expired, unknown, "x" * 5000, "%00", "a.b.c"):
        res = client.get(f"/t/{bad}")
        assert res.status_code == 404, bad
        body = res.get_data(as_text=True)
        assert "Ticket not found" in body and "ask at reception" in body.lower()
        assert "Meera" not in body and "A.K." not in body
        bodies.add(body)
    assert len(bodies) == 1  # nothing tells one refusal from another
