"""bench.lib.clinic_day, the scenario the day replay and the Locust file drive: a
patient's day through the API of a real app (Flask's test client), the outcomes a shared
clinic calls benign, and a display's stream read from a live server."""

from __future__ import annotations

import random
import time

import pytest

from bench.lib import clinic_day
from bench.lib.http import Answer, Http, host_and_port
from tests.conftest import token_for


class TestClient:
    """clinic_day's Client on Flask's test client, acting as one role; keeps every answer."""

    __test__ = False  # not a test class

    def __init__(self, role_client):
        self.role_client = role_client
        self.answers: list[tuple[str, Answer]] = []

    def call(self, step, path, body=None, headers=None, valid=None) -> Answer | None:
        started = time.monotonic()
        response = self.role_client.open(step.method, path, json=body, headers=headers or {})
        answer = Answer(
            response.status_code, response.get_json(silent=True), started, time.monotonic() - started
        )
        self.answers.append((step.name, answer))
        return answer if clinic_day.judge(step, answer, valid) else None


@pytest.fixture
def clinic(admin, as_role):
    """Fee categories, a medicine, a doctor (500 + 100), and the scenario's clients per role."""
    for name in ("Consultation", "Hospital fee"):
        assert admin.post("/api/categories", json={"name": name}).status_code == 201
    medicine = admin.post("/api/medicines", json={"name": "Paracetamol", "unit_price": "2.00"}).get_json()
    doctor = as_role("doctor")
    return {
        "reception": TestClient(as_role("reception")),
        "doctor": TestClient(doctor),
        "cashier": TestClient(as_role("cashier")),
        "doctor_id": doctor.user.id,
        "medicine_id": medicine["id"],
    }


def _book_one(clinic: dict, number: int = 1) -> dict:
    reception = clinic["reception"]
    patient = clinic_day.register(reception, clinic_day.patient_body(random.Random(number), number))
    assert patient is not None, reception.answers[-1]
    appointment = clinic_day.book(reception, patient.data["id"], clinic["doctor_id"])
    assert appointment is not None, reception.answers[-1]
    return appointment.data


def test_a_patient_goes_through_the_day(clinic):
    reception, doctor_id = clinic["reception"], clinic["doctor_id"]
    assert clinic_day.waiting_count(reception, doctor_id) == 0
    appointment = _book_one(clinic)
    assert (appointment["status"], appointment["token"]) == ("WAITING", 1)
    assert clinic_day.waiting_count(reception, doctor_id) == 1
    patient = next(answer.data for name, answer in reception.answers if name == "register")
    found = clinic_day.search(reception, patient["mrn"])
    assert [row["id"] for row in found.data["data"]] == [patient["id"]]

    prescribed = clinic_day.prescription(clinic["medicine_id"])
    visit = clinic_day.see_next_patient(clinic["doctor"], doctor_id, prescribed)
    assert visit.appointment_id == appointment["id"] and visit.token == 1 and visit.version > 0
    assert visit.prescribed.data["appointment_id"] == appointment["id"]
    assert visit.completed.data["status"] == "COMPLETED"

    cashier = clinic["cashier"]
    assert [bill["id"] for bill in clinic_day.unpaid_bills(cashier)] == [appointment["bill_id"]]
    paid = clinic_day.pay(cashier, appointment["bill_id"], "600.00", "UPI", "front desk")
    assert (paid.data["status"], paid.data["due_amount"], paid.data["paid_amount"]) == (
        "PAID",
        "0.00",
        "600.00",
    )
    assert clinic_day.unpaid_bills(cashier) == []
    # Every step of the day answered what a success answers.
    assert all(
        clinic_day.judge(step_of(name), answer) for name, answer in reception.answers + cashier.answers
    )


def step_of(name: str) -> clinic_day.Step:
    steps = (clinic_day.REGISTER, clinic_day.SEARCH, clinic_day.QUEUE, clinic_day.BOOK, clinic_day.NEXT,
             clinic_day.PRESCRIBE, clinic_day.COMPLETE, clinic_day.UNPAID_BILLS, clinic_day.PAY)  # fmt: skip
    return next(step for step in steps if step.name == name)


def test_nobody_waiting_and_a_bill_paid_first_are_benign_not_successes(clinic):
    doctor = clinic["doctor"]
    assert clinic_day.call_next(doctor, clinic["doctor_id"]) is None
    name, answer = doctor.answers[-1]
    assert (name, answer.status) == ("next", 409)
    assert clinic_day.benign(clinic_day.NEXT, answer).label == "nobody waiting"

    bill_id = _book_one(clinic)["bill_id"]
    cashier = clinic["cashier"]
    assert clinic_day.pay(cashier, bill_id, "600.00") is not None
    assert clinic_day.pay(cashier, bill_id, "600.00") is None  # a new Idempotency-Key: a second payment
    answer = cashier.answers[-1][1]
    assert (
        answer.status == 422
        and clinic_day.benign(clinic_day.PAY, answer).label == "paid first by another desk"
    )
    # Another failure of the same step is no benign outcome.
    assert (
        clinic_day.benign(clinic_day.PAY, Answer(422, {"message": "amount: not a number"}, 0.0, 0.0)) is None
    )


def test_a_success_needs_the_promised_body_not_only_the_status():
    booked = Answer(201, {"status": "WAITING", "bill_id": 4}, 0.0, 0.0)
    assert clinic_day.judge(clinic_day.BOOK, booked)
    assert not clinic_day.judge(
        clinic_day.BOOK, Answer(201, {"status": "WAITING", "bill_id": None}, 0.0, 0.0)
    )
    assert not clinic_day.judge(clinic_day.BOOK, Answer(201, {"status": "WAITING"}, 0.0, 0.0))
    assert not clinic_day.judge(clinic_day.BOOK, Answer(200, booked.data, 0.0, 0.0))
    prescribed = Answer(201, {"appointment_id": 3}, 0.0, 0.0)
    assert not clinic_day.judge(clinic_day.PRESCRIBE, prescribed, valid=lambda d: d["appointment_id"] == 2)


class OverHttp:
    """clinic_day's Client over real HTTP (bench.lib.http), as the day replay's is."""

    def __init__(self, base_url: str, token: str):
        self.http = Http.to(base_url, token)

    def call(self, step, path, body=None, headers=None, valid=None) -> Answer | None:
        answer = self.http.request(step.method, path, body, headers)
        return answer if clinic_day.judge(step, answer, valid) else None


def test_a_display_receives_each_new_snapshot_masked(clinic, live_server, as_role, app):
    host, port = host_and_port(live_server)
    display, reception = (token_for(app, as_role(role).user) for role in ("display", "reception"))
    over_http = OverHttp(live_server, reception)
    stream = clinic_day.open_display(host, port, clinic["doctor_id"], display, timeout=20)
    try:
        snapshots = clinic_day.snapshots(stream)
        _, first_version, data = next(snapshots)
        assert clinic_day.read_snapshot(data, first_version)["entries"] == []
        patient = clinic_day.register(over_http, clinic_day.patient_body(random.Random(1)))
        assert clinic_day.book(over_http, patient.data["id"], clinic["doctor_id"]) is not None
        _, version, data = next(snapshots)
        snapshot = clinic_day.read_snapshot(data, version)
        assert version > first_version and len(snapshot["entries"]) == 1
        assert not clinic_day.shows_identity(snapshot)
    finally:
        stream.close()
        over_http.http.close()
    with pytest.raises(ValueError, match="carries snapshot version"):
        clinic_day.read_snapshot(data, version + 1)
