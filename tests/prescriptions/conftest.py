"""Prescription test data made directly with the models (no other domain's API)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

_numbers = itertools.count(1)


@pytest.fixture
def rx(app):
    """Rows for prescription tests: patients, appointments, medicines, instructions (ids)."""
    from hms.appointments.models import ACTIVE_STATUSES, Appointment
    from hms.core.time import clinic_today
    from hms.extensions import db
    from hms.patients.models import Patient
    from hms.reference.models import Medicine, MedicineInstruction

    class Rows:
        def _add(self, row) -> int:
            with app.app_context():
                db.session.add(row)
                db.session.commit()
                return row.id

        def patient(self) -> int:
            n = next(_numbers)
            return self._add(Patient(mrn=f"P{n:06d}", name=f"Patient {n}", gender="male"))

        def appointment(
            self, doctor_id: int, status: str = "IN_CONSULTATION", patient_id: int | None = None
        ) -> int:
            token = next(_numbers)
            with app.app_context():
                today = clinic_today()
            return self._add(
                Appointment(
                    patient_id=patient_id or self.patient(),
                    doctor_id=doctor_id,
                    appointment_date=today,
                    appointment_type="NEW",
                    status=status,
                    token=token,
                    queue_position=1 if status in ACTIVE_STATUSES else None,
                    created_by_id=doctor_id,
                )
            )

        def medicine(self, name: str | None = None) -> int:
            n = next(_numbers)
            return self._add(
                Medicine(
                    name=name or f"Medicine {n}",
                    strength=f"{n} mg",
                    form="tablet",
                    generic_name="generic",
                    unit_price=Decimal("1.50"),
                )
            )

        def instruction(self, text: str | None = None) -> int:
            return self._add(MedicineInstruction(text=text or f"Instruction {next(_numbers)}"))

    return Rows()
