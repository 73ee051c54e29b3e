"""A clinic day through the API: booking, the doctor working the queue with /next, a
patient sent back for a test, a no-show who arrives late, a cancellation, the
waiting-room display, and the event log of each appointment at the end."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from tests.appointments.helpers import (
    assert_queue_invariants,
    book_ok,
    make_categories,
    make_patient,
    set_status,
)


def snapshot_tokens(client, doctor_id: int) -> list[tuple[int, str]]:
    snap = client.get(f"/api/queue/{doctor_id}").get_json()
    return [(entry["token"], entry["status"]) for entry in snap["entries"]]


def test_a_clinic_day(app, as_role, make_user):
    make_categories(app, "Consultation", "Hospital fee")
    rao = make_user("doctor", name="Dr Rao", consultation_fee="400.00", hospital_fee="50.00")
    desk = as_role("reception")
    screen = as_role("display")
    doctor = as_role("doctor", user=rao)
    cashier = as_role("cashier")
    names = ["Asha Kumar", "Ravi Das", "Mina Shah", "Omar Ali", "Lena Roy"]
    booked = {}
    for name in names:
        booked[name] = book_ok(desk, make_patient(app, name), rao.id, chief_complaint="fever")
        assert_queue_invariants(app, rao.id)
    assert [booked[n]["token"] for n in names] == [1, 2, 3, 4, 5]

    # The display shows tokens and initials only.
    shown = screen.get(f"/api/queue/{rao.id}").get_json()
    assert [(e["token"], e["patient"]) for e in shown["entries"]][:2] == [
        (1, {"initials": "A.K."}),
        (2, {"initials": "R.D."}),
    ]
    assert shown["waiting_count"] == 5 and shown["in_consultation"] is None

    # Asha is called in; Ravi is called but absent; the doctor sends Asha for an x-ray.
    assert doctor.post(f"/api/queue/{rao.id}/next").get_json()["in_consultation"]["token"] == 1
    assert set_status(desk, booked["Ravi Das"]["id"], "NO_SHOW", reason="not in the hall").status_code == 200
    assert set_status(doctor, booked["Asha Kumar"]["id"], "WAITING", reason="x-ray").status_code == 200
    assert_queue_invariants(app, rao.id)
    assert snapshot_tokens(cashier, rao.id) == [
        (3, "WAITING"),
        (4, "WAITING"),
        (5, "WAITING"),
        (1, "WAITING"),
    ]

    # Mina, then Omar; Lena cancels; Ravi turns up late; Asha is back from the x-ray.
    assert doctor.post(f"/api/queue/{rao.id}/next").get_json()["in_consultation"]["token"] == 3
    assert set_status(desk, booked["Lena Roy"]["id"], "CANCELLED", reason="went home").status_code == 200
    assert set_status(desk, booked["Ravi Das"]["id"], "WAITING", reason="arrived late").status_code == 200
    snap = doctor.post(f"/api/queue/{rao.id}/next").get_json()
    assert snap["in_consultation"]["token"] == 4
    assert [(e["token"], e["queue_position"]) for e in snap["entries"]] == [(4, 1), (1, 2), (2, 3)]
    assert_queue_invariants(app, rao.id)
    assert doctor.post(f"/api/queue/{rao.id}/next").get_json()["in_consultation"]["token"] == 1
    assert doctor.post(f"/api/queue/{rao.id}/next").get_json()["in_consultation"]["token"] == 2
    assert doctor.post(f"/api/queue/{rao.id}/next").status_code == 409  # nobody left waiting
    assert set_status(doctor, booked["Ravi Das"]["id"], "COMPLETED").status_code == 200
    final = screen.get(f"/api/queue/{rao.id}").get_json()
    assert (final["entries"], final["waiting_count"], final["in_consultation"]) == ([], 0, None)

    rows = assert_queue_invariants(app, rao.id)
    assert [row["status"] for row in rows] == [
        "COMPLETED",
        "COMPLETED",
        "COMPLETED",
        "COMPLETED",
        "CANCELLED",
    ]

    # The event log tells each patient's day.
    def story(name):
        events = cashier.get(f"/api/appointments/{booked[name]['id']}/events").get_json()["data"]
        return [(e["event_type"], e["performed_by"]["id"]) for e in events]

    d, r = rao.id, desk.user.id
    assert story("Asha Kumar") == [
        ("CREATED", r),
        ("ENTERED_ROOM", d),
        ("RETURNED_TO_QUEUE", d),
        ("ENTERED_ROOM", d),
        ("CONSULTATION_COMPLETED", d),
    ]
    assert story("Ravi Das") == [
        ("CREATED", r),
        ("NO_SHOW", r),
        ("RETURNED_TO_QUEUE", r),
        ("ENTERED_ROOM", d),
        ("CONSULTATION_COMPLETED", d),
    ]
    assert story("Lena Roy") == [("CREATED", r), ("APPOINTMENT_CANCELLED", r)]

    # Every booking opened one bill of 400 + 50.
    from hms.billing.models import Bill
    from hms.extensions import db

    with app.app_context():
        totals = db.session.scalars(select(Bill.total_amount).order_by(Bill.id)).all()
    assert totals == [Decimal("450.00")] * 5
