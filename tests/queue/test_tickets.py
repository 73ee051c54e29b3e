"""The patient's ticket: its signed link, what it shows (no account), and its live stream."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from itsdangerous import Signer

from hms.queue import tickets
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots
from tests.appointments.helpers import book, make_patient
from tests.queue.stream_helpers import StreamReader

NOT_FOUND = {"code": 404, "status": "Not Found", "message": tickets.TICKET_NOT_FOUND}


@pytest.fixture
def doctor_user(make_user):
    return make_user("doctor", name="Meera Rao")


@pytest.fixture
def booked(app, reception, doctor_user):
    """Book a patient (with a phone) with the doctor: (appointment id, patient fields)."""

    def make(name: str = "Asha Rani Kumar", phone: str = "+919812345678", **extra) -> tuple[int, dict]:
        patient_id = make_patient(app, name, phone=phone)
        res = book(reception, patient_id, doctor_user.id, **extra)
        assert res.status_code == 201, res.get_json()
        from hms.extensions import db
        from hms.patients.models import Patient

        with app.app_context():
            patient = db.session.get(Patient, patient_id)
            fields = {"id": patient.id, "mrn": patient.mrn, "name": patient.name, "phone": patient.phone}
            db.session.remove()
        return res.get_json()["id"], fields

    return make


def ticket_of(reception, appointment_id: int) -> str:
    res = reception.get(f"/api/appointments/{appointment_id}/ticket")
    assert res.status_code == 200, res.get_json()
    return res.get_json()["url"].rsplit("/t/", 1)[1]


def signed(app, value: str, *, key: str | None = None, salt: str = tickets.TICKET_SALT) -> str:
    with app.app_context():
        return Signer(key or app.config["SECRET_KEY"], salt=salt).sign(value).decode()


def b36(number: int) -> str:
    return tickets._base36(number)


def assert_no_pii(body: bytes, patient: dict) -> None:
    for value in (patient["name"], patient["mrn"], patient["phone"], *patient["name"].split()):
        assert value.encode() not in body, value

    def keys(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield key
                yield from keys(value)

    parsed = json.loads(body)
    assert not {"id", "patient_id", "name", "mrn", "phone"} & set(keys(parsed["patient"]))
    assert "patient_id" not in set(keys(parsed)) and "mrn" not in set(keys(parsed))


# --- the link ---------------------------------------------------------------------------


def test_the_link_is_absolute_signed_and_expires_at_the_end_of_the_clinic_day(app, reception, booked):
    appointment_id, _ = booked()
    res = reception.get(f"/api/appointments/{appointment_id}/ticket")
    assert res.status_code == 200
    body = res.get_json()
    assert set(body) == {"url", "expires_at"}
    assert body["url"].startswith("http://localhost/t/")
    ticket = body["url"].rsplit("/t/", 1)[1]
    assert len(ticket) <= 48  # compact: it goes into a QR code
    assert res.headers["Cache-Control"] == "no-store"
    zone = ZoneInfo(app.config["CLINIC_TIMEZONE"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.tzinfo is not None
    today = datetime.now(zone).date()
    assert expires == datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    # The same appointment always gets the same ticket: a reprinted slip still works.
    assert reception.get(f"/api/appointments/{appointment_id}/ticket").get_json() == body


def test_the_link_follows_the_clinic_time_zone(app, reception, booked, monkeypatch):
    appointment_id, _ = booked()
    monkeypatch.setitem(app.config, "CLINIC_TIMEZONE", "Asia/Kolkata")
    expires = datetime.fromisoformat(
        reception.get(f"/api/appointments/{appointment_id}/ticket").get_json()["expires_at"]
    )
    assert expires.utcoffset() == timedelta(hours=5, minutes=30)
    assert (expires.hour, expires.minute) == (0, 0)


def test_ticket_link_service_returns_the_path(app, booked):
    appointment_id, _ = booked()
    with app.test_request_context():
        path, expires_at = tickets.ticket_link(appointment_id)
        assert path.startswith("/t/") and "://" not in path
        assert tickets.read_ticket(path.removeprefix("/t/"))["token"] == 1
        assert expires_at > datetime.now(UTC)


def test_the_link_of_an_unknown_appointment_is_404(reception, admin):
    for client in (reception, admin):
        res = client.get("/api/appointments/999999/ticket")
        assert res.status_code == 404 and res.get_json()["code"] == 404


def test_only_reception_and_admin_get_the_link(as_role, booked):
    appointment_id, _ = booked()
    for role in ("doctor", "cashier", "display"):
        assert as_role(role).get(f"/api/appointments/{appointment_id}/ticket").status_code == 403


# --- what it shows ----------------------------------------------------------------------


def test_the_ticket_shows_the_line_without_any_personal_data(
    app, client, reception, doctor, booked, doctor_user
):
    first_id, _ = booked("Ravi Shankar", phone="+919800000001")
    appointment_id, patient = booked("Asha Rani Kumar", phone="+919812345678", priority="NORMAL")
    ticket = ticket_of(reception, appointment_id)
    res = client.get(f"/api/tickets/{ticket}")  # no account
    assert res.status_code == 200
    assert res.headers["Cache-Control"] == "no-store"
    body = res.get_json()
    assert body == {
        "token": 2,
        "priority": "NORMAL",
        "status": "WAITING",
        "doctor": {"name": "Meera Rao", "room": None},
        "queue_position": 2,
        "estimated_wait_minutes": 10,
        "now_serving_token": None,
        "patient": {"initials": "A.K."},
    }
    assert_no_pii(res.get_data(), patient)
    # The first patient is called in: the ticket moves up and shows who is in the room.
    assert reception.post(f"/api/queue/{doctor_user.id}/next").status_code == 200
    body = client.get(f"/api/tickets/{ticket}").get_json()
    assert (body["queue_position"], body["now_serving_token"], body["status"]) == (2, 1, "WAITING")
    assert first_id != appointment_id


def test_a_ticket_that_left_the_line_shows_its_status_and_no_position(
    app, client, reception, booked, doctor_user
):
    appointment_id, patient = booked()
    ticket = ticket_of(reception, appointment_id)
    assert reception.post(f"/api/queue/{doctor_user.id}/next").status_code == 200
    in_room = client.get(f"/api/tickets/{ticket}").get_json()
    assert (in_room["status"], in_room["queue_position"], in_room["now_serving_token"]) == (
        "IN_CONSULTATION",
        1,
        1,
    )
    res = reception.patch(f"/api/appointments/{appointment_id}/status", json={"status": "COMPLETED"})
    assert res.status_code == 200
    res = client.get(f"/api/tickets/{ticket}")
    body = res.get_json()
    assert body["status"] == "COMPLETED"
    assert body["queue_position"] is None and body["estimated_wait_minutes"] is None
    assert body["token"] == 1 and body["patient"] == {"initials": "A.K."}
    assert_no_pii(res.get_data(), patient)


def test_a_cancelled_appointment_answers_cancelled(client, reception, booked):
    appointment_id, _ = booked()
    ticket = ticket_of(reception, appointment_id)
    reception.patch(f"/api/appointments/{appointment_id}/status", json={"status": "CANCELLED"})
    body = client.get(f"/api/tickets/{ticket}").get_json()
    assert (body["status"], body["queue_position"]) == ("CANCELLED", None)


def _bad_tickets(app, ticket: str) -> dict[str, str]:
    appointment_id, expiry = (int(part, 36) for part in ticket.split(".")[:2])
    signature = ticket.rsplit(".", 1)[1]
    future = int(time.time()) + 3600
    flip = {"a": "b", "b": "a"}
    return {
        "random": secrets.token_urlsafe(30),
        "empty-ish": ".",
        "unsigned payload": f"{b36(appointment_id)}.{b36(future)}",
        "tampered id": f"{b36(appointment_id + 1)}.{b36(expiry)}.{signature}",
        "tampered expiry": f"{b36(appointment_id)}.{b36(expiry + 86400)}.{signature}",
        "tampered signature": ticket[:-1] + ("A" if ticket[-1] != "A" else "B"),
        "one character changed": ticket[:1] + flip.get(ticket[1], "a") + ticket[2:],
        "wrong key": signed(app, f"{b36(appointment_id)}.{b36(future)}", key="another-secret"),
        "wrong salt": signed(app, f"{b36(appointment_id)}.{b36(future)}", salt="hms.other"),
        "expired": signed(app, f"{b36(appointment_id)}.{b36(int(time.time()) - 1)}"),
        "unknown appointment": signed(app, f"{b36(999999)}.{b36(future)}"),
        "not base 36": signed(app, f"{appointment_id}!.{b36(future)}"),
        "too long": ticket + "x" * 200,
        "non-ascii": ticket + "é",
    }


def test_every_bad_ticket_is_the_same_404(app, client, reception, booked):
    appointment_id, patient = booked()
    ticket = ticket_of(reception, appointment_id)
    assert client.get(f"/api/tickets/{ticket}").status_code == 200
    for kind, bad in _bad_tickets(app, ticket).items():
        for url in (f"/api/tickets/{bad}", f"/api/tickets/{bad}/stream"):
            res = client.get(url)
            assert res.status_code == 404, (kind, url)
            assert res.get_json() == NOT_FOUND, (kind, url)
            assert patient["name"].encode() not in res.get_data()


def test_an_expired_ticket_is_404_even_with_a_genuine_signature(app, client, booked):
    appointment_id, _ = booked()
    with app.app_context():
        past = tickets.sign_ticket(appointment_id, datetime.now(UTC) - timedelta(seconds=1))
        current = tickets.sign_ticket(appointment_id, datetime.now(UTC) + timedelta(minutes=5))
    assert client.get(f"/api/tickets/{past}").get_json() == NOT_FOUND
    assert client.get(f"/api/tickets/{current}").status_code == 200


def test_unknown_query_parameters_are_422(client, reception, booked):
    ticket = ticket_of(reception, booked()[0])
    for url in (f"/api/tickets/{ticket}?x=1", f"/api/tickets/{ticket}/stream?lastEventId=3"):
        res = client.get(url)
        assert res.status_code == 422 and "query" in res.get_json()["errors"]


def test_the_ticket_routes_are_in_the_openapi_document_without_security(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert paths["/api/tickets/{ticket}"]["get"]["security"] == []
    stream = paths["/api/tickets/{ticket}/stream"]["get"]
    assert stream["security"] == [] and {"404", "429"} <= set(stream["responses"])
    assert "get" in paths["/api/appointments/{appointment_id}/ticket"]


# --- the live stream --------------------------------------------------------------------


def open_ticket(client, ticket: str):
    return client.get(f"/api/tickets/{ticket}/stream", buffered=False)


def read(response) -> StreamReader:
    assert response.status_code == 200, response.get_data(as_text=True)
    return StreamReader(response, iter(response.response), in_process=True)


def open_queue(client, doctor_id: int):
    return client.get(f"/api/queue/{doctor_id}/stream", buffered=False)


def wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_the_stream_sends_the_ticket_first_then_every_change(app, client, reception, booked, doctor_user):
    appointment_id, patient = booked()
    ticket = ticket_of(reception, appointment_id)
    res = open_ticket(client, ticket)
    assert res.mimetype == "text/event-stream"
    assert res.headers["Cache-Control"] == "no-cache" and res.headers["X-Accel-Buffering"] == "no"
    reader = read(res)
    try:
        first = reader.next_event()
        assert first.event == "ticket"
        assert json.loads(first.data) == client.get(f"/api/tickets/{ticket}").get_json()
        assert json.loads(first.data)["queue_position"] == 1
        broker = QueueBroker.get(app)
        if hasattr(broker, "connected"):  # Redis: the subscriber connects with the first stream
            assert broker.connected.wait(5)
        assert reception.post(f"/api/queue/{doctor_user.id}/next").status_code == 200
        changed = reader.next_event(timeout=3)
        assert int(changed.id) > int(first.id)
        body = json.loads(changed.data)
        assert (body["status"], body["now_serving_token"]) == ("IN_CONSULTATION", 1)
        assert patient["name"] not in changed.data and patient["mrn"] not in changed.data
        # Someone else booked: the queue changed, the ticket is sent again.
        booked("Ravi Shankar", phone="+919800000002")
        again = reader.next_event(timeout=3)
        assert int(again.id) > int(changed.id)
        reception.patch(f"/api/appointments/{appointment_id}/status", json={"status": "COMPLETED"})
        done = json.loads(reader.next_event(timeout=3).data)
        assert (done["status"], done["queue_position"]) == ("COMPLETED", None)
    finally:
        reader.close()
    slots = StreamSlots.get(app)
    assert wait_for(lambda: slots.count(tickets.ticket_topic(appointment_id)) == 0)


def test_three_streams_per_ticket_and_none_of_the_doctor_s_slots(
    app, client, reception, display, as_role, booked, doctor_user, monkeypatch
):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_DOCTOR", 1)
    appointment_id, _ = booked()
    other_id, _ = booked("Ravi Shankar", phone="+919800000003")
    ticket, other = ticket_of(reception, appointment_id), ticket_of(reception, other_id)
    slots = StreamSlots.get(app)
    readers = []
    try:
        # The display takes the doctor's only slot; a second staff stream is refused...
        readers.append(read(open_queue(display, doctor_user.id)))
        assert open_queue(as_role("display"), doctor_user.id).status_code == 429
        # ...but tickets still open: three per ticket, counted in the ticket's own topic.
        readers += [read(open_ticket(client, ticket)) for _ in range(3)]
        for reader in readers[1:]:
            assert reader.next_event().event == "ticket"
        res = open_ticket(client, ticket)
        assert res.status_code == 429 and res.mimetype == "application/json"
        body = res.get_json()
        assert body["code"] == 429 and body["status"] == "Too Many Requests" and body["message"]
        assert int(res.headers["Retry-After"]) >= 1
        # Another ticket of the same doctor has its own three.
        readers.append(read(open_ticket(client, other)))
        assert slots.count(doctor_user.id) == 1  # only the display
        assert slots.count(tickets.ticket_topic(appointment_id)) == 3
        assert QueueBroker.get(app).registry.count(doctor_user.id) == 5  # all listen to the queue
        # The doctor opens their own queue, whatever the tickets hold.
        readers.append(read(open_queue(as_role("doctor", user=doctor_user), doctor_user.id)))
        # A ticket stream that closes frees its slot.
        readers.pop(1).close()
        assert wait_for(lambda: slots.count(tickets.ticket_topic(appointment_id)) == 2)
        readers.append(read(open_ticket(client, ticket)))
    finally:
        for reader in readers:
            reader.close()


def test_ticket_streams_take_no_account_slot(app, client, reception, booked, doctor_user, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 1)
    appointment_id, _ = booked()
    ticket = ticket_of(reception, appointment_id)
    readers = [read(open_ticket(client, ticket)) for _ in range(3)]
    try:
        readers.append(read(open_queue(reception, doctor_user.id)))  # reception's one account slot
    finally:
        for reader in readers:
            reader.close()


def test_the_stream_ends_when_the_ticket_expires(app, client, booked):
    appointment_id, _ = booked()
    with app.app_context():
        ticket = tickets.sign_ticket(appointment_id, datetime.now(UTC) + timedelta(seconds=2))
    reader = read(open_ticket(client, ticket))
    try:
        assert reader.next_event().event == "ticket"
        assert reader.ended.wait(6)  # the testing heartbeat is 1 s
    finally:
        reader.close()
    slots = StreamSlots.get(app)
    assert wait_for(lambda: slots.count(tickets.ticket_topic(appointment_id)) == 0)


def test_a_future_day_s_ticket_follows_that_day(app, client, reception, booked, doctor_user):
    tomorrow = (datetime.now(ZoneInfo(app.config["CLINIC_TIMEZONE"])).date() + timedelta(days=1)).isoformat()
    booked("Ravi Shankar", phone="+919800000004")  # today
    appointment_id, _ = booked(appointment_date=tomorrow)
    ticket = ticket_of(reception, appointment_id)
    body = client.get(f"/api/tickets/{ticket}").get_json()
    assert (body["token"], body["queue_position"]) == (1, 1)
    reader = read(open_ticket(client, ticket))
    try:
        first = reader.next_event()
        assert json.loads(first.data)["queue_position"] == 1
        booked("Mira Das", phone="+919800000005", appointment_date=tomorrow)  # tomorrow's queue changes
        assert int(reader.next_event(timeout=3).id) > int(first.id)
    finally:
        reader.close()
    assert date.fromisoformat(tomorrow)


def test_only_the_exact_signed_string_is_accepted(client, reception, booked):
    """Base64 decoding ignores stray characters and the last character's unused bits: the
    ticket is compared whole, so no second spelling of a ticket exists."""
    ticket = ticket_of(reception, booked()[0])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    answers = {c: client.get(f"/api/tickets/{ticket[:-1]}{c}").status_code for c in alphabet}
    assert answers == {c: 200 if c == ticket[-1] else 404 for c in alphabet}
    for stray in ("=", "==", "%3D", "~"):
        assert client.get(f"/api/tickets/{ticket}{stray}").status_code == 404
