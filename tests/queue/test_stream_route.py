"""GET /api/queue/<doctor_id>/stream through the app (Flask's test client)."""

from __future__ import annotations

import json
import time

import pytest

from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots
from tests.conftest import form_login
from tests.queue.stream_helpers import StreamReader, booking, make_patient


def stream_url(doctor_id) -> str:
    return f"/api/queue/{doctor_id}/stream"


def open_stream(client, doctor_id, **headers):
    return client.get(stream_url(doctor_id), headers=headers, buffered=False)


def read(response) -> StreamReader:
    assert response.status_code == 200, response.get_data(as_text=True)
    return StreamReader(response, iter(response.response), in_process=True)


def held(app, doctor_id: int) -> tuple[int, int]:
    """(leases, mailboxes) this doctor holds now."""
    return StreamSlots.get(app).count(doctor_id), QueueBroker.get(app).registry.count(doctor_id)


def wait_released(app, doctor_id: int, timeout: float = 3.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while held(app, doctor_id) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    return held(app, doctor_id)


@pytest.fixture
def doctor_user(make_user):
    return make_user("doctor", name="Meera Rao")


def test_stream_headers_and_first_event_is_the_current_snapshot(app, reception, doctor_user):
    for name in ("Asha Kumar", "Ravi Shankar"):
        assert (
            reception.post(
                "/api/appointments", json=booking(make_patient(app, name), doctor_user.id)
            ).status_code
            == 201
        )
    expected = reception.get(f"/api/queue/{doctor_user.id}").get_json()
    res = open_stream(reception, doctor_user.id)
    assert res.status_code == 200
    assert res.mimetype == "text/event-stream"
    assert res.headers["Cache-Control"] == "no-cache"
    assert res.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in res.headers and "Content-Length" not in res.headers
    reader = read(res)
    try:
        first = reader.next()
        assert first.retry == str(app.config["SSE_RETRY_MS"])
        assert first.event == "queue" and first.id == str(expected["version"])
        assert json.loads(first.data) == expected
        assert [e["patient"]["name"] for e in json.loads(first.data)["entries"]] == [
            "Asha Kumar",
            "Ravi Shankar",
        ]
        assert reader.next(3).is_ping  # Testing config: a heartbeat every second
    finally:
        reader.close()
    assert wait_released(app, doctor_user.id) == (0, 0)


def test_display_gets_the_masked_snapshot(app, reception, display, doctor_user):
    reception.post("/api/appointments", json=booking(make_patient(app, "Asha Kumar"), doctor_user.id))
    reader = read(open_stream(display, doctor_user.id))
    try:
        snapshot = json.loads(reader.next().data)
    finally:
        reader.close()
    assert snapshot["entries"][0]["patient"] == {"initials": "A.K."}
    assert "Asha" not in json.dumps(snapshot)


def test_a_booking_reaches_the_open_stream_within_a_second(app, reception, doctor, doctor_user):
    reader = read(open_stream(doctor, doctor_user.id))
    try:
        first = reader.next_event()
        broker = QueueBroker.get(app)
        if hasattr(broker, "connected"):  # Redis: the subscriber connects with the first stream
            assert broker.connected.wait(5)
        booked = reception.post("/api/appointments", json=booking(make_patient(app), doctor_user.id))
        committed = time.monotonic()
        assert booked.status_code == 201
        event = reader.next_event(timeout=3)
        assert event.at - committed < 1.0
        assert int(event.id) > int(first.id)
        entries = json.loads(event.data)["entries"]
        assert [(e["appointment_id"], e["token"]) for e in entries] == [(booked.get_json()["id"], 1)]
    finally:
        reader.close()
    assert wait_released(app, doctor_user.id) == (0, 0)


def test_last_event_id_gets_the_current_snapshot_at_once(app, reception, doctor_user):
    for _ in range(2):
        reception.post("/api/appointments", json=booking(make_patient(app), doctor_user.id))
    current = reception.get(f"/api/queue/{doctor_user.id}").get_json()["version"]
    started = time.monotonic()
    reader = read(open_stream(reception, doctor_user.id, **{"Last-Event-ID": str(current - 1)}))
    try:
        first = reader.next(2)
        assert first.id == str(current)
        assert first.at - started < 1.0
    finally:
        reader.close()


@pytest.mark.parametrize("last_event_id", ["garbage", "-1", "9" * 40, ""])
def test_any_last_event_id_is_answered_with_the_snapshot(reception, doctor_user, last_event_id):
    reader = read(open_stream(reception, doctor_user.id, **{"Last-Event-ID": last_event_id}))
    try:
        assert reader.next().event == "queue"
    finally:
        reader.close()


def test_every_role_may_follow_a_queue(app, as_role, doctor_user):
    for role in ("admin", "reception", "doctor", "cashier", "display"):
        reader = read(open_stream(as_role(role), doctor_user.id))
        try:
            assert reader.next().event == "queue"
        finally:
            reader.close()


def test_session_cookie_authenticates_the_stream(app, client, reception, make_user, doctor_user):
    reception.post("/api/appointments", json=booking(make_patient(app, "Ravi Shankar"), doctor_user.id))
    user = make_user("display", password="screen-pass")
    assert open_stream(client, doctor_user.id).status_code == 401
    res = form_login(client, user.username, "screen-pass")
    assert res.status_code == 302
    reader = read(open_stream(client, doctor_user.id))
    try:
        snapshot = json.loads(reader.next().data)
    finally:
        reader.close()
    assert [entry["patient"] for entry in snapshot["entries"]] == [{"initials": "R.S."}]


def test_no_credentials_is_401_before_streaming(app, client, doctor_user):
    res = client.get(stream_url(doctor_user.id), headers={"Authorization": "Bearer nope"})
    assert res.status_code == 401
    assert res.get_json()["code"] == 401
    assert held(app, doctor_user.id) == (0, 0)


def test_unknown_doctor_is_404_before_streaming_and_holds_nothing(app, reception, make_user):
    not_a_doctor = make_user("cashier")
    for doctor_id in (999999, not_a_doctor.id):
        res = open_stream(reception, doctor_id)
        assert res.status_code == 404
        assert res.mimetype == "application/json"
        assert res.get_json()["code"] == 404
        assert held(app, doctor_id) == (0, 0)
    for bad in ("abc", "0", "-1", str(2**31), "1.5"):
        assert open_stream(reception, bad).status_code == 404


@pytest.mark.parametrize("query", ["stauts=WAITING", "date=2026-01-01", "lastEventId=3", "q=%00"])
def test_unknown_query_parameters_are_422_before_streaming_and_hold_nothing(
    app, reception, doctor_user, query
):
    res = reception.get(f"{stream_url(doctor_user.id)}?{query}", buffered=False)
    try:
        assert (res.status_code, res.mimetype) == (422, "application/json")  # never a stream
        body = res.get_json()
        assert body["code"] == 422 and "query" in body["errors"]
        assert held(app, doctor_user.id) == (0, 0)
    finally:
        res.close()


def test_one_stream_over_the_limit_is_429_before_streaming(app, reception, doctor_user, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_DOCTOR", 2)
    readers = [read(open_stream(reception, doctor_user.id)) for _ in range(2)]
    try:
        res = open_stream(reception, doctor_user.id)
        assert res.status_code == 429
        assert res.mimetype == "application/json"
        body = res.get_json()
        assert body["code"] == 429 and body["status"] == "Too Many Requests" and body["message"]
        assert int(res.headers["Retry-After"]) >= 1
        assert held(app, doctor_user.id) == (2, 2)
        readers.pop().close()
        assert wait_released(app, doctor_user.id, timeout=3) != (2, 2)
        readers.append(read(open_stream(reception, doctor_user.id)))  # the freed slot
    finally:
        for reader in readers:
            reader.close()
    assert wait_released(app, doctor_user.id) == (0, 0)


def test_head_holds_no_slot(app, reception, doctor_user):
    res = reception.open("HEAD", stream_url(doctor_user.id))
    assert res.status_code == 200
    assert res.mimetype == "text/event-stream"
    res.close()  # the server closes the body it never iterates
    assert wait_released(app, doctor_user.id) == (0, 0)


def test_the_stream_is_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").get_json()
    operation = spec["paths"]["/api/queue/{doctor_id}/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"404", "429"} <= set(operation["responses"])


def test_one_account_holds_at_most_its_cap_of_streams_across_doctors(app, display, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 3)
    doctors = [make_user("doctor", name=f"Doctor {n}") for n in range(4)]
    readers = [read(open_stream(display, doctor.id)) for doctor in doctors[:3]]
    try:
        res = open_stream(display, doctors[3].id)  # a fourth doctor, but the account's fourth stream
        assert res.status_code == 429 and int(res.headers["Retry-After"]) >= 1
        assert "account" in res.get_json()["message"]
        assert held(app, doctors[3].id) == (0, 0)
        readers.pop().close()
        assert wait_released(app, doctors[2].id) == (0, 0)
        readers.append(read(open_stream(display, doctors[3].id)))
    finally:
        for reader in readers:
            reader.close()


def test_the_default_account_cap_is_10(app):
    assert app.config["SSE_MAX_CONNECTIONS_PER_ACCOUNT"] == 10


def test_a_doctor_always_opens_their_own_queue(app, as_role, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_DOCTOR", 2)
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 2)
    doctor_user = make_user("doctor", name="Meera Rao")
    screens = [as_role("display") for _ in range(2)]
    readers = [read(open_stream(screen, doctor_user.id)) for screen in screens]
    try:
        assert open_stream(as_role("display"), doctor_user.id).status_code == 429  # the doctor's limit
        own = as_role("doctor", user=doctor_user)
        readers += [read(open_stream(own, doctor_user.id)) for _ in range(2)]  # never refused by others
        assert held(app, doctor_user.id) == (4, 4)  # counted: the queue is watched
        over = open_stream(own, doctor_user.id)  # but the doctor's own account cap holds
        assert over.status_code == 429 and "account" in over.get_json()["message"]
        assert open_stream(as_role("display"), doctor_user.id).status_code == 429
    finally:
        for reader in readers:
            reader.close()
    assert wait_released(app, doctor_user.id) == (0, 0)


def test_a_stream_opened_with_a_session_ends_when_that_session_signs_out(app, make_user, doctor_user):
    from tests.conftest import csrf_token

    user = make_user("display", password="screen-pass")
    screen, other_screen = app.test_client(), app.test_client()
    form_login(screen, user.username, "screen-pass")
    form_login(other_screen, user.username, "screen-pass")
    reader = read(open_stream(screen, doctor_user.id))
    other = read(open_stream(other_screen, doctor_user.id))
    try:
        assert reader.next().event == "queue" and other.next().event == "queue"
        res = screen.post("/logout", data={"csrf_token": csrf_token(screen, "/")})
        assert res.status_code == 302
        deadline = time.monotonic() + 5
        while (block := reader.next(3)) is not None:
            assert block.is_ping
            assert time.monotonic() < deadline, "the signed-out session's stream is still open"
        # The same account's other session keeps its stream.
        assert other.next(3).is_ping
    finally:
        reader.close()
        other.close()
