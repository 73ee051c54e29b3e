"""Shared helpers of the appointment and queue tests: patients, bookings, queue state."""

from __future__ import annotations

import itertools
from datetime import date

from sqlalchemy import select

_mrns = itertools.count(1)


def make_patient(app, name: str = "Asha Kumar", **fields) -> int:
    """Create a patient directly in the database; return its id."""
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        fields.setdefault("gender", "female")
        patient = Patient(mrn=f"T{next(_mrns):07d}", name=name, **fields)
        db.session.add(patient)
        db.session.commit()
        return patient.id


def make_categories(app, *names: str) -> dict[str, int]:
    from hms.extensions import db
    from hms.reference.models import Category

    with app.app_context():
        rows = [Category(name=name) for name in names]
        db.session.add_all(rows)
        db.session.commit()
        return {row.name: row.id for row in rows}


def book(client, patient_id: int, doctor_id: int, /, **extra):
    body = {"patient_id": patient_id, "doctor_id": doctor_id, "appointment_type": "NEW", **extra}
    return client.post("/api/appointments", json=body)


def book_ok(client, patient_id: int, doctor_id: int, /, **extra) -> dict:
    res = book(client, patient_id, doctor_id, **extra)
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def set_status(client, appointment_id: int, status: str, **extra):
    return client.patch(f"/api/appointments/{appointment_id}/status", json={"status": status, **extra})


def queue_rows(app, doctor_id: int, day: date | None = None) -> list[dict]:
    """Every appointment of the doctor on the day, read straight from the table, by token."""
    from hms.appointments.models import Appointment
    from hms.core.time import clinic_today
    from hms.extensions import db

    with app.app_context():
        day = day or clinic_today()
        rows = db.session.scalars(
            select(Appointment)
            .where(Appointment.doctor_id == doctor_id, Appointment.appointment_date == day)
            .order_by(Appointment.token)
        ).all()
        result = [
            {
                "id": row.id,
                "token": row.token,
                "status": row.status,
                "queue_position": row.queue_position,
                "entry_time": row.entry_time,
                "exit_time": row.exit_time,
            }
            for row in rows
        ]
        db.session.remove()
        return result


def assert_queue_invariants(app, doctor_id: int, day: date | None = None) -> list[dict]:
    """Tokens 1..N without gaps; active positions exactly 1..K; inactive ones NULL;
    at most one patient in the room. Returns the rows."""
    rows = queue_rows(app, doctor_id, day)
    assert [row["token"] for row in rows] == list(range(1, len(rows) + 1))
    active = [row for row in rows if row["status"] in ("WAITING", "IN_CONSULTATION")]
    assert sorted(row["queue_position"] for row in active) == list(range(1, len(active) + 1))
    assert all(row["queue_position"] is None for row in rows if row not in active)
    assert sum(row["status"] == "IN_CONSULTATION" for row in rows) <= 1
    return rows


def positions(app, doctor_id: int, day: date | None = None) -> dict[int, int]:
    """appointment id -> queue_position, for the active appointments."""
    return {
        row["id"]: row["queue_position"]
        for row in queue_rows(app, doctor_id, day)
        if row["queue_position"] is not None
    }
