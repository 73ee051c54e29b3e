"""Fixtures of the core tests: `world`, one of everything, made through the API."""

from __future__ import annotations

import pytest


@pytest.fixture
def world(app, admin, as_role, make_user):
    """One of everything, made through the API, so that a write's ids all exist: (ids, clients).

    The appointment is IN_CONSULTATION (a prescription can be written), its bill unpaid;
    a second bill is paid in full; the doctor has written one prescription."""
    ids = {}

    def create(path, body, client=admin):
        res = client.post(path, json=body)
        assert res.status_code == 201, (path, res.get_json())
        return res.get_json()

    reception = as_role("reception")
    ids["department_id"] = create("/api/departments", {"name": "Medicine"})["id"]
    ids["specialization_id"] = create("/api/specializations", {"name": "Cardiology"})["id"]
    ids["test_type_id"] = create("/api/test-types", {"name": "CBC", "price": "250.00"})["id"]
    ids["medicine_id"] = create("/api/medicines", {"name": "Paracetamol", "unit_price": "2.50"})["id"]
    ids["instruction_id"] = create("/api/medicine-instructions", {"text": "After food"})["id"]
    ids["category_id"] = create("/api/categories", {"name": "Lab"})["id"]
    doctor_user = make_user("doctor", name="Dr Meera Rao")
    ids["doctor_id"] = doctor_user.id
    ids["patient_id"] = create("/api/patients", {"name": "Asha Rao", "gender": "female"}, reception)["id"]
    booked = create(
        "/api/appointments",
        {"patient_id": ids["patient_id"], "doctor_id": ids["doctor_id"], "appointment_type": "NEW"},
        reception,
    )
    ids["appointment_id"], ids["bill_id"] = booked["id"], booked["bill_id"]
    res = reception.patch(f"/api/appointments/{booked['id']}/status", json={"status": "IN_CONSULTATION"})
    assert res.status_code == 200, res.get_json()
    paid = create(
        "/api/bills", {"patient_id": ids["patient_id"], "items": [{"description": "X", "unit_price": "5.00"}]}
    )
    ids["paid_bill_id"] = paid["id"]
    create(f"/api/bills/{paid['id']}/payments", {"amount": "5.00", "method": "CASH"})
    doctor = as_role("doctor", user=doctor_user)
    items = [
        {
            "medicine_id": ids["medicine_id"],
            "dosage": "1 tab",
            "frequency": "daily",
            "duration_days": 3,
            "quantity": 3,
        }
    ]
    ids["prescription_id"] = create(
        f"/api/appointments/{booked['id']}/prescriptions", {"items": items}, doctor
    )["id"]
    clients = {"admin": admin, "reception": reception, "doctor": doctor}
    return ids, clients
