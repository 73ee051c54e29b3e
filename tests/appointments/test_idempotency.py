"""Idempotency-Key on POST /api/appointments: a retry books nothing new."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import requests
from sqlalchemy import func, select

from tests.appointments.helpers import make_patient, queue_rows
from tests.conftest import requires_postgres

BOOK = "/api/appointments"


def counts(app) -> tuple[int, int, int]:
    """(appointments, bills, events)."""
    from hms.appointments.models import Appointment, AppointmentEvent
    from hms.billing.models import Bill
    from hms.extensions import db

    with app.app_context():
        result = tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Appointment, Bill, AppointmentEvent)
        )
        db.session.remove()
    return result


def test_a_retried_booking_with_its_key_books_once(app, reception, dr, new_patient):
    body = {"patient_id": new_patient(), "doctor_id": dr.id, "appointment_type": "NEW"}
    key = {"Idempotency-Key": "desk-2-booking-9"}
    first = reception.post(BOOK, json=body, headers=key)
    again = reception.post(BOOK, json=body, headers=key)
    assert first.status_code == again.status_code == 201, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert first.get_json()["token"] == 1 and first.get_json()["bill_id"]
    assert counts(app) == (1, 1, 1)
    assert [row["token"] for row in queue_rows(app, dr.id)] == [1]


def test_a_booking_key_reused_with_another_body_is_422(app, reception, dr, new_patient):
    key = {"Idempotency-Key": "k"}
    body = {"patient_id": new_patient(), "doctor_id": dr.id, "appointment_type": "NEW"}
    assert reception.post(BOOK, json=body, headers=key).status_code == 201
    res = reception.post(BOOK, json={**body, "appointment_type": "FOLLOW_UP"}, headers=key)
    assert res.status_code == 422 and "Idempotency-Key" in res.get_json()["errors"]["headers"]
    assert counts(app) == (1, 1, 1)
    # Without a key, or under another one, a second booking is made.
    assert reception.post(BOOK, json=body).get_json()["token"] == 2
    assert reception.post(BOOK, json=body, headers={"Idempotency-Key": "k2"}).get_json()["token"] == 3


def test_a_refused_booking_leaves_its_key_free(app, reception, admin, dr, new_patient):
    key = {"Idempotency-Key": "after-the-fix"}
    body = {"patient_id": 999_999, "doctor_id": dr.id, "appointment_type": "NEW"}
    assert reception.post(BOOK, json=body, headers=key).status_code == 422
    body = {**body, "patient_id": new_patient()}
    res = reception.post(BOOK, json=body, headers=key)
    assert res.status_code == 201 and "Idempotent-Replayed" not in res.headers
    # A replay answers the stored booking even once the doctor stopped booking.
    admin.patch(f"/api/staff/{dr.id}", json={"is_available": False})
    replay = reception.post(BOOK, json=body, headers=key)
    assert replay.status_code == 201 and replay.get_json() == res.get_json()


def test_bad_booking_keys(app, reception, dr, new_patient):
    body = {"patient_id": new_patient(), "doctor_id": dr.id, "appointment_type": "NEW"}
    assert reception.post(BOOK, json=body, headers={"Idempotency-Key": "k" * 256}).status_code == 422
    assert reception.post(BOOK, json=body, headers={"Idempotency-Key": "a\tb"}).status_code == 400
    assert reception.post(BOOK, json=body, headers={"Idempotency-Key": "k" * 255}).status_code == 201
    assert counts(app)[0] == 1


def test_book_appointment_once_is_the_service_behind_it(app, make_user, dr, new_patient):
    from hms.appointments.service import book_appointment_once
    from hms.auth.service import Identity

    user = make_user("reception")
    identity = Identity(user.id, user.username, user.name, user.role, True, 0)
    data = {"patient_id": new_patient(), "doctor_id": dr.id, "appointment_type": "NEW", "priority": "NORMAL"}
    with app.app_context():
        first = book_appointment_once(data, identity, "svc")
        again = book_appointment_once(data, identity, "svc")
        plain = book_appointment_once(data, identity, None)
    assert (first.status, first.replayed, again.replayed, plain.replayed) == (201, False, True, False)
    assert again.body == first.body
    assert (first.body["token"], plain.body["token"]) == (1, 2)
    assert first.body["status"] == "WAITING" and isinstance(first.body["appointment_date"], str)


@requires_postgres
def test_parallel_retries_with_one_key_book_once(app, make_user, live_server):
    desk = make_user("reception", password="parallel-pass-1")
    doctor = make_user("doctor")
    login = requests.post(
        f"{live_server}/api/auth/token",
        json={"username": desk.username, "password": "parallel-pass-1"},
        timeout=10,
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}", "Idempotency-Key": "double-tap"}
    body = {"patient_id": make_patient(app, "Asha Kumar"), "doctor_id": doctor.id, "appointment_type": "NEW"}
    barrier = Barrier(8)

    def send(_):
        barrier.wait(timeout=10)
        return requests.post(f"{live_server}{BOOK}", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))
    assert [res.status_code for res in answers] == [201] * 8, [res.text for res in answers]
    assert len({res.json()["id"] for res in answers}) == 1
    assert sum(res.headers.get("Idempotent-Replayed") == "true" for res in answers) == 7
    assert counts(app) == (1, 1, 1)
    assert [row["token"] for row in queue_rows(app, doctor.id)] == [1]
