"""Prescriptions through the HTTP API: who may write them, when, and how they read back."""

from __future__ import annotations

import pytest

from hms.core.roles import ROLES


def item(medicine_id: int, **fields) -> dict:
    return {
        "medicine_id": medicine_id,
        "dosage": "1 tablet",
        "frequency": "twice a day",
        "duration_days": 5,
        "quantity": 10,
        **fields,
    }


def stored(app) -> tuple[int, int, list[str]]:
    """(prescriptions, prescription items, appointment event types) in the database."""
    from sqlalchemy import func, select

    from hms.appointments.models import AppointmentEvent
    from hms.extensions import db
    from hms.prescriptions.models import Prescription, PrescriptionItem

    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(Prescription)),
            db.session.scalar(select(func.count()).select_from(PrescriptionItem)),
            list(db.session.scalars(select(AppointmentEvent.event_type).order_by(AppointmentEvent.id))),
        )


def test_doctor_writes_a_prescription(app, doctor, rx):
    patient = rx.patient()
    appointment = rx.appointment(doctor.user.id, patient_id=patient)
    medicine = rx.medicine("Ibuprofen")
    other_medicine = rx.medicine()
    instruction = rx.instruction("After food")
    res = doctor.post(
        f"/api/appointments/{appointment}/prescriptions",
        json={
            "notes": "Rest and fluids",
            "items": [item(medicine, instruction_id=instruction), item(other_medicine, instruction_id=None)],
        },
    )
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body["appointment_id"] == appointment
    assert body["doctor_id"] == doctor.user.id
    assert body["patient_id"] == patient
    assert body["notes"] == "Rest and fluids"
    assert body["created_at"].endswith("+00:00")
    first, second = body["items"]
    assert first["medicine"]["name"] == "Ibuprofen"
    assert set(first["medicine"]) == {"id", "name", "strength", "form"}
    assert first["instruction"] == {"id": instruction, "text": "After food"}
    assert (first["dosage"], first["frequency"], first["duration_days"], first["quantity"]) == (
        "1 tablet",
        "twice a day",
        5,
        10,
    )
    assert second["instruction"] is None
    assert doctor.get(f"/api/prescriptions/{body['id']}").get_json() == body
    assert stored(app) == (1, 2, ["PRESCRIPTION_ADDED"])


def test_completed_appointments_take_prescriptions(doctor, rx):
    appointment = rx.appointment(doctor.user.id, status="COMPLETED")
    res = doctor.post(f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]})
    assert res.status_code == 201
    assert res.get_json()["notes"] is None


@pytest.mark.parametrize("status", ["WAITING", "CANCELLED", "NO_SHOW"])
def test_other_statuses_are_409(app, doctor, rx, status):
    appointment = rx.appointment(doctor.user.id, status=status)
    res = doctor.post(f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]})
    assert res.status_code == 409
    assert stored(app) == (0, 0, [])


def test_only_the_appointments_own_doctor_may_prescribe(app, as_role, rx):
    own = as_role("doctor")
    other = as_role("doctor")
    appointment = rx.appointment(own.user.id)
    res = other.post(f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]})
    assert res.status_code == 403
    assert stored(app) == (0, 0, [])


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"doctor"}))
def test_other_roles_may_not_prescribe(app, as_role, doctor, rx, role):
    appointment = rx.appointment(doctor.user.id)
    res = as_role(role).post(
        f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]}
    )
    assert res.status_code == 403
    assert stored(app) == (0, 0, [])


def test_display_may_not_read_prescriptions(as_role, doctor, rx):
    appointment = rx.appointment(doctor.user.id)
    created = doctor.post(
        f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]}
    )
    display = as_role("display")
    assert display.get(f"/api/prescriptions/{created.get_json()['id']}").status_code == 403
    assert display.get(f"/api/appointments/{appointment}/prescriptions").status_code == 403


@pytest.mark.parametrize("role", ["admin", "reception", "doctor", "cashier"])
def test_staff_read_prescriptions(as_role, doctor, rx, role):
    appointment = rx.appointment(doctor.user.id)
    created = doctor.post(
        f"/api/appointments/{appointment}/prescriptions", json={"items": [item(rx.medicine())]}
    )
    reader = as_role(role)
    assert reader.get(f"/api/prescriptions/{created.get_json()['id']}").get_json() == created.get_json()
    listed = reader.get(f"/api/appointments/{appointment}/prescriptions").get_json()
    assert listed == {"data": [created.get_json()], "meta": {"page": 1, "limit": 20, "total": 1}}


