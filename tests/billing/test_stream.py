"""GET /api/bills/stream: billing's "bills changed" topic. An event after a booking opens
a bill, after a payment, an item, a refund or a void; none after a change that rolled
back; counted in the account's stream limit and in no doctor's. In process (the test
client) and on a real gunicorn server (two workers sharing PostgreSQL and Redis when
they are configured: a change made through one worker reaches a stream on the other)."""

from __future__ import annotations

import json
import time

import requests

from hms.billing.changes import BILLS_TOPIC
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots
from tests.conftest import token_for
from tests.queue.stream_helpers import StreamReader, booking, make_patient, read_stream
from tests.queue.test_streams import sse_server


def open_bills(client, **headers):
    return client.get("/api/bills/stream", headers=headers, buffered=False)


def read(response) -> StreamReader:
    assert response.status_code == 200, response.get_data(as_text=True)
    return StreamReader(response, iter(response.response), in_process=True)


def next_event(reader: StreamReader, timeout: float = 5.0):
    while True:
        block = reader.next(timeout)
        assert block is not None, "the stream ended"
        if not block.is_ping:
            return block


def no_event(reader: StreamReader, wait: float = 0.4) -> bool:
    """True if nothing but pings arrives within `wait` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            block = reader.next(max(0.01, deadline - time.monotonic()))
        except AssertionError:
            return True
        if block is None or not block.is_ping:
            return False
    return True


def settle(app, reader: StreamReader) -> None:
    """With Redis: wait for this worker's subscriber to connect, and let the resync it asks
    of every open stream go by (the bills topic answers a resync with an event: "read
    again"), so that what follows is the changes' own events."""
    connected = getattr(QueueBroker.get(app), "connected", None)
    if connected is not None:
        assert connected.wait(5)
        while not no_event(reader, 0.5):
            pass


def version(block) -> int:
    body = json.loads(block.data)
    assert block.event == "bills" and block.id == str(body["version"])
    return body["version"]


def test_an_event_after_booking_payment_refund_and_void(app, cashier, reception, admin, make_user):
    doctor = make_user("doctor")
    reader = read(open_bills(cashier))
    try:
        seen = version(next_event(reader))  # the current state, at once
        settle(app, reader)
        res = reception.post("/api/appointments", json=booking(make_patient(app), doctor.id))
        assert res.status_code == 201
        after_booking = version(next_event(reader))
        assert after_booking > seen
        bill = admin.get(f"/api/appointments/{res.get_json()['id']}/bills").get_json()["data"][0]
        assert (
            cashier.post(
                f"/api/bills/{bill['id']}/payments", json={"amount": "100", "method": "CASH"}
            ).status_code
            == 201
        )
        after_payment = version(next_event(reader))
        assert after_payment > after_booking
        assert (
            admin.post(f"/api/bills/{bill['id']}/refunds", json={"amount": "100", "reason": "x"}).status_code
            == 201
        )
        assert version(next_event(reader)) > after_payment
        items = {"items": [{"description": "Dressing", "quantity": 1, "unit_price": "50.00"}]}
        assert admin.post(f"/api/bills/{bill['id']}/items", json=items).status_code == 201
        next_event(reader)
        assert admin.post(f"/api/bills/{bill['id']}/void", json={"reason": "x"}).status_code == 200
        next_event(reader)
        # A refused change (more than due on a void bill) commits nothing and says nothing.
        assert (
            cashier.post(
                f"/api/bills/{bill['id']}/payments", json={"amount": "1", "method": "CASH"}
            ).status_code
            == 409
        )
        assert no_event(reader)
    finally:
        reader.close()


def test_counted_in_the_account_not_in_any_doctor(app, cashier, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 1)
    doctor = make_user("doctor")
    reader = read(open_bills(cashier))
    try:
        next_event(reader)
        assert StreamSlots.get(app).count(f"account:{cashier.user.id}") == 1
        assert StreamSlots.get(app).count(doctor.id) == 0
        assert QueueBroker.get(app).registry.count(BILLS_TOPIC) == 1
        refused = open_bills(cashier)
        assert refused.status_code == 429
        assert refused.get_json()["message"].startswith("Too many live streams for this account")
    finally:
        reader.close()


def test_roles(client, display, doctor):
    assert client.get("/api/bills/stream").status_code == 401
    assert display.get("/api/bills/stream").status_code == 403
    assert display.get("/api/bills/stream?x=1").status_code in (403, 422)


def test_a_real_server_announces_a_booking_and_a_payment(app, database_url, make_user):
    doctor = make_user("doctor")
    cashier = make_user("cashier")
    reception = make_user("reception")
    patient_id = make_patient(app, "Asha Kumar")
    cashier_auth = {"Authorization": f"Bearer {token_for(app, cashier)}"}
    reception_auth = {"Authorization": f"Bearer {token_for(app, reception)}"}
    with sse_server(database_url) as base:
        streams = [
            read_stream(
                requests.get(f"{base}/api/bills/stream", headers=cashier_auth, stream=True, timeout=(5, 30))
            )
            for _ in range(2)  # on two workers, when there are two
        ]
        try:
            firsts = [version(reader.next_event()) for reader in streams]
            time.sleep(0.5)  # the subscribers of both workers are connected
            res = requests.post(
                f"{base}/api/appointments",
                json=booking(patient_id, doctor.id),
                headers=reception_auth,
                timeout=10,
            )
            assert res.status_code == 201, res.text
            committed = time.monotonic()
            booked = []
            for reader, first in zip(streams, firsts, strict=True):
                event = reader.next_event(timeout=3)
                assert event.at - committed < 1.0
                booked.append(version(event))
                assert booked[-1] > first
            bills = requests.get(
                f"{base}/api/appointments/{res.json()['id']}/bills", headers=cashier_auth, timeout=10
            ).json()["data"]
            paid = requests.post(
                f"{base}/api/bills/{bills[0]['id']}/payments",
                json={"amount": "10.00", "method": "CASH"},
                headers=cashier_auth,
                timeout=10,
            )
            assert paid.status_code == 201, paid.text
            for reader, before in zip(streams, booked, strict=True):
                assert version(reader.next_event(timeout=3)) > before
        finally:
            for reader in streams:
                reader.close()
