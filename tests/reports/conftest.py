"""A clinic day with known numbers, built through the API; then its timestamps are set to
known minutes (the API stamps them with the real clock), straight in the rows.

Today, with CLINIC_TIMEZONE as configured (UTC in the tests):

Dr Anand Iyer (fees 500 + 100): five booked.
  A1 created 08:00, room 08:10, out 08:20  (wait 10, consultation 10)   COMPLETED
  A2 created 08:05, room 08:25, out 08:40  (wait 20, consultation 15)   COMPLETED
  A3 created 08:10, room 08:40, out 09:00  (wait 30, consultation 20)   COMPLETED
  A4 created 08:15, room 09:15             (wait 60)                    IN_CONSULTATION
  A5 created 08:20                                                      CANCELLED (bill void)
Dr Bela Shah (fees 300 + 50): three booked.
  B1 created 08:30                                                      NO_SHOW
  B2 created 09:00, room 09:45, out 10:15  (wait 45, consultation 30)   COMPLETED
  B3 created 09:30                                                      WAITING

Money (every booking opens a bill of the doctor's two fees):
  cashier Chitra Das: A1 600.00 CASH at 10:00, A2 200.00 UPI at 10:05
  cashier Dev Kumar:  A3 600.00 CARD at 10:10, B2 350.00 CASH at 10:20
  admin Asha Menon:   refund 100.00 CASH on A3 at 11:00
Receivables (due dates moved): A2 due in 5 days (not due), A3 today (0–30),
  A4 45 days ago (31–60), B1 75 days ago (61–90), B3 120 days ago (over 90).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import update

ANAND, BELA = "Dr Anand Iyer", "Dr Bela Shah"


@dataclass
class Day:
    day: date
    doctors: dict[str, int]
    cashiers: dict[str, int]
    admin_id: int
    appointments: dict[str, int] = field(default_factory=dict)
    bills: dict[str, int] = field(default_factory=dict)
    clients: dict = field(default_factory=dict)


def at(app, day: date, hhmm: str, days: int = 0) -> datetime:
    """The UTC instant of local time hh:mm on `day` (+ days) in the clinic's zone."""
    from hms.reports.service import day_start

    hours, minutes = map(int, hhmm.split(":"))
    with app.app_context():
        return day_start(day + timedelta(days=days)) + timedelta(hours=hours, minutes=minutes)


def register(client, name: str) -> int:
    res = client.post("/api/patients", json={"name": name, "gender": "female", "age": 40})
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


def book(client, patient_id: int, doctor_id: int) -> dict:
    body = {"patient_id": patient_id, "doctor_id": doctor_id, "appointment_type": "NEW"}
    res = client.post("/api/appointments", json=body)
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def ok(res, status: int = 200) -> dict:
    assert res.status_code == status, res.get_json()
    return res.get_json()


def set_rows(app, model, row_id: int, **values) -> None:
    from hms.extensions import db

    with app.app_context():
        db.session.execute(update(model).where(model.id == row_id).values(**values))
        db.session.commit()


@pytest.fixture
def clinic_day(app, as_role, make_user) -> Day:
    from hms.appointments.models import Appointment
    from hms.billing.models import Bill, Payment
    from hms.core.time import clinic_today

    with app.app_context():
        today = clinic_today()
    anand = make_user("doctor", name=ANAND, consultation_fee="500.00", hospital_fee="100.00")
    bela = make_user("doctor", name=BELA, consultation_fee="300.00", hospital_fee="50.00")
    admin = as_role("admin", name="Asha Menon")
    reception = as_role("reception", name="Rita Front")
    chitra = as_role("cashier", name="Chitra Das")
    dev = as_role("cashier", name="Dev Kumar")
    day = Day(
        today,
        {ANAND: anand.id, BELA: bela.id},
        {"Chitra Das": chitra.user.id, "Dev Kumar": dev.user.id},
        admin.user.id,
        clients={"admin": admin, "reception": reception, "chitra": chitra, "dev": dev},
    )
    for key, doctor in (("A1", anand), ("A2", anand), ("A3", anand), ("A4", anand), ("A5", anand)):
        booked = book(reception, register(reception, f"Patient {key}"), doctor.id)
        day.appointments[key], day.bills[key] = booked["id"], booked["bill_id"]
    for key in ("B1", "B2", "B3"):
        booked = book(reception, register(reception, f"Patient {key}"), bela.id)
        day.appointments[key], day.bills[key] = booked["id"], booked["bill_id"]

    # Dr Anand: call A1..A4 in turn (each call completes the one in the room); cancel A5.
    for _ in range(4):
        ok(admin.post(f"/api/queue/{anand.id}/next"))
    status = "/api/appointments/{}/status"
    ok(reception.patch(status.format(day.appointments["A5"]), json={"status": "CANCELLED"}))
    ok(admin.post(f"/api/bills/{day.bills['A5']}/void", json={"reason": "Visit cancelled"}))
    # Dr Bela: B1 absent, B2 seen and completed, B3 still waiting.
    ok(reception.patch(status.format(day.appointments["B1"]), json={"status": "NO_SHOW"}))
    ok(admin.post(f"/api/queue/{bela.id}/next"))
    ok(admin.patch(status.format(day.appointments["B2"]), json={"status": "COMPLETED"}))

    times = {
        "A1": ("08:00", "08:10", "08:20"),
        "A2": ("08:05", "08:25", "08:40"),
        "A3": ("08:10", "08:40", "09:00"),
        "A4": ("08:15", "09:15", None),
        "A5": ("08:20", None, None),
        "B1": ("08:30", None, None),
        "B2": ("09:00", "09:45", "10:15"),
        "B3": ("09:30", None, None),
    }
    for key, (created, entry, exit_) in times.items():
        set_rows(
            app,
            Appointment,
            day.appointments[key],
            created_at=at(app, today, created),
            waiting_since=at(app, today, created),
            entry_time=entry and at(app, today, entry),
            exit_time=exit_ and at(app, today, exit_),
        )
        set_rows(app, Bill, day.bills[key], created_at=at(app, today, created))

    payments = (
        ("A1", chitra, "600.00", "CASH", "10:00"),
        ("A2", chitra, "200.00", "UPI", "10:05"),
        ("A3", dev, "600.00", "CARD", "10:10"),
        ("B2", dev, "350.00", "CASH", "10:20"),
    )
    for key, cashier, amount, method, hhmm in payments:
        bill = ok(
            cashier.post(f"/api/bills/{day.bills[key]}/payments", json={"amount": amount, "method": method}),
            201,
        )
        set_rows(app, Payment, bill["payments"][-1]["id"], created_at=at(app, today, hhmm))
    refund = {"amount": "100.00", "reason": "Test not done", "method": "CASH"}
    bill = ok(admin.post(f"/api/bills/{day.bills['A3']}/refunds", json=refund), 201)
    set_rows(app, Payment, bill["payments"][-1]["id"], created_at=at(app, today, "11:00"))

    for key, days in (("A2", 5), ("A3", 0), ("A4", -45), ("B1", -75), ("B3", -120)):
        set_rows(app, Bill, day.bills[key], due_date=today + timedelta(days=days))
    return day