def test_routes_need_a_token(client):
    assert client.get("/api/prescriptions/1").status_code == 401
    assert client.get("/api/appointments/1/prescriptions").status_code == 401
    assert client.post("/api/appointments/1/prescriptions", json={"x": 1}).status_code == 401


def test_unknown_ids_are_404(doctor, rx):
    assert doctor.get("/api/prescriptions/999").status_code == 404
    assert doctor.get("/api/prescriptions/abc").status_code == 404
    assert doctor.get("/api/appointments/999/prescriptions").status_code == 404
    res = doctor.post("/api/appointments/999/prescriptions", json={"items": [item(rx.medicine())]})
    assert res.status_code == 404


def test_invalid_prescriptions_are_422_and_store_nothing(app, doctor, rx):
    appointment = rx.appointment(doctor.user.id)
    medicine = rx.medicine()
    bodies = [
        {"items": [item(999999)]},
        {"items": [item(medicine, instruction_id=999999)]},
        {"items": [item(medicine), item(999999)]},
        {"items": []},
        {"items": [item(medicine)] * 51},
        {},
        {"items": [item(medicine, duration_days=0)]},
        {"items": [item(medicine, duration_days=366)]},
        {"items": [item(medicine, duration_days="5")]},
        {"items": [item(medicine, quantity=0)]},
        {"items": [item(medicine, quantity=10001)]},
        {"items": [item(medicine, quantity=True)]},
        {"items": [item(medicine, dosage="")]},
        {"items": [item(medicine, dosage="d" * 61)]},
        {"items": [item(medicine, frequency="f" * 61)]},
        {"items": [{k: v for k, v in item(medicine).items() if k != "frequency"}]},
        {"items": [{**item(medicine), "medicine_id": "1"}]},
        {"items": [{**item(medicine), "medicine_id": 2**31}]},
        {"items": [item(medicine, colour="red")]},
        {"items": [item(medicine)], "notes": "n" * 2001},
        {"items": [item(medicine)], "doctor_id": 1},
        {"items": "none"},
    ]
    for body in bodies:
        res = doctor.post(f"/api/appointments/{appointment}/prescriptions", json=body)
        assert res.status_code == 422, (body, res.get_json())
    assert stored(app) == (0, 0, [])


def test_list_is_empty_then_paginated_in_writing_order(doctor, rx):
    appointment = rx.appointment(doctor.user.id)
    url = f"/api/appointments/{appointment}/prescriptions"
    assert doctor.get(url).get_json() == {"data": [], "meta": {"page": 1, "limit": 20, "total": 0}}
    ids = [doctor.post(url, json={"items": [item(rx.medicine())]}).get_json()["id"] for _ in range(3)]
    page = doctor.get(f"{url}?limit=2&page=2").get_json()
    assert page["meta"] == {"page": 2, "limit": 2, "total": 3}
    assert [p["id"] for p in page["data"]] == ids[2:]
    assert [p["id"] for p in doctor.get(url).get_json()["data"]] == ids
    for query in ("?limit=0", "?limit=101", "?page=0", "?sort=id"):
        assert doctor.get(url + query).status_code == 422


def test_reads_take_the_same_statements_for_1_or_30_items(doctor, rx, count_queries):
    appointment = rx.appointment(doctor.user.id)
    url = f"/api/appointments/{appointment}/prescriptions"
    instruction = rx.instruction()
    small = doctor.post(url, json={"items": [item(rx.medicine(), instruction_id=instruction)]}).get_json()
    medicines = [rx.medicine() for _ in range(30)]
    big = doctor.post(
        url,
        json={
            "items": [item(m, instruction_id=instruction if i % 2 else None) for i, m in enumerate(medicines)]
        },
    ).get_json()
    assert len(big["items"]) == 30

    def statements(path: str) -> int:
        doctor.get(path)  # warm the identity cache
        with count_queries() as counter:
            assert doctor.get(path).status_code == 200
        return counter.count

    assert (
        statements(f"/api/prescriptions/{small['id']}") == statements(f"/api/prescriptions/{big['id']}") <= 3
    )
    other = rx.appointment(doctor.user.id)
    doctor.post(f"/api/appointments/{other}/prescriptions", json={"items": [item(rx.medicine())]})
    assert statements(f"/api/appointments/{other}/prescriptions") == statements(url) <= 5
