"""Bills, items, payments, refunds and voids through the HTTP API."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from hms.core.roles import ROLES


def bill_count(client) -> int:
    return client.get("/api/bills").get_json()["meta"]["total"]


def payment_rows(app) -> int:
    from sqlalchemy import func, select

    from hms.billing.models import Payment
    from hms.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Payment))


def events_of(app, appointment_id: int) -> list[str]:
    from sqlalchemy import select

    from hms.appointments.models import AppointmentEvent
    from hms.extensions import db

    with app.app_context():
        return list(
            db.session.scalars(
                select(AppointmentEvent.event_type)
                .where(AppointmentEvent.appointment_id == appointment_id)
                .order_by(AppointmentEvent.id)
            )
        )


# ---- creating bills ------------------------------------------------------------------


def test_create_bill_with_free_lines(reception, patient_id):
    from datetime import date

    res = reception.post(
        "/api/bills",
        json={
            "patient_id": patient_id,
            "items": [
                {"description": "Dressing", "quantity": 3, "unit_price": "40.50"},
                {"description": "Injection", "quantity": 1, "unit_price": 120},
            ],
        },
    )
    assert res.status_code == 201
    bill = res.get_json()
    assert re.fullmatch(rf"B-{date.today().year}-000001", bill["number"])
    assert bill["patient_id"] == patient_id
    assert bill["appointment_id"] is None
    assert bill["status"] == "UNPAID"
    assert (bill["total_amount"], bill["paid_amount"], bill["due_amount"]) == ("241.50", "0.00", "241.50")
    assert bill["due_date"] == date.today().isoformat()
    assert bill["payments"] == []
    assert [(i["description"], i["quantity"], i["unit_price"], i["amount"]) for i in bill["items"]] == [
        ("Dressing", 3, "40.50", "121.50"),
        ("Injection", 1, "120.00", "120.00"),
    ]
    assert bill["created_at"].endswith("+00:00")
    assert reception.get(f"/api/bills/{bill['id']}").get_json() == bill


def test_bill_numbers_are_sequential(open_bill):
    numbers = [open_bill("1.00")["number"] for _ in range(3)]
    assert [n[-6:] for n in numbers] == ["000001", "000002", "000003"]


def test_catalogue_lines_take_name_and_price_from_the_catalogue(cashier, patient_id, factory):
    category = factory.category("Pharmacy")
    test_type = factory.test_type("Lipid profile", "650.00")
    medicine = factory.medicine("Amoxicillin", "12.25", strength="250 mg", form="capsule")
    res = cashier.post(
        "/api/bills",
        json={
            "patient_id": patient_id,
            "due_date": None,
            "items": [
                {"test_type_id": test_type},
                {"medicine_id": medicine, "quantity": 10, "category_id": category},
            ],
        },
    )
    assert res.status_code == 201, res.get_json()
    items = res.get_json()["items"]
    assert [
        (i["description"], i["quantity"], i["unit_price"], i["amount"], i["category_id"]) for i in items
    ] == [
        ("Lipid profile", 1, "650.00", "650.00", None),
        ("Amoxicillin 250 mg capsule", 10, "12.25", "122.50", category),
    ]
    assert res.get_json()["total_amount"] == "772.50"


def test_bill_for_an_appointment_and_due_date(app, admin, factory, doctor):
    patient = factory.patient()
    appointment = factory.appointment(patient, doctor.user.id)
    from hms.core.time import clinic_today

    with app.app_context():
        due = (clinic_today() + timedelta(days=7)).isoformat()
    res = admin.post(
        "/api/bills",
        json={
            "patient_id": patient,
            "appointment_id": appointment,
            "due_date": due,
            "items": [{"description": "X-ray", "quantity": 1, "unit_price": "300"}],
        },
    )
    assert res.status_code == 201
    assert res.get_json()["appointment_id"] == appointment
    assert res.get_json()["due_date"] == due


def invalid_bill_bodies(patient_id, other_patient_appointment):
    line = {"description": "X", "quantity": 1, "unit_price": "1.00"}
    return [
        {"patient_id": 999999, "items": [line]},
        {"patient_id": patient_id, "appointment_id": 999999, "items": [line]},
        {"patient_id": patient_id, "appointment_id": other_patient_appointment, "items": [line]},
        {"patient_id": patient_id, "items": [{**line, "category_id": 999999}]},
        {"patient_id": patient_id, "items": [{"test_type_id": 999999}]},
        {"patient_id": patient_id, "items": [{"medicine_id": 999999}]},
        {"patient_id": patient_id, "items": []},
        {"patient_id": patient_id, "items": [line] * 101},
        {"patient_id": patient_id, "items": [{**line, "quantity": 0}]},
        {"patient_id": patient_id, "items": [{**line, "quantity": 10001}]},
        {"patient_id": patient_id, "items": [{**line, "quantity": "2"}]},
        {"patient_id": patient_id, "items": [{**line, "quantity": True}]},
        {"patient_id": patient_id, "items": [{**line, "quantity": 1.5}]},
        {"patient_id": True, "items": [line]},
        {"patient_id": patient_id, "items": [{"quantity": 1, "unit_price": "1.00"}]},
        {"patient_id": patient_id, "items": [{"description": "   ", "quantity": 1, "unit_price": "1.00"}]},
        {"patient_id": patient_id, "items": [{"description": "X", "quantity": 1}]},
        {"patient_id": patient_id, "items": [{**line, "unit_price": "-1.00"}]},
        {"patient_id": patient_id, "items": [{**line, "unit_price": "1.001"}]},
        {"patient_id": patient_id, "items": [{**line, "description": "x" * 201}]},
        {"patient_id": patient_id, "items": [{**line, "test_type_id": 1}]},
        {"patient_id": patient_id, "items": [{"test_type_id": 1, "medicine_id": 1}]},
        {"patient_id": patient_id, "items": [{**line, "unit_price": "9999999999.99", "quantity": 2}]},
        {"patient_id": patient_id, "items": [{**line, "unit_price": "9999999999.99"}, line]},
        {"patient_id": patient_id, "items": [line], "due_date": "2000-01-01"},
        {"patient_id": patient_id, "items": [line], "due_date": "tomorrow"},
        {"patient_id": patient_id, "items": [line], "surprise": 1},
        {"patient_id": "1", "items": [line]},
        {"patient_id": 2**31, "items": [line]},
        {"items": [line]},
        {"patient_id": patient_id, "items": "nope"},
    ]


def test_invalid_bills_are_422_and_create_nothing(reception, factory, doctor, patient_id):
    other = factory.patient("Other")
    other_appointment = factory.appointment(other, doctor.user.id)
    for body in invalid_bill_bodies(patient_id, other_appointment):
        res = reception.post("/api/bills", json=body)
        assert res.status_code == 422, (body, res.get_json())
        assert res.get_json()["code"] == 422
    assert bill_count(reception) == 0
    # No bill number was used up by the failures.
    ok = reception.post(
        "/api/bills",
        json={"patient_id": patient_id, "items": [{"description": "X", "quantity": 1, "unit_price": "1"}]},
    )
    assert ok.get_json()["number"].endswith("-000001")


def test_malformed_json_is_400(reception):
    res = reception.post("/api/bills", data="{nope", content_type="application/json")
    assert res.status_code == 400


def test_doctor_bills_only_own_appointments(as_role, factory, patient_id):
    doctor = as_role("doctor")
    colleague = as_role("doctor")
    own = factory.appointment(patient_id, doctor.user.id)
    theirs = factory.appointment(patient_id, colleague.user.id)
    line = [{"description": "Procedure", "quantity": 1, "unit_price": "80"}]
    res = doctor.post("/api/bills", json={"patient_id": patient_id, "appointment_id": own, "items": line})
    assert res.status_code == 201
    own_bill = res.get_json()["id"]
    res = doctor.post("/api/bills", json={"patient_id": patient_id, "appointment_id": theirs, "items": line})
    assert res.status_code == 403
    res = doctor.post("/api/bills", json={"patient_id": patient_id, "items": line})
    assert res.status_code == 422
    assert "appointment_id" in res.get_json()["errors"]["json"]
    # Items: on their own appointment's bill only.
    assert doctor.post(f"/api/bills/{own_bill}/items", json={"items": line}).status_code == 201
    their_bill = colleague.post(
        "/api/bills", json={"patient_id": patient_id, "appointment_id": theirs, "items": line}
    ).get_json()["id"]
    assert doctor.post(f"/api/bills/{their_bill}/items", json={"items": line}).status_code == 403
    assert bill_count(doctor) == 2
    assert len(doctor.get(f"/api/bills/{their_bill}").get_json()["items"]) == 1


# ---- access control ------------------------------------------------------------------

ROUTES = [
    # (method, url template, roles allowed)
    ("GET", "/api/bills", {"admin", "reception", "doctor", "cashier"}),
    ("GET", "/api/bills/{bill}", {"admin", "reception", "doctor", "cashier"}),
    ("POST", "/api/bills", {"admin", "reception", "doctor", "cashier"}),
    ("POST", "/api/bills/{bill}/items", {"admin", "reception", "doctor", "cashier"}),
    ("POST", "/api/bills/{bill}/payments", {"admin", "reception", "cashier"}),
    ("POST", "/api/bills/{bill}/refunds", {"admin"}),
    ("POST", "/api/bills/{bill}/void", {"admin"}),
    ("GET", "/api/appointments/{appointment}/bills", {"admin", "reception", "doctor", "cashier"}),
    ("GET", "/api/patients/{patient}/bills", {"admin", "reception", "doctor", "cashier"}),
]


@pytest.mark.parametrize(("method", "template", "allowed"), ROUTES)
def test_roles_not_allowed_get_403_and_change_nothing(
    as_role, open_bill, factory, doctor, patient_id, method, template, allowed
):
    appointment = factory.appointment(patient_id, doctor.user.id)
    bill = open_bill("100.00", appointment_id=appointment)
    url = template.format(bill=bill["id"], appointment=appointment, patient=patient_id)
    # A body that would succeed for an allowed role: 403 must come first anyway.
    body = {
        "/api/bills": {
            "patient_id": patient_id,
            "items": [{"description": "X", "quantity": 1, "unit_price": "1"}],
        },
        "items": {"items": [{"description": "X", "quantity": 1, "unit_price": "1"}]},
        "payments": {"amount": "10.00", "method": "CASH"},
        "refunds": {"amount": "1.00", "reason": "r"},
        "void": {"reason": "r"},
    }
    json_body = next((v for k, v in body.items() if url.endswith(k)), None)
    for role in set(ROLES) - allowed:
        res = as_role(role).open(method, url, json=json_body if method == "POST" else None)
        assert res.status_code == 403, (role, url)
        assert res.get_json()["code"] == 403
    admin = as_role("admin")
    assert admin.get(f"/api/bills/{bill['id']}").get_json() == bill
    assert bill_count(admin) == 1


@pytest.mark.parametrize("role", ["admin", "reception", "cashier", "doctor"])
def test_allowed_roles_succeed(as_role, factory, patient_id, role):
    caller = as_role(role)
    appointment = factory.appointment(
        patient_id, caller.user.id if role == "doctor" else as_role("doctor").user.id
    )
    line = [{"description": "X", "quantity": 1, "unit_price": "100"}]
    res = caller.post(
        "/api/bills", json={"patient_id": patient_id, "appointment_id": appointment, "items": line}
    )
    assert res.status_code == 201
    bill = res.get_json()["id"]
    assert caller.post(f"/api/bills/{bill}/items", json={"items": line}).status_code == 201
    for url in (
        "/api/bills",
        f"/api/bills/{bill}",
        f"/api/appointments/{appointment}/bills",
        f"/api/patients/{patient_id}/bills",
    ):
        assert caller.get(url).status_code == 200, url
    paying = caller.post(f"/api/bills/{bill}/payments", json={"amount": "10", "method": "CASH"})
    assert paying.status_code == (403 if role == "doctor" else 201)


@pytest.mark.parametrize(("method", "template", "allowed"), ROUTES)
def test_every_route_needs_a_token(client, method, template, allowed):
    url = template.format(bill=1, appointment=1, patient=1)
    res = client.open(url, method=method, json={"junk": True})
    assert res.status_code == 401


# ---- reading and listing -------------------------------------------------------------


def test_unknown_and_malformed_ids_are_404(admin):
    for url in ("/api/bills/999", "/api/bills/abc", "/api/bills/0", "/api/bills/99999999999"):
        assert admin.get(url).status_code == 404
    for url in (
        "/api/bills/999/items",
        "/api/bills/999/payments",
        "/api/bills/999/refunds",
        "/api/bills/999/void",
    ):
        body = {
            "items": [{"description": "X", "quantity": 1, "unit_price": "1"}],
        }
        if url.endswith("payments"):
            body = {"amount": "1.00", "method": "CASH"}
        elif url.endswith("refunds"):
            body = {"amount": "1.00", "reason": "r"}
        elif url.endswith("void"):
            body = {"reason": "r"}
        assert admin.post(url, json=body).status_code == 404, url
    assert admin.get("/api/appointments/999/bills").status_code == 404
    assert admin.get("/api/patients/999/bills").status_code == 404


def test_list_filters(app, admin, reception, factory, open_bill, patient_id):
    from hms.billing.models import Bill
    from hms.core.time import clinic_today
    from hms.extensions import db

    other = factory.patient("Other")
    unpaid = open_bill("100.00")
    partly = open_bill("100.00")
    reception.post(f"/api/bills/{partly['id']}/payments", json={"amount": "40", "method": "CASH"})
    paid = open_bill("10.00")
    reception.post(f"/api/bills/{paid['id']}/payments", json={"amount": "10", "method": "UPI"})
    others = open_bill("5.00", patient=other)
    with app.app_context():
        yesterday = clinic_today() - timedelta(days=1)
        for bill_id in (unpaid["id"], paid["id"]):
            db.session.get(Bill, bill_id).due_date = yesterday
        db.session.commit()

    def ids(query: str) -> list[int]:
        res = reception.get(f"/api/bills{query}")
        assert res.status_code == 200, res.get_json()
        return [b["id"] for b in res.get_json()["data"]]

    assert ids("") == [others["id"], paid["id"], partly["id"], unpaid["id"]]  # newest first
    assert ids("?status=PAID") == [paid["id"]]
    assert ids("?status=PARTIALLY_PAID") == [partly["id"]]
    assert ids(f"?patient_id={other}") == [others["id"]]
    assert ids(f"?patient_id={patient_id}&status=UNPAID") == [unpaid["id"]]
    # Overdue: due > 0 and due_date before today (the paid one has nothing due).
    assert ids("?overdue=true") == [unpaid["id"]]
    assert ids("?overdue=false") == [others["id"], paid["id"], partly["id"]]
    page = reception.get("/api/bills?limit=2&page=2").get_json()
    assert page["meta"] == {"page": 2, "limit": 2, "total": 4}
    assert [b["id"] for b in page["data"]] == [partly["id"], unpaid["id"]]
    # A void bill is never overdue.
    assert admin.post(f"/api/bills/{unpaid['id']}/void", json={"reason": "duplicate"}).status_code == 200
    assert ids("?overdue=true") == []


@pytest.mark.parametrize(
    "query",
    [
        "?status=OPEN",
        "?patient_id=abc",
        "?patient_id=0",
        "?limit=0",
        "?limit=101",
        "?page=0",
        "?overdue=maybe",
        "?colour=red",
    ],
)
def test_bad_list_queries_are_422(reception, query):
    assert reception.get(f"/api/bills{query}").status_code == 422


def test_list_reads_a_fixed_number_of_statements(reception, open_bill, count_queries, factory):
    def statements() -> int:
        reception.get("/api/bills?limit=100")  # warm the identity cache
        with count_queries() as counter:
            res = reception.get("/api/bills?limit=100")
        assert res.status_code == 200
        return counter.count

    first = open_bill("10.00", "5.00")
    reception.post(f"/api/bills/{first['id']}/payments", json={"amount": "3", "method": "CASH"})
    one = statements()
    for _ in range(12):
        bill = open_bill("10.00", "20.00", "30.00")
        reception.post(f"/api/bills/{bill['id']}/payments", json={"amount": "3", "method": "CASH"})
        reception.post(f"/api/bills/{bill['id']}/payments", json={"amount": "4", "method": "CARD"})
    many = statements()
    assert one == many
    assert many <= 5


def test_appointment_and_patient_bills(reception, factory, doctor, open_bill, patient_id, count_queries):
    appointment = factory.appointment(patient_id, doctor.user.id)
    other_appointment = factory.appointment(patient_id, doctor.user.id)
    first = open_bill("100.00", appointment_id=appointment)
    second = open_bill("50.00", appointment_id=appointment)
    elsewhere = open_bill("20.00", appointment_id=other_appointment)
    free = open_bill("5.00")
    res = reception.get(f"/api/appointments/{appointment}/bills")
    assert res.status_code == 200
    assert [b["id"] for b in res.get_json()["data"]] == [second["id"], first["id"]]
    assert res.get_json()["data"][0]["items"][0]["amount"] == "50.00"
    empty_appointment = factory.appointment(patient_id, doctor.user.id)
    assert reception.get(f"/api/appointments/{empty_appointment}/bills").get_json() == {
        "data": [],
        "meta": {"page": 1, "limit": 20, "total": 0},
    }
    res = reception.get(f"/api/patients/{patient_id}/bills?limit=3")
    assert [b["id"] for b in res.get_json()["data"]] == [free["id"], elsewhere["id"], second["id"]]
    assert res.get_json()["meta"]["total"] == 4
    assert reception.get(f"/api/patients/{patient_id}/bills?limit=500").status_code == 422


# ---- items ---------------------------------------------------------------------------


def test_add_items_recomputes_and_keeps_partial_status(cashier, open_bill, factory):
    bill = open_bill("100.00")
    cashier.post(f"/api/bills/{bill['id']}/payments", json={"amount": "60", "method": "CASH"})
    test_type = factory.test_type("ECG", "150.00")
    res = cashier.post(
        f"/api/bills/{bill['id']}/items",
        json={
            "items": [{"test_type_id": test_type}, {"description": "Gauze", "quantity": 2, "unit_price": "5"}]
        },
    )
    assert res.status_code == 201
    body = res.get_json()
    assert (body["total_amount"], body["paid_amount"], body["due_amount"]) == ("260.00", "60.00", "200.00")
    assert body["status"] == "PARTIALLY_PAID"
    assert [i["description"] for i in body["items"]] == ["Line 0", "ECG", "Gauze"]


def test_items_on_paid_or_void_bills_are_409(admin, open_bill):
    line = {"items": [{"description": "X", "quantity": 1, "unit_price": "1"}]}
    paid = open_bill("10.00")
    admin.post(f"/api/bills/{paid['id']}/payments", json={"amount": "10", "method": "CASH"})
    before = admin.get(f"/api/bills/{paid['id']}").get_json()
    assert admin.post(f"/api/bills/{paid['id']}/items", json=line).status_code == 409
    assert admin.get(f"/api/bills/{paid['id']}").get_json() == before
    void = open_bill("10.00")
    admin.post(f"/api/bills/{void['id']}/void", json={"reason": "duplicate"})
    before = admin.get(f"/api/bills/{void['id']}").get_json()
    assert admin.post(f"/api/bills/{void['id']}/items", json=line).status_code == 409
    assert admin.get(f"/api/bills/{void['id']}").get_json() == before


def test_invalid_items_are_422_and_change_nothing(cashier, open_bill):
    bill = open_bill("10.00")
    before = cashier.get(f"/api/bills/{bill['id']}").get_json()
    for body in (
        {"items": []},
        {"items": [{"medicine_id": 424242}]},
        {"items": [{"description": "X", "quantity": 1, "unit_price": "9999999999.99"}]},
        {"items": [{"description": "X", "quantity": 1, "unit_price": "1"}], "extra": True},
        {},
    ):
        assert cashier.post(f"/api/bills/{bill['id']}/items", json=body).status_code == 422, body
    assert cashier.get(f"/api/bills/{bill['id']}").get_json() == before


# ---- payments ------------------------------------------------------------------------


def test_payments_move_the_status_and_log_an_event(app, cashier, factory, doctor, patient_id, open_bill):
    appointment = factory.appointment(patient_id, doctor.user.id)
    bill = open_bill("150.00", "50.00", appointment_id=appointment)
    res = cashier.post(
        f"/api/bills/{bill['id']}/payments", json={"amount": "120.50", "method": "CARD", "reference": "TX-1"}
    )
    assert res.status_code == 201
    body = res.get_json()
    assert (body["status"], body["paid_amount"], body["due_amount"]) == ("PARTIALLY_PAID", "120.50", "79.50")
    [payment] = body["payments"]
    assert payment["kind"] == "PAYMENT" and payment["amount"] == "120.50" and payment["method"] == "CARD"
    assert payment["reference"] == "TX-1"
    assert payment["received_by"] == {"id": cashier.user.id, "name": cashier.user.name}
    assert "Idempotent-Replayed" not in res.headers
    res = cashier.post(f"/api/bills/{bill['id']}/payments", json={"amount": 79.5, "method": "UPI"})
    assert res.status_code == 201
    assert (res.get_json()["status"], res.get_json()["due_amount"]) == ("PAID", "0.00")
    assert events_of(app, appointment) == ["PAYMENT_RECEIVED", "PAYMENT_RECEIVED"]
    # A PAID bill has nothing due: any amount is more than the due amount.
    assert (
        cashier.post(
            f"/api/bills/{bill['id']}/payments", json={"amount": "0.01", "method": "CASH"}
        ).status_code
        == 422
    )


BAD_AMOUNTS = [
    "200.01",
    "-5.00",
    -5,
    "0",
    0,
    "0.00",
    "10.001",
    10.001,
    "abc",
    "",
    None,
    True,
    "NaN",
    "Infinity",
    [],
    {},
]


def test_bad_payments_are_422_and_change_nothing(app, cashier, open_bill):
    bill = open_bill("200.00")
    cashier.post(f"/api/bills/{bill['id']}/payments", json={"amount": "0.50", "method": "CASH"})
    before = cashier.get(f"/api/bills/{bill['id']}").get_json()
    rows = payment_rows(app)
    bodies = [{"amount": amount, "method": "CASH"} for amount in BAD_AMOUNTS]
    bodies += [
        {"amount": "199.51", "method": "CASH"},  # more than the 199.50 due
        {"amount": "10.00", "method": "CHEQUE"},
        {"amount": "10.00"},
        {"method": "CASH"},
        {"amount": "10.00", "method": "CASH", "reference": "r" * 121},
        {"amount": "10.00", "method": "CASH", "received_by_id": 1},
    ]
    for body in bodies:
        res = cashier.post(f"/api/bills/{bill['id']}/payments", json=body)
        assert res.status_code == 422, (body, res.get_json())
        if body.get("amount") == "199.51":
            assert "amount" in res.get_json()["errors"]["json"]
    assert cashier.get(f"/api/bills/{bill['id']}").get_json() == before
    assert payment_rows(app) == rows


def test_payment_on_a_void_bill_is_409(admin, open_bill):
    bill = open_bill("20.00")
    admin.post(f"/api/bills/{bill['id']}/void", json={"reason": "wrong patient"})
    assert (
        admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "5", "method": "CASH"}).status_code
        == 409
    )


# ---- idempotency ---------------------------------------------------------------------


def test_idempotent_retry_answers_the_first_result(app, cashier, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}/payments"
    key = {"Idempotency-Key": "pay-123"}
    first = cashier.post(url, json={"amount": "30.00", "method": "CASH"}, headers=key)
    assert first.status_code == 201
    # Time passes and the bill changes; the retry still answers the first result.
    cashier.post(url, json={"amount": "10.00", "method": "CASH"})
    retry = cashier.post(url, json={"amount": "30", "method": "CASH"}, headers=key)
    assert retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert payment_rows(app) == 2
    assert cashier.get(f"/api/bills/{bill['id']}").get_json()["paid_amount"] == "40.00"


def test_reused_key_with_another_body_is_422(app, cashier, open_bill):
    bill = open_bill("100.00")
    other = open_bill("100.00")
    key = {"Idempotency-Key": "k-1"}
    assert (
        cashier.post(
            f"/api/bills/{bill['id']}/payments", json={"amount": "30", "method": "CASH"}, headers=key
        ).status_code
        == 201
    )
    for url, body in (
        (f"/api/bills/{bill['id']}/payments", {"amount": "31", "method": "CASH"}),
        (f"/api/bills/{bill['id']}/payments", {"amount": "30", "method": "CARD"}),
        (f"/api/bills/{other['id']}/payments", {"amount": "30", "method": "CASH"}),
    ):
        res = cashier.post(url, json=body, headers=key)
        assert res.status_code == 422, body
    assert payment_rows(app) == 1


def test_keys_are_scoped_to_the_account(app, as_role, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}/payments"
    key = {"Idempotency-Key": "shared-key"}
    for cashier in (as_role("cashier"), as_role("cashier")):
        assert cashier.post(url, json={"amount": "10", "method": "CASH"}, headers=key).status_code == 201
    assert payment_rows(app) == 2


def test_failed_request_does_not_burn_the_key(app, cashier, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}/payments"
    key = {"Idempotency-Key": "retry-after-fix"}
    assert cashier.post(url, json={"amount": "100.01", "method": "CASH"}, headers=key).status_code == 422
    assert cashier.post(url, json={"amount": "100.00", "method": "CASH"}, headers=key).status_code == 201
    assert payment_rows(app) == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_keys_are_422(app, cashier, open_bill, key):
    bill = open_bill("100.00")
    res = cashier.post(
        f"/api/bills/{bill['id']}/payments",
        json={"amount": "1", "method": "CASH"},
        headers={"Idempotency-Key": key},
    )
    assert res.status_code == 422
    assert payment_rows(app) == 0


def test_expired_keys_are_purged_and_reusable(app, cashier, open_bill):
    from sqlalchemy import func, select, update

    from hms.billing.models import IdempotencyRecord
    from hms.core.idempotency import purge_expired
    from hms.core.time import utcnow
    from hms.extensions import db

    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}/payments"
    assert (
        cashier.post(
            url, json={"amount": "10", "method": "CASH"}, headers={"Idempotency-Key": "old"}
        ).status_code
        == 201
    )
    assert (
        cashier.post(
            url, json={"amount": "10", "method": "CASH"}, headers={"Idempotency-Key": "new"}
        ).status_code
        == 201
    )
    with app.app_context():
        db.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "old")
            .values(created_at=utcnow() - timedelta(hours=25))
        )
        db.session.commit()
    # An expired key comes back as new: another body is accepted, and recorded.
    assert (
        cashier.post(
            url, json={"amount": "20", "method": "CASH"}, headers={"Idempotency-Key": "old"}
        ).status_code
        == 201
    )
    assert payment_rows(app) == 3
    with app.app_context():
        db.session.execute(update(IdempotencyRecord).values(created_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
        fresh = IdempotencyRecord(user_id=cashier.user.id, key="fresh", fingerprint="0" * 64)
        db.session.add(fresh)
        db.session.commit()
        assert purge_expired() == 2
        assert list(db.session.scalars(select(IdempotencyRecord.key))) == ["fresh"]
        db.session.execute(update(IdempotencyRecord).values(created_at=utcnow() - timedelta(days=2)))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["billing", "purge-idempotency-keys"])
    assert result.exit_code == 0, result.output
    assert "purged 1" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0


# ---- refunds and voids ---------------------------------------------------------------


def test_refunds(admin, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}"
    admin.post(f"{url}/payments", json={"amount": "100", "method": "CARD"})
    res = admin.post(f"{url}/refunds", json={"amount": "30.00", "reason": "Test not done"})
    assert res.status_code == 201
    body = res.get_json()
    assert (body["status"], body["paid_amount"], body["due_amount"]) == ("PARTIALLY_PAID", "70.00", "30.00")
    refund = body["payments"][-1]
    assert (refund["kind"], refund["amount"], refund["reason"], refund["method"]) == (
        "REFUND",
        "30.00",
        "Test not done",
        "OTHER",
    )
    assert refund["received_by"]["id"] == admin.user.id
    body = admin.post(
        f"{url}/refunds", json={"amount": 70, "reason": "Cancelled", "method": "CASH"}
    ).get_json()
    assert (body["status"], body["paid_amount"], body["due_amount"]) == ("UNPAID", "0.00", "100.00")
    assert [p["kind"] for p in body["payments"]] == ["PAYMENT", "REFUND", "REFUND"]


def test_bad_refunds_are_422_and_change_nothing(app, admin, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}"
    admin.post(f"{url}/payments", json={"amount": "40", "method": "CASH"})
    before = admin.get(url).get_json()
    rows = payment_rows(app)
    bodies = [{"amount": a, "reason": "r"} for a in ["40.01", "-1", "0", "1.001", "x", None]]
    bodies += [{"amount": "1.00"}, {"amount": "1.00", "reason": ""}, {"amount": "1.00", "reason": "r" * 501}]
    bodies += [{"amount": "1.00", "reason": "r", "method": "GOLD"}]
    for body in bodies:
        assert admin.post(f"{url}/refunds", json=body).status_code == 422, body
    assert admin.get(url).get_json() == before
    assert payment_rows(app) == rows


def test_refund_is_idempotent(app, admin, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}"
    admin.post(f"{url}/payments", json={"amount": "100", "method": "CASH"})
    key = {"Idempotency-Key": "refund-1"}
    first = admin.post(f"{url}/refunds", json={"amount": "10", "reason": "r"}, headers=key)
    again = admin.post(f"{url}/refunds", json={"amount": "10.00", "reason": "r"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert payment_rows(app) == 2
    # The same key on a payment is a different request.
    assert admin.post(f"{url}/payments", json={"amount": "10", "reason": "r"}, headers=key).status_code == 422


def test_void(admin, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}"
    res = admin.post(f"{url}/void", json={"reason": "Duplicate bill"})
    assert res.status_code == 200
    body = res.get_json()
    assert (body["status"], body["void_reason"], body["total_amount"], body["paid_amount"]) == (
        "VOID",
        "Duplicate bill",
        "100.00",
        "0.00",
    )
    assert admin.post(f"{url}/void", json={"reason": "again"}).status_code == 409
    assert admin.post(f"{url}/refunds", json={"amount": "1", "reason": "r"}).status_code == 409
    assert admin.get(url).get_json() == body


def test_void_with_money_paid_is_409_until_refunded(admin, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}"
    admin.post(f"{url}/payments", json={"amount": "25", "method": "CASH"})
    before = admin.get(url).get_json()
    assert admin.post(f"{url}/void", json={"reason": "mistake"}).status_code == 409
    assert admin.get(url).get_json() == before
    for body in ({}, {"reason": ""}, {"reason": "r" * 501}):
        assert admin.post(f"{url}/void", json=body).status_code == 422
    admin.post(f"{url}/refunds", json={"amount": "25", "reason": "mistake"})
    assert admin.post(f"{url}/void", json={"reason": "mistake"}).get_json()["status"] == "VOID"


def test_openapi_documents_the_routes(client):
    spec = client.get("/api/openapi.json").get_json()
    assert "/api/bills/{bill_id}/payments" in spec["paths"]
    params = spec["paths"]["/api/bills/{bill_id}/payments"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in params)


def test_idempotency_keys_up_to_255_characters_work(app, cashier, open_bill):
    bill = open_bill("100.00")
    url = f"/api/bills/{bill['id']}/payments"
    key = {"Idempotency-Key": "k" * 255}
    first = cashier.post(url, json={"amount": "10.00", "method": "CASH"}, headers=key)
    assert first.status_code == 201, first.get_json()
    again = cashier.post(url, json={"amount": "10.00", "method": "CASH"}, headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert payment_rows(app) == 1


@pytest.mark.parametrize("key", ["pay\x00-1", "pay\x01-1", "pay\x1f-1", "pay\x7f-1", "pay\t1"])
def test_idempotency_keys_with_control_characters_are_400(app, cashier, open_bill, key):
    bill = open_bill("100.00")
    res = cashier.post(
        f"/api/bills/{bill['id']}/payments",
        json={"amount": "1", "method": "CASH"},
        headers={"Idempotency-Key": key},
    )
    assert res.status_code == 400, res.get_data(as_text=True)
    body = res.get_json()
    assert body["code"] == 400 and body["message"] and "Idempotency-Key" in body["errors"]["headers"]
    assert payment_rows(app) == 0


def _clinic_today(app):
    from hms.core.time import clinic_today

    with app.app_context():
        return clinic_today()


def test_due_dates_are_yyyy_mm_dd_only(app, reception, patient_id):
    tomorrow = _clinic_today(app) + timedelta(days=1)
    year, week, weekday = tomorrow.isocalendar()
    line = {"description": "X", "quantity": 1, "unit_price": "1.00"}
    for text in (f"{year}-W{week:02d}-{weekday}", tomorrow.strftime("%Y%m%d")):
        res = reception.post("/api/bills", json={"patient_id": patient_id, "items": [line], "due_date": text})
        assert res.status_code == 422, (text, res.get_json())
        assert "due_date" in res.get_json()["errors"]["json"]
    assert bill_count(reception) == 0


def test_due_date_is_at_most_ten_years_ahead(app, reception, patient_id):
    today = _clinic_today(app)
    limit = (
        today.replace(year=today.year + 10)
        if (today.month, today.day) != (2, 29)
        else today.replace(year=today.year + 10, day=28)
    )
    line = {"description": "X", "quantity": 1, "unit_price": "1.00"}
    for too_far in (limit + timedelta(days=1), today.replace(year=9999, month=12, day=31)):
        res = reception.post(
            "/api/bills", json={"patient_id": patient_id, "items": [line], "due_date": too_far.isoformat()}
        )
        assert res.status_code == 422, (too_far, res.get_json())
        assert "due_date" in res.get_json()["errors"]["json"]
    assert bill_count(reception) == 0
    ok = reception.post(
        "/api/bills", json={"patient_id": patient_id, "items": [line], "due_date": limit.isoformat()}
    )
    assert ok.status_code == 201, ok.get_json()
