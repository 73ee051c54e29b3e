"""GET /api/queue/stream?doctors=...: several doctors' queues on one connection."""

from __future__ import annotations

import json

import pytest

from tests.queue.stream_helpers import StreamReader, booking, make_patient
from tests.queue.test_stream_route import held, wait_released


def open_queues(client, doctors: str, **headers):
    return client.get(f"/api/queue/stream?doctors={doctors}", headers=headers, buffered=False)


def read(response) -> StreamReader:
    assert response.status_code == 200, response.get_data(as_text=True)
    return StreamReader(response, iter(response.response), in_process=True)


def next_event(reader: StreamReader, timeout: float = 5.0):
    """The next event that is not a ping."""
    while True:
        block = reader.next(timeout)
        assert block is not None, "the stream ended"
        if not block.is_ping:
            return block


@pytest.fixture
def doctors(make_user):
    return [make_user("doctor", name=f"Doctor {n}") for n in (1, 2, 3)]


def test_one_connection_carries_every_doctors_snapshot_then_each_change(app, reception, doctors):
    first, second, third = doctors
    reception.post("/api/appointments", json=booking(make_patient(app, "Asha Kumar"), first.id))
    reader = read(open_queues(reception, f"{first.id},{second.id},{third.id}"))
    try:
        opening = [next_event(reader) for _ in doctors]
        snapshots = {json.loads(block.data)["doctor"]["id"]: json.loads(block.data) for block in opening}
        assert set(snapshots) == {first.id, second.id, third.id}
        for block in opening:
            body = json.loads(block.data)
            assert block.event == "queue" and block.id == str(body["version"])
            assert body == reception.get(f"/api/queue/{body['doctor']['id']}").get_json()
        assert [e["patient"]["name"] for e in snapshots[first.id]["entries"]] == ["Asha Kumar"]
        # Each lease counts once in each doctor's topic: each queue is watched.
        assert [held(app, doctor.id) for doctor in doctors] == [(1, 1)] * 3

        reception.post("/api/appointments", json=booking(make_patient(app, "Ravi Shankar"), third.id))
        change = json.loads(next_event(reader).data)
        assert change["doctor"]["id"] == third.id
        assert [e["patient"]["name"] for e in change["entries"]] == ["Ravi Shankar"]
        assert change["version"] > snapshots[third.id]["version"]
    finally:
        reader.close()
    assert [wait_released(app, doctor.id) for doctor in doctors] == [(0, 0)] * 3


def test_display_gets_masked_snapshots(app, reception, display, doctors):
    reception.post("/api/appointments", json=booking(make_patient(app, "Asha Kumar"), doctors[0].id))
    reader = read(open_queues(display, f"{doctors[0].id},{doctors[1].id}"))
    try:
        body = next_event(reader).data + next_event(reader).data
        assert "Asha" not in body and "A.K." in body
    finally:
        reader.close()


def test_counts_once_against_the_account_and_once_per_doctor(app, reception, doctors, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 1)
    ids = ",".join(str(doctor.id) for doctor in doctors)
    reader = read(open_queues(reception, ids))
    try:
        refused = open_queues(reception, ids)
        assert refused.status_code == 429
        assert refused.get_json()["message"].startswith("Too many live streams for this account")
        assert "Retry-After" in refused.headers
    finally:
        reader.close()
    assert [wait_released(app, doctor.id) for doctor in doctors] == [(0, 0)] * 3


def test_a_full_doctor_refuses_the_whole_stream_and_takes_nothing(
    app, reception, as_role, doctors, monkeypatch
):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_DOCTOR", 1)
    first, second, _ = doctors
    other = as_role("reception")
    reader = read(open_queues(other, str(second.id)))
    try:
        refused = open_queues(reception, f"{first.id},{second.id}")
        assert refused.status_code == 429
        assert f"doctor {second.id}" in refused.get_json()["message"]
        assert held(app, first.id) == (0, 0)  # all or nothing
    finally:
        reader.close()


@pytest.mark.parametrize(
    "doctors_param",
    ["", "1,,2", "a", "１", "1;2", "-1", ",".join(str(n) for n in range(1, 102))],
)
def test_bad_doctor_lists_are_422(reception, doctors_param):
    res = reception.get(f"/api/queue/stream?doctors={doctors_param}")
    assert res.status_code == 422, res.get_data(as_text=True)


def test_unknown_doctor_or_parameter(reception, doctors, app):
    res = reception.get(f"/api/queue/stream?doctors={doctors[0].id},999999")
    assert res.status_code == 404
    assert held(app, doctors[0].id) == (0, 0)
    assert reception.get(f"/api/queue/stream?doctors={doctors[0].id}&x=1").status_code == 422
    assert reception.get("/api/queue/stream").status_code == 422


def test_needs_a_token(client, doctors):
    assert client.get(f"/api/queue/stream?doctors={doctors[0].id}").status_code == 401
