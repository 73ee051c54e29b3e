"""Appointments over HTTP: booking, status changes, reads, the queue snapshot and /next."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.appointments.helpers import (
    assert_queue_invariants,
    book,
    book_ok,
    make_categories,
    positions,
    queue_rows,
    set_status,
)

# --- helpers -----------------------------------------------------------------------------


def today(app):
    from hms.core.time import clinic_today

    with app.app_context():
        return clinic_today()


def table_counts(app) -> dict[str, int]:
    """Rows in every table a booking or status change writes, plus the queue versions."""
    from hms.appointments.models import Appointment, AppointmentEvent, QueueDay
    from hms.billing.models import Bill, BillItem
    from hms.extensions import db

    with app.app_context():
        counts = {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Appointment, AppointmentEvent, QueueDay, Bill, BillItem)
        }
        counts["versions"] = sorted(db.session.scalars(select(QueueDay.version)).all())
        counts["statuses"] = sorted(
            db.session.execute(select(Appointment.id, Appointment.status, Appointment.queue_position)).all()
        )
        db.session.remove()
        return counts


def bill_of(app, bill_id: int):
    from hms.billing.models import Bill, BillItem
    from hms.extensions import db

    with app.app_context():
        bill = db.session.get(Bill, bill_id)
        items = db.session.scalars(
            select(BillItem).where(BillItem.bill_id == bill_id).order_by(BillItem.id)
        ).all()
        result = (
            {
                "appointment_id": bill.appointment_id,
                "patient_id": bill.patient_id,
                "total": bill.total_amount,
            },
            [(i.description, i.quantity, i.unit_price, i.amount, i.category_id) for i in items],
        )
        db.session.remove()
        return result


# --- booking -----------------------------------------------------------------------------


def test_booking_answers_the_appointment_and_opens_the_bill(app, reception, dr, new_patient):
    categories = make_categories(app, "Consultation", "Hospital fee", "Lab")
    patient_id = new_patient()
    res = book(reception, patient_id, dr.id, appointment_type="FOLLOW_UP", chief_complaint="Cough")
    assert res.status_code == 201
    body = res.get_json()
    assert body["patient_id"] == patient_id and body["doctor_id"] == dr.id
    assert body["appointment_date"] == today(app).isoformat()
    assert body["appointment_type"] == "FOLLOW_UP"
    assert body["status"] == "WAITING"
    assert (body["token"], body["queue_position"]) == (1, 1)
    assert body["chief_complaint"] == "Cough"
    assert body["created_at"].endswith("+00:00")
    assert isinstance(body["bill_id"], int)

    bill, items = bill_of(app, body["bill_id"])
    assert bill == {"appointment_id": body["id"], "patient_id": patient_id, "total": Decimal("600.00")}
    assert items == [
        ("Consultation fee", 1, Decimal("500.00"), Decimal("500.00"), categories["Consultation"]),
        ("Hospital fee", 1, Decimal("100.00"), Decimal("100.00"), categories["Hospital fee"]),
    ]
    second = book_ok(reception, new_patient("Ravi Das"), dr.id)
    assert (second["token"], second["queue_position"]) == (2, 2)


def test_bill_items_have_no_category_when_the_categories_do_not_exist(app, reception, dr, new_patient):
    body = book_ok(reception, new_patient(), dr.id)
    _, items = bill_of(app, body["bill_id"])
    assert [(item[0], item[4]) for item in items] == [("Consultation fee", None), ("Hospital fee", None)]


def test_created_by_is_the_caller(app, admin, dr, new_patient):
    from hms.appointments.models import Appointment
    from hms.extensions import db

    body = book_ok(admin, new_patient(), dr.id)
    with app.app_context():
        assert db.session.get(Appointment, body["id"]).created_by_id == admin.user.id
    res = book(admin, new_patient(), dr.id, created_by_id=dr.id)
    assert res.status_code == 422


def test_future_dates_have_their_own_tokens(app, reception, dr, new_patient):
    tomorrow = (today(app) + timedelta(days=1)).isoformat()
    book_ok(reception, new_patient(), dr.id)
    booked = book_ok(reception, new_patient(), dr.id, appointment_date=tomorrow)
    assert (booked["appointment_date"], booked["token"], booked["queue_position"]) == (tomorrow, 1, 1)
    assert book_ok(reception, new_patient(), dr.id)["token"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"appointment_date": "2026-13-45"},
        {"appointment_date": "yesterday"},
        {"appointment_date": 20260101},
        {"appointment_type": "URGENT"},
        {"appointment_type": None},
        {"chief_complaint": "x" * 501},
        {"chief_complaint": 42},
        {"patient_id": "1"},
        {"patient_id": 0},
        {"patient_id": 2**31},
        {"patient_id": True},
        {"doctor_id": -5},
        {"doctor_id": 10**20},
        {"token": 7},
        {"status": "COMPLETED"},
        {"queue_position": 1},
    ],
)
def test_bad_booking_input_is_422_and_changes_nothing(app, reception, dr, new_patient, change):
    patient_id = new_patient()
    before = table_counts(app)
    res = book(reception, patient_id, dr.id, **change)
    assert res.status_code == 422, res.get_json()
    assert res.get_json()["code"] == 422
    assert table_counts(app) == before


def test_missing_fields_and_non_json_bodies_are_4xx(app, reception, dr, new_patient):
    before = table_counts(app)
    assert reception.post("/api/appointments", json={"patient_id": new_patient()}).status_code == 422
    assert reception.post("/api/appointments", json=[1, 2]).status_code in (400, 422)
    res = reception.post("/api/appointments", data="{not json", headers={"Content-Type": "application/json"})
    assert res.status_code in (400, 422)
    assert table_counts(app) == before


def test_past_date_unknown_patient_and_non_doctors_are_422(app, reception, dr, make_user, new_patient):
    patient_id = new_patient()
    yesterday = (today(app) - timedelta(days=1)).isoformat()
    far = (today(app) + timedelta(days=400)).isoformat()
    cashier = make_user("cashier")
    retired = make_user("doctor", active=False)
    before = table_counts(app)
    cases = [
        ({"appointment_date": yesterday}, "appointment_date"),
        ({"appointment_date": far}, "appointment_date"),
        ({"patient_id": 999_999}, "patient_id"),
        ({"doctor_id": 999_999}, "doctor_id"),
        ({"doctor_id": cashier.id}, "doctor_id"),
        ({"doctor_id": retired.id}, "doctor_id"),
    ]
    for change, field in cases:
        body = {"patient_id": patient_id, "doctor_id": dr.id, "appointment_type": "NEW", **change}
        res = reception.post("/api/appointments", json=body)
        assert res.status_code == 422, (change, res.get_json())
        assert field in res.get_json()["errors"]["json"]
    assert table_counts(app) == before


def test_unavailable_doctor_is_409_and_changes_nothing(app, reception, make_user, new_patient):
    away = make_user("doctor", is_available=False)
    patient_id = new_patient()
    before = table_counts(app)
    res = book(reception, patient_id, away.id)
    assert res.status_code == 409
    assert table_counts(app) == before


@pytest.mark.parametrize("role", ["doctor", "cashier", "display"])
def test_only_admin_and_reception_book(app, as_role, dr, new_patient, role):
    before = table_counts(app)
    assert book(as_role(role), new_patient(), dr.id).status_code == 403
    assert table_counts(app) == before


def test_booking_needs_a_token(client, dr, new_patient):
    res = client.post("/api/appointments", json={"patient_id": 1, "doctor_id": 1, "appointment_type": "X"})
    assert res.status_code == 401


def test_a_fee_change_is_visible_in_the_next_booking(app, admin, reception, dr, new_patient):
    first = book_ok(reception, new_patient(), dr.id)
    res = admin.patch(f"/api/staff/{dr.id}", json={"consultation_fee": "750.00", "hospital_fee": 120})
    assert res.status_code == 200, res.get_json()
    second = book_ok(reception, new_patient(), dr.id)
    assert bill_of(app, first["bill_id"])[0]["total"] == Decimal("600.00")
    bill, items = bill_of(app, second["bill_id"])
    assert bill["total"] == Decimal("870.00")
    assert [item[2] for item in items] == [Decimal("750.00"), Decimal("120.00")]


# --- status changes ------------------------------------------------------------------------

ALLOWED = {
    ("WAITING", "IN_CONSULTATION"),
    ("WAITING", "CANCELLED"),
    ("WAITING", "NO_SHOW"),
    ("IN_CONSULTATION", "COMPLETED"),
    ("IN_CONSULTATION", "WAITING"),
    ("NO_SHOW", "WAITING"),
}
STATUSES = ("WAITING", "IN_CONSULTATION", "COMPLETED", "CANCELLED", "NO_SHOW")
PATHS = {
    "WAITING": [],
    "IN_CONSULTATION": ["IN_CONSULTATION"],
    "COMPLETED": ["IN_CONSULTATION", "COMPLETED"],
    "CANCELLED": ["CANCELLED"],
    "NO_SHOW": ["NO_SHOW"],
}


@pytest.mark.parametrize("source", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_status_machine(app, reception, dr, new_patient, source, target):
    """Every (from, to) pair: the allowed ones work, every other one is 409 and changes nothing."""
    ahead = book_ok(reception, new_patient("Ahead One"), dr.id)
    subject = book_ok(reception, new_patient("Subject Two"), dr.id)
    behind = book_ok(reception, new_patient("Behind Three"), dr.id)
    for step in PATHS[source]:
        assert set_status(reception, subject["id"], step).status_code == 200
    before = table_counts(app)
    res = set_status(reception, subject["id"], target, reason="because")
    if (source, target) in ALLOWED:
        assert res.status_code == 200, res.get_json()
        assert res.get_json()["status"] == target
        assert table_counts(app)["appointment_events"] == before["appointment_events"] + 1
    else:
        assert res.status_code == 409, res.get_json()
        assert table_counts(app) == before
    rows = assert_queue_invariants(app, dr.id)
    assert {row["id"] for row in rows} == {ahead["id"], subject["id"], behind["id"]}


def test_renumbering_through_a_whole_day(app, reception, dr, new_patient):
    ids = [book_ok(reception, new_patient(f"Patient {n}"), dr.id)["id"] for n in range(1, 6)]
    a, b, c, d, e = ids
    assert positions(app, dr.id) == {a: 1, b: 2, c: 3, d: 4, e: 5}

    assert set_status(reception, b, "CANCELLED").status_code == 200
    assert positions(app, dr.id) == {a: 1, c: 2, d: 3, e: 4}

    # Called into the room out of turn: the room is the head of the line.
    called = set_status(reception, d, "IN_CONSULTATION").get_json()
    assert called["queue_position"] == 1 and called["entry_time"] is not None
    assert positions(app, dr.id) == {d: 1, a: 2, c: 3, e: 4}

    # Sent back for a test: to the end of the line, waiting again from now.
    back = set_status(reception, d, "WAITING", reason="blood test").get_json()
    assert back["queue_position"] == 4
    assert back["waiting_since"] > called["waiting_since"]
    assert positions(app, dr.id) == {a: 1, c: 2, e: 3, d: 4}

    assert set_status(reception, a, "NO_SHOW").status_code == 200
    assert positions(app, dr.id) == {c: 1, e: 2, d: 3}
    late = set_status(reception, a, "WAITING", reason="arrived late").get_json()
    assert late["queue_position"] == 4
    assert positions(app, dr.id) == {c: 1, e: 2, d: 3, a: 4}

    assert set_status(reception, c, "IN_CONSULTATION").status_code == 200
    done = set_status(reception, c, "COMPLETED").get_json()
    assert done["queue_position"] is None and done["exit_time"] is not None
    assert positions(app, dr.id) == {e: 1, d: 2, a: 3}
    rows = assert_queue_invariants(app, dr.id)
    assert [row["token"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["id"] for row in rows] == ids  # tokens never changed


def test_second_patient_into_the_room_is_409(app, reception, dr, new_patient):
    first = book_ok(reception, new_patient(), dr.id)
    second = book_ok(reception, new_patient(), dr.id)
    assert set_status(reception, first["id"], "IN_CONSULTATION").status_code == 200
    before = table_counts(app)
    res = set_status(reception, second["id"], "IN_CONSULTATION")
    assert res.status_code == 409
    assert table_counts(app) == before


def test_doctor_changes_only_own_appointments(app, as_role, reception, dr, make_user, new_patient):
    other = make_user("doctor")
    mine = book_ok(reception, new_patient(), dr.id)
    theirs = book_ok(reception, new_patient(), other.id)
    me = as_role("doctor", user=dr)
    assert set_status(me, mine["id"], "IN_CONSULTATION").status_code == 200
    before = table_counts(app)
    res = set_status(me, theirs["id"], "IN_CONSULTATION")
    assert res.status_code == 403
    assert table_counts(app) == before


@pytest.mark.parametrize("role", ["cashier", "display"])
def test_cashier_and_display_cannot_change_status(app, as_role, reception, dr, new_patient, role):
    booked = book_ok(reception, new_patient(), dr.id)
    before = table_counts(app)
    assert set_status(as_role(role), booked["id"], "CANCELLED").status_code == 403
    assert table_counts(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"status": "DONE"},
        {"status": "waiting"},
        {"status": None},
        {},
        {"status": "CANCELLED", "reason": "x" * 501},
        {"status": "CANCELLED", "extra": 1},
        {"status": "CANCELLED", "queue_position": 1},
    ],
)
def test_bad_status_input_is_422_and_changes_nothing(app, reception, dr, new_patient, body):
    booked = book_ok(reception, new_patient(), dr.id)
    before = table_counts(app)
    res = reception.patch(f"/api/appointments/{booked['id']}/status", json=body)
    assert res.status_code == 422
    assert table_counts(app) == before


def test_status_of_unknown_appointments_is_404(reception):
    assert set_status(reception, 999_999, "CANCELLED").status_code == 404
    assert reception.patch("/api/appointments/0/status", json={"status": "CANCELLED"}).status_code == 404
    assert (
        reception.patch(f"/api/appointments/{2**31}/status", json={"status": "CANCELLED"}).status_code == 404
    )
    assert reception.patch("/api/appointments/abc/status", json={"status": "CANCELLED"}).status_code == 404


# --- events --------------------------------------------------------------------------------


def test_events_tell_the_whole_story(app, as_role, reception, cashier, dr, new_patient):
    me = as_role("doctor", user=dr)
    booked = book_ok(reception, new_patient(), dr.id)
    appointment_id = booked["id"]
    assert set_status(me, appointment_id, "IN_CONSULTATION").status_code == 200
    assert set_status(reception, appointment_id, "WAITING", reason="x-ray first").status_code == 200
    assert set_status(reception, appointment_id, "NO_SHOW", reason="not there").status_code == 200
    assert set_status(reception, appointment_id, "WAITING", reason="back").status_code == 200
    assert me.post(f"/api/queue/{dr.id}/next").status_code == 200
    assert me.post(f"/api/queue/{dr.id}/next").status_code == 409  # nobody waits: nothing recorded
    assert set_status(me, appointment_id, "COMPLETED", reason="done").status_code == 200

    res = cashier.get(f"/api/appointments/{appointment_id}/events")
    assert res.status_code == 200
    body = res.get_json()
    story = [
        (e["event_type"], e["from_status"], e["to_status"], e["performed_by"]["id"], e["description"])
        for e in body["data"]
    ]
    r, d = reception.user.id, dr.id
    assert story == [
        ("CREATED", None, "WAITING", r, "Token 1."),
        ("ENTERED_ROOM", "WAITING", "IN_CONSULTATION", d, None),
        ("RETURNED_TO_QUEUE", "IN_CONSULTATION", "WAITING", r, "x-ray first"),
        ("NO_SHOW", "WAITING", "NO_SHOW", r, "not there"),
        ("RETURNED_TO_QUEUE", "NO_SHOW", "WAITING", r, "back"),
        ("ENTERED_ROOM", "WAITING", "IN_CONSULTATION", d, None),
        ("CONSULTATION_COMPLETED", "IN_CONSULTATION", "COMPLETED", d, "done"),
    ]
    assert body["data"][0]["performed_by"] == {"id": r, "name": reception.user.name}
    assert body["meta"] == {"page": 1, "limit": 20, "total": 7}
    assert set(body["data"][0]) == {
        "id",
        "event_type",
        "from_status",
        "to_status",
        "description",
        "performed_by",
        "performed_at",
    }
    page2 = cashier.get(f"/api/appointments/{appointment_id}/events?page=2&limit=5").get_json()
    assert [e["event_type"] for e in page2["data"]] == ["ENTERED_ROOM", "CONSULTATION_COMPLETED"]


def test_events_errors(reception, display, dr, new_patient):
    booked = book_ok(reception, new_patient(), dr.id)
    assert reception.get("/api/appointments/999999/events").status_code == 404
    assert reception.get(f"/api/appointments/{booked['id']}/events?limit=101").status_code == 422
    assert reception.get(f"/api/appointments/{booked['id']}/events?sort=x").status_code == 422
    assert display.get(f"/api/appointments/{booked['id']}/events").status_code == 403


# --- reads -------------------------------------------------------------------------------


def test_one_appointment_with_patient_and_doctor(app, admin, reception, cashier, make_user, new_patient):
    from hms.extensions import db
    from hms.reference.models import Department

    with app.app_context():
        cardiology = Department(name="Cardiology")
        db.session.add(cardiology)
        db.session.commit()
        department_id = cardiology.id
    heart = make_user("doctor", name="Dr Heart", department_id=department_id)
    plain = make_user("doctor", name="Dr Plain")
    patient_id = new_patient("Asha Kumar", age=34, gender="female")
    booked = book_ok(reception, patient_id, heart.id)
    res = cashier.get(f"/api/appointments/{booked['id']}")
    assert res.status_code == 200
    body = res.get_json()
    assert body["patient"]["id"] == patient_id
    assert {k: body["patient"][k] for k in ("name", "age", "gender")} == {
        "name": "Asha Kumar",
        "age": 34,
        "gender": "female",
    }
    assert body["patient"]["mrn"]
    assert body["doctor"] == {"id": heart.id, "name": "Dr Heart", "department": "Cardiology"}
    assert body["token"] == 1 and body["status"] == "WAITING"
    for absent in ("bills", "events", "prescriptions", "bill_id"):
        assert absent not in body
    other = book_ok(reception, patient_id, plain.id)
    assert reception.get(f"/api/appointments/{other['id']}").get_json()["doctor"]["department"] is None
    assert reception.get("/api/appointments/999999").status_code == 404
    assert reception.get(f"/api/appointments/{2**31}").status_code == 404


def test_list_filters_and_order(app, reception, cashier, display, dr, make_user, new_patient):
    other = make_user("doctor")
    asha, ravi = new_patient("Asha"), new_patient("Ravi")
    tomorrow = (today(app) + timedelta(days=1)).isoformat()
    a1 = book_ok(reception, asha, dr.id)
    a2 = book_ok(reception, ravi, dr.id)
    a3 = book_ok(reception, asha, other.id)
    a4 = book_ok(reception, ravi, dr.id, appointment_date=tomorrow)
    set_status(reception, a2["id"], "CANCELLED")

    def ids(query=""):
        res = cashier.get(f"/api/appointments{query}")
        assert res.status_code == 200, res.get_json()
        return [item["id"] for item in res.get_json()["data"]]

    assert ids() == [a4["id"], a3["id"], a2["id"], a1["id"]]
    assert ids(f"?doctor_id={dr.id}") == [a4["id"], a2["id"], a1["id"]]
    assert ids(f"?patient_id={asha}") == [a3["id"], a1["id"]]
    assert ids("?status=CANCELLED") == [a2["id"]]
    assert ids(f"?date={tomorrow}") == [a4["id"]]
    assert ids(f"?doctor_id={dr.id}&date={today(app).isoformat()}&status=WAITING") == [a1["id"]]
    page = cashier.get("/api/appointments?page=2&limit=3").get_json()
    assert page["meta"] == {"page": 2, "limit": 3, "total": 4}
    assert [item["id"] for item in page["data"]] == [a1["id"]]
    item = page["data"][0]
    assert set(item) == {
        "id",
        "patient_id",
        "doctor_id",
        "appointment_date",
        "appointment_type",
        "priority",
        "status",
        "token",
        "queue_position",
        "chief_complaint",
        "waiting_since",
        "entry_time",
        "exit_time",
        "created_at",
    }
    assert display.get("/api/appointments").status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "?status=DONE",
        "?date=2026-13-45",
        "?doctor_id=abc",
        "?doctor_id=0",
        f"?patient_id={2**31}",
        "?limit=0",
        "?limit=101",
        "?page=0",
        "?sort=token",
        "?q=asha",
    ],
)
def test_bad_list_queries_are_422(reception, query):
    assert reception.get(f"/api/appointments{query}").status_code == 422


def test_patient_appointments_newest_first(app, reception, doctor, dr, make_user, new_patient):
    other = make_user("doctor")
    asha, ravi = new_patient("Asha"), new_patient("Ravi")
    first = book_ok(reception, asha, dr.id)
    book_ok(reception, ravi, dr.id)
    second = book_ok(reception, asha, other.id)
    third = book_ok(reception, asha, dr.id, appointment_date=(today(app) + timedelta(days=2)).isoformat())
    res = doctor.get(f"/api/patients/{asha}/appointments")
    assert res.status_code == 200
    body = res.get_json()
    assert [item["id"] for item in body["data"]] == [third["id"], second["id"], first["id"]]
    assert body["meta"]["total"] == 3
    assert reception.get("/api/patients/999999/appointments").status_code == 404
    assert reception.get(f"/api/patients/{asha}/appointments?status=WAITING").status_code == 422


# --- the queue snapshot --------------------------------------------------------------------


def test_snapshot_shape_and_order(app, reception, doctor, dr, new_patient):
    a = book_ok(reception, new_patient("Asha Kumar"), dr.id)
    b = book_ok(reception, new_patient("Ravi Das"), dr.id)
    c = book_ok(reception, new_patient("Mina Shah"), dr.id)
    set_status(reception, b["id"], "IN_CONSULTATION")
    set_status(reception, c["id"], "CANCELLED")
    res = doctor.get(f"/api/queue/{dr.id}")
    assert res.status_code == 200
    snap = res.get_json()
    assert snap["doctor"] == {"id": dr.id, "name": "Dr Meera Rao", "room": None}
    assert snap["date"] == today(app).isoformat()
    assert snap["waiting_count"] == 1
    assert [(e["appointment_id"], e["queue_position"], e["status"]) for e in snap["entries"]] == [
        (b["id"], 1, "IN_CONSULTATION"),
        (a["id"], 2, "WAITING"),
    ]
    assert snap["in_consultation"] == snap["entries"][0]
    waiting = snap["entries"][1]
    assert waiting["token"] == 1
    assert waiting["patient"]["name"] == "Asha Kumar" and waiting["patient"]["id"] == a["patient_id"]
    assert waiting["patient"]["mrn"]
    assert snap["in_consultation"]["estimated_wait_minutes"] == 0
    assert waiting["estimated_wait_minutes"] == 10  # the default length, the room just started
    assert waiting["waiting_since"] == a["waiting_since"]
    assert snap["version"] >= 5


def test_display_gets_initials_only(app, reception, display, dr, new_patient):
    names = ["Asha Kumar", "Ravi Shankar Das"]
    booked = [book_ok(reception, new_patient(name), dr.id) for name in names]
    set_status(reception, booked[0]["id"], "IN_CONSULTATION")
    res = display.get(f"/api/queue/{dr.id}")
    assert res.status_code == 200
    snap = res.get_json()
    assert [e["patient"] for e in snap["entries"]] == [{"initials": "A.K."}, {"initials": "R.D."}]
    assert snap["in_consultation"]["patient"] == {"initials": "A.K."}
    text = json.dumps(snap)
    for name in names:
        for part in name.split():
            assert part not in text
    for entry in booked:
        assert display_free_mrn(app, entry["patient_id"]) not in text
    assert "mrn" not in text and "patient_id" not in text
    # The unmasked snapshot is cached too: the display still gets the masked one after it.
    assert reception.get(f"/api/queue/{dr.id}").get_json()["entries"][0]["patient"]["name"] == "Asha Kumar"
    assert "Asha" not in json.dumps(display.get(f"/api/queue/{dr.id}").get_json())


def display_free_mrn(app, patient_id: int) -> str:
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


def test_snapshot_is_never_stale_after_a_write(app, reception, cashier, dr, new_patient):
    empty = cashier.get(f"/api/queue/{dr.id}").get_json()
    assert (empty["version"], empty["entries"], empty["in_consultation"]) == (0, [], None)
    first = book_ok(reception, new_patient(), dr.id)
    snap = cashier.get(f"/api/queue/{dr.id}").get_json()
    assert [e["appointment_id"] for e in snap["entries"]] == [first["id"]]
    version = snap["version"]
    assert cashier.get(f"/api/queue/{dr.id}").get_json() == snap  # served from the cache
    second = book_ok(reception, new_patient(), dr.id)
    snap = cashier.get(f"/api/queue/{dr.id}").get_json()
    assert [e["appointment_id"] for e in snap["entries"]] == [first["id"], second["id"]]
    assert snap["version"] > version
    version = snap["version"]
    set_status(reception, first["id"], "CANCELLED")
    snap = cashier.get(f"/api/queue/{dr.id}").get_json()
    assert [e["appointment_id"] for e in snap["entries"]] == [second["id"]]
    assert snap["entries"][0]["queue_position"] == 1
    assert snap["version"] > version
    version = snap["version"]
    reception.post(f"/api/queue/{dr.id}/next")
    snap = cashier.get(f"/api/queue/{dr.id}").get_json()
    assert snap["in_consultation"]["appointment_id"] == second["id"]
    assert snap["version"] > version


def test_snapshot_of_another_date_and_bad_queries(app, reception, dr, new_patient, make_user):
    tomorrow = (today(app) + timedelta(days=1)).isoformat()
    booked = book_ok(reception, new_patient(), dr.id, appointment_date=tomorrow)
    snap = reception.get(f"/api/queue/{dr.id}?date={tomorrow}").get_json()
    assert snap["date"] == tomorrow
    assert [e["appointment_id"] for e in snap["entries"]] == [booked["id"]]
    assert reception.get(f"/api/queue/{dr.id}").get_json()["entries"] == []
    assert reception.get(f"/api/queue/{dr.id}?date=2026-13-45").status_code == 422
    assert reception.get(f"/api/queue/{dr.id}?day=2026-01-01").status_code == 422
    assert reception.get("/api/queue/999999").status_code == 404
    assert reception.get(f"/api/queue/{make_user('cashier').id}").status_code == 404
    assert reception.get(f"/api/queue/{2**31}").status_code == 404


def test_version_keeps_growing_into_a_new_day(app, reception, dr, new_patient):
    book_ok(reception, new_patient(), dr.id)
    book_ok(reception, new_patient(), dr.id)
    today_version = reception.get(f"/api/queue/{dr.id}").get_json()["version"]
    tomorrow = (today(app) + timedelta(days=1)).isoformat()
    book_ok(reception, new_patient(), dr.id, appointment_date=tomorrow)
    assert reception.get(f"/api/queue/{dr.id}?date={tomorrow}").get_json()["version"] > today_version


# --- next ----------------------------------------------------------------------------------


def test_next_completes_the_room_and_calls_the_first_waiting(app, as_role, reception, dr, new_patient):
    me = as_role("doctor", user=dr)
    a = book_ok(reception, new_patient(), dr.id)
    b = book_ok(reception, new_patient(), dr.id)
    c = book_ok(reception, new_patient(), dr.id)
    res = me.post(f"/api/queue/{dr.id}/next")
    assert res.status_code == 200
    snap = res.get_json()
    assert snap["in_consultation"]["appointment_id"] == a["id"]
    assert [e["appointment_id"] for e in snap["entries"]] == [a["id"], b["id"], c["id"]]
    snap = reception.post(f"/api/queue/{dr.id}/next").get_json()
    assert snap["in_consultation"]["appointment_id"] == b["id"]
    assert [(e["appointment_id"], e["queue_position"]) for e in snap["entries"]] == [
        (b["id"], 1),
        (c["id"], 2),
    ]
    rows = {row["id"]: row for row in assert_queue_invariants(app, dr.id)}
    assert rows[a["id"]]["status"] == "COMPLETED" and rows[a["id"]]["exit_time"] is not None
    assert snap["waiting_count"] == 1


def test_next_with_nobody_waiting_is_409_and_changes_nothing(app, reception, dr, new_patient):
    assert reception.post(f"/api/queue/{dr.id}/next").status_code == 409
    assert table_counts(app)["queue_days"] == 0
    a = book_ok(reception, new_patient(), dr.id)
    assert reception.post(f"/api/queue/{dr.id}/next").status_code == 200
    before = table_counts(app)
    res = reception.post(f"/api/queue/{dr.id}/next")
    assert res.status_code == 409
    assert table_counts(app) == before  # the patient in the room was not completed either
    assert queue_rows(app, dr.id)[0]["status"] == "IN_CONSULTATION"
    assert reception.get(f"/api/appointments/{a['id']}").get_json()["status"] == "IN_CONSULTATION"


@pytest.mark.parametrize("role", ["cashier", "display"])
def test_next_roles(app, as_role, reception, dr, new_patient, role):
    book_ok(reception, new_patient(), dr.id)
    before = table_counts(app)
    assert as_role(role).post(f"/api/queue/{dr.id}/next").status_code == 403
    assert table_counts(app) == before


def test_doctor_calls_next_only_on_own_queue(app, as_role, reception, dr, make_user, new_patient):
    other = make_user("doctor")
    book_ok(reception, new_patient(), other.id)
    before = table_counts(app)
    assert as_role("doctor", user=dr).post(f"/api/queue/{other.id}/next").status_code == 403
    assert table_counts(app) == before
    assert as_role("doctor", user=other).post(f"/api/queue/{other.id}/next").status_code == 200


def test_next_on_unknown_doctor_is_404(reception, make_user):
    assert reception.post("/api/queue/999999/next").status_code == 404
    assert reception.post(f"/api/queue/{make_user('reception').id}/next").status_code == 404


def _other_spellings(day) -> list[str]:
    """The same date written as ISO 8601 allows but API.md does not (YYYY-MM-DD only)."""
    year, week, weekday = day.isocalendar()
    fullwidth = day.isoformat().translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    return [f"{year}-W{week:02d}-{weekday}", f"{year}W{week:02d}{weekday}", day.strftime("%Y%m%d"), fullwidth]


def test_dates_are_yyyy_mm_dd_only(app, reception, dr, new_patient):
    tomorrow = today(app) + timedelta(days=1)
    patient_id = new_patient()
    before = table_counts(app)
    for text in _other_spellings(tomorrow):
        res = book(reception, patient_id, dr.id, appointment_date=text)
        assert res.status_code == 422, (text, res.get_json())
        assert "appointment_date" in res.get_json()["errors"]["json"]
        assert reception.get("/api/appointments", query_string={"date": text}).status_code == 422, text
        assert reception.get(f"/api/queue/{dr.id}", query_string={"date": text}).status_code == 422, text
    assert table_counts(app) == before
    assert book(reception, patient_id, dr.id, appointment_date=tomorrow.isoformat()).status_code == 201
