"""Billing test data made directly with the models (no other domain's API)."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import pytest

_tokens = itertools.count(1)


@pytest.fixture
def factory(app):
    """Rows for billing tests: patients, appointments and catalogue entries (ids returned)."""
    from hms.appointments.models import ACTIVE_STATUSES, Appointment
    from hms.core.time import clinic_today
    from hms.extensions import db
    from hms.patients.models import Patient
    from hms.reference.models import Category, Medicine, MedicineInstruction, TestType

    class Factory:
        def _add(self, row) -> int:
            with app.app_context():
                db.session.add(row)
                db.session.commit()
                return row.id

        def patient(self, name: str = "Asha Rao") -> int:
            return self._add(Patient(mrn=f"P{next(_tokens):06d}", name=name, gender="female"))

        def appointment(self, patient_id: int, doctor_id: int, status: str = "WAITING") -> int:
            token = next(_tokens)
            with app.app_context():
                today: date = clinic_today()
            return self._add(
                Appointment(
                    patient_id=patient_id,
                    doctor_id=doctor_id,
                    appointment_date=today,
                    appointment_type="NEW",
                    status=status,
                    token=token,
                    queue_position=token if status in ACTIVE_STATUSES else None,
                    created_by_id=doctor_id,
                )
            )

        def category(self, name: str = "Lab") -> int:
            return self._add(Category(name=name))

        def test_type(self, name: str = "CBC", price: str = "250.00") -> int:
            return self._add(TestType(name=name, price=Decimal(price)))

        def medicine(self, name: str = "Paracetamol", price: str = "2.50", **fields) -> int:
            fields.setdefault("strength", "500 mg")
            fields.setdefault("form", "tablet")
            return self._add(Medicine(name=name, unit_price=Decimal(price), **fields))

        def instruction(self, text: str = "After food") -> int:
            return self._add(MedicineInstruction(text=text))

    return Factory()


@pytest.fixture
def patient_id(factory) -> int:
    return factory.patient()


@pytest.fixture
def open_bill(reception, patient_id):
    """open_bill("100.00", "50.00", ...) -> a new bill's JSON (one free line per price)."""

    def make(*prices: str, **fields) -> dict:
        body = {
            "patient_id": fields.pop("patient", patient_id),
            "items": [
                {"description": f"Line {i}", "quantity": 1, "unit_price": p} for i, p in enumerate(prices)
            ],
            **fields,
        }
        res = reception.post("/api/bills", json=body)
        assert res.status_code == 201, res.get_json()
        return res.get_json()

    return make
