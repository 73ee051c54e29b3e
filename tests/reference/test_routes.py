"""The six reference resources: one implementation, so one parametrized suite."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, update

# path -> (model name, a valid create body, a second one, a valid change, search column)
SAMPLES = {
    "departments": ("Department", {"name": "Cardiology"}, {"name": "Neurology"}, {"name": "Heart"}, "name"),
    "specializations": (
        "Specialization",
        {"name": "Surgeon"},
        {"name": "Pediatrician"},
        {"name": "Surgery"},
        "name",
    ),
    "test-types": (
        "TestType",
        {"name": "Blood count", "price": "150.00"},
        {"name": "X-ray", "price": 400},
        {"price": "175.5"},
        "name",
    ),
    "medicines": (
        "Medicine",
        {
            "name": "Paracetamol",
            "generic_name": "Acetaminophen",
            "form": "tablet",
            "strength": "500mg",
            "unit_price": "2.50",
        },
        {"name": "Amoxicillin", "unit_price": 12},
        {"generic_name": None, "strength": "650mg"},
        "name",
    ),
    "medicine-instructions": (
        "MedicineInstruction",
        {"text": "After meals"},
        {"text": "Before sleep"},
        {"text": "After food"},
        "text",
    ),
    "categories": ("Category", {"name": "Consultation"}, {"name": "Pharmacy"}, {"name": "Lab"}, "name"),
}
PATHS = list(SAMPLES)
OTHER_ROLES = ("reception", "doctor", "cashier", "display")


def table(app, path) -> list[tuple]:
    from hms.extensions import db
    from hms.reference import models

    model = getattr(models, SAMPLES[path][0])
    with app.app_context():
        return [tuple(row) for row in db.session.execute(select(*model.__table__.columns).order_by(model.id))]


def create(admin, path, body=None):
    res = admin.post(f"/api/{path}", json=body or SAMPLES[path][1])
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def expected(body: dict) -> dict:
    """What the API answers for a body it accepted: money as two-place strings, text trimmed."""
    out = {}
    for key, value in body.items():
        if key in ("price", "unit_price"):
            out[key] = f"{float(value):.2f}"
        else:
            out[key] = value.strip() if isinstance(value, str) else value
    return out


# --- happy paths --------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_create_read_change_delete(admin, reception, path):
    _, body, _, change, _ = SAMPLES[path]
    created = create(admin, path)
    assert set(created) >= {"id", "created_at"} | set(body)
    assert {k: created[k] for k in body} == expected(body)
    stamp = datetime.fromisoformat(created["created_at"])
    assert stamp.utcoffset() is not None  # ISO 8601 with offset

    url = f"/api/{path}/{created['id']}"
    assert reception.get(url).get_json() == created
    listed = reception.get(f"/api/{path}").get_json()
    assert listed == {"data": [created], "meta": {"page": 1, "limit": 20, "total": 1}}

    changed = admin.patch(url, json=change)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json() == {**created, **expected(change)}
    assert reception.get(url).get_json() == changed.get_json()

    deleted = admin.delete(url)
    assert deleted.status_code == 204 and deleted.data == b""
    assert reception.get(url).status_code == 404
    assert reception.get(f"/api/{path}").get_json()["data"] == []


def test_medicine_fields_are_optional_except_name_and_price(admin):
    body = create(admin, "medicines", {"name": " Ibuprofen ", "unit_price": 3})
    assert body["name"] == "Ibuprofen"
    assert (body["generic_name"], body["form"], body["strength"], body["unit_price"]) == (
        None,
        None,
        None,
        "3.00",
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("role", ["admin", "reception", "doctor", "cashier"])
def test_every_staff_role_reads(as_role, admin, path, role):
    item = create(admin, path)
    caller = as_role(role)
    assert caller.get(f"/api/{path}").status_code == 200
    assert caller.get(f"/api/{path}/{item['id']}").get_json() == item


# --- access control ---------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_display_may_not_read(display, admin, path):
    item = create(admin, path)
    assert display.get(f"/api/{path}").status_code == 403
    assert display.get(f"/api/{path}/{item['id']}").status_code == 403


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("role", OTHER_ROLES)
def test_only_admin_writes(app, as_role, admin, path, role):
    item = create(admin, path)
    caller = as_role(role)
    before = table(app, path)
    url = f"/api/{path}/{item['id']}"
    assert caller.post(f"/api/{path}", json=SAMPLES[path][2]).status_code == 403
    assert caller.patch(url, json=SAMPLES[path][3]).status_code == 403
    assert caller.delete(url).status_code == 403
    assert table(app, path) == before


@pytest.mark.parametrize("path", PATHS)
def test_no_token_is_401_before_validation(client, path):
    for method, url in (
        ("GET", f"/api/{path}"),
        ("POST", f"/api/{path}"),
        ("GET", f"/api/{path}/1"),
        ("PATCH", f"/api/{path}/1"),
        ("DELETE", f"/api/{path}/1"),
    ):
        res = client.open(url, method=method, json={"bogus": True})
        assert res.status_code == 401, (method, url)


# --- bad input ----------------------------------------------------------------------

TEXT_FIELD = {"medicine-instructions": "text"}
MAX_LENGTH = {"medicine-instructions": 200}


def bad_bodies(path) -> dict[str, dict]:
    body = SAMPLES[path][1]
    field = TEXT_FIELD.get(path, "name")
    limit = MAX_LENGTH.get(path, 120)
    bodies = {
        "empty": {},
        "unknown field": {**body, "colour": "red"},
        "id in body": {**body, "id": 5},
        "missing text": {k: v for k, v in body.items() if k != field},
        "null text": {**body, field: None},
        "blank text": {**body, field: "   "},
        "number as text": {**body, field: 42},
        "list as text": {**body, field: ["x"]},
        "text one too long": {**body, field: "x" * (limit + 1)},
        "huge text": {**body, field: "x" * 300_000},
    }
    money = {"test-types": "price", "medicines": "unit_price"}.get(path)
    if money:
        bodies |= {
            "missing price": {k: v for k, v in body.items() if k != money},
            "negative price": {**body, money: "-1.00"},
            "three decimals": {**body, money: "1.005"},
            "price words": {**body, money: "ten"},
            "price boolean": {**body, money: True},
            "price object": {**body, money: {"amount": 1}},
            "price too large": {**body, money: 1e12},
            "null price": {**body, money: None},
        }
    if path == "medicines":
        bodies |= {"form too long": {**body, "form": "f" * 41}, "strength number": {**body, "strength": 500}}
    return bodies


ALL_BAD = [(path, name, body) for path in PATHS for name, body in bad_bodies(path).items()]


@pytest.mark.parametrize(("path", "case", "body"), ALL_BAD, ids=[f"{p}-{c}" for p, c, _ in ALL_BAD])
def test_bad_create_is_422_and_stores_nothing(app, admin, path, case, body):
    before = table(app, path)
    res = admin.post(f"/api/{path}", json=body)
    assert res.status_code == 422, res.get_json()
    assert res.get_json()["code"] == 422 and res.get_json()["errors"]
    assert table(app, path) == before


@pytest.mark.parametrize("path", PATHS)
def test_bad_change_is_422_and_changes_nothing(app, admin, path):
    item = create(admin, path)
    field = TEXT_FIELD.get(path, "name")
    before = table(app, path)
    url = f"/api/{path}/{item['id']}"
    for body in (
        {},
        {"bogus": 1},
        {field: None},
        {field: ""},
        {field: "x" * 5000},
        {"id": 9},
        {"created_at": "x"},
    ):
        res = admin.patch(url, json=body)
        assert res.status_code == 422, (body, res.get_json())
    assert table(app, path) == before


@pytest.mark.parametrize("path", PATHS)
def test_non_object_body_is_rejected(app, admin, path):
    before = table(app, path)
    for body in ([SAMPLES[path][1]], "text", 7):
        assert admin.post(f"/api/{path}", json=body).status_code in (400, 422)
    assert admin.post(f"/api/{path}", data="{oops", content_type="application/json").status_code == 400
    assert table(app, path) == before


@pytest.mark.parametrize("path", PATHS)
def test_unknown_ids_are_404(admin, path):
    for suffix in ("424242", "abc", "0", "-3", "1.5", str(2**31), "9" * 30):
        url = f"/api/{path}/{suffix}"
        for method in ("GET", "PATCH", "DELETE"):
            res = admin.open(method, url, json=SAMPLES[path][3] if method == "PATCH" else None)
            assert res.status_code == 404, (method, url)
            assert res.get_json()["code"] == 404


# --- duplicates and references ---------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_duplicates_are_409_ignoring_case(app, admin, path):
    first = create(admin, path)
    second = create(admin, path, SAMPLES[path][2])
    before = table(app, path)
    same = {**SAMPLES[path][1]}
    field = TEXT_FIELD.get(path, "name")
    for body in (same, {**same, field: f"  {same[field].upper()} "}):
        res = admin.post(f"/api/{path}", json=body)
        assert res.status_code == 409, body
        assert res.get_json()["code"] == 409
    # Renaming one into the other is a duplicate too ...
    rename = {field: first[field].lower()}
    if path == "medicines":
        rename = {"name": first["name"], "form": first["form"], "strength": first["strength"].upper()}
    assert admin.patch(f"/api/{path}/{second['id']}", json=rename).status_code == 409
    assert table(app, path) == before
    # ... but an item may keep (or re-case) its own name.
    own = {field: first[field].upper()}
    res = admin.patch(f"/api/{path}/{first['id']}", json=own)
    assert res.status_code == 200 and res.get_json()[field] == first[field].upper()


def test_medicines_differ_by_form_and_strength(app, admin):
    create(
        admin, "medicines", {"name": "Paracetamol", "form": "tablet", "strength": "500mg", "unit_price": 1}
    )
    create(
        admin, "medicines", {"name": "Paracetamol", "form": "tablet", "strength": "650mg", "unit_price": 1}
    )
    create(admin, "medicines", {"name": "Paracetamol", "form": "syrup", "strength": "500mg", "unit_price": 1})
    create(admin, "medicines", {"name": "Paracetamol", "unit_price": 1})
    before = table(app, "medicines")
    for body in (
        {"name": "paracetamol", "form": "TABLET", "strength": "500MG", "unit_price": 9},
        {"name": "Paracetamol", "unit_price": 2},  # no form, no strength: NULL equals NULL here
    ):
        assert admin.post("/api/medicines", json=body).status_code == 409, body
    assert table(app, "medicines") == before


def _appointment(app, make_user):
    """A patient, a doctor and an appointment, stored directly: the rows that refer on."""
    from datetime import date

    from hms.appointments.models import Appointment
    from hms.extensions import db
    from hms.patients.models import Patient

    doctor = make_user("doctor")
    with app.app_context():
        patient = Patient(mrn="P000001", name="Pat", gender="female")
        db.session.add(patient)
        db.session.flush()
        appointment = Appointment(
            patient_id=patient.id,
            doctor_id=doctor.id,
            appointment_date=date(2026, 1, 5),
            appointment_type="NEW",
            token=1,
            queue_position=1,
            created_by_id=doctor.id,
        )
        db.session.add(appointment)
        db.session.commit()
        return doctor.id, patient.id, appointment.id


def refer_to(app, make_user, path, item_id) -> None:
    """Store a row whose foreign key points at the item."""
    from decimal import Decimal

    from hms.billing.models import Bill, BillItem
    from hms.extensions import db
    from hms.prescriptions.models import Prescription, PrescriptionItem

    if path == "departments":
        make_user("reception", department_id=item_id)
        return
    if path == "specializations":
        make_user("doctor", specialization_id=item_id)
        return
    doctor_id, patient_id, appointment_id = _appointment(app, make_user)
    with app.app_context():
        if path in ("medicines", "medicine-instructions"):
            prescription = Prescription(
                appointment_id=appointment_id, doctor_id=doctor_id, patient_id=patient_id
            )
            db.session.add(prescription)
            db.session.flush()
            other = {
                "medicines": {"medicine_id": item_id},
                "medicine-instructions": {"medicine_id": _medicine_id(), "instruction_id": item_id},
            }[path]
            db.session.add(
                PrescriptionItem(
                    prescription_id=prescription.id,
                    dosage="1",
                    frequency="1-0-1",
                    duration_days=3,
                    quantity=6,
                    **other,
                )
            )
        else:  # categories
            bill = Bill(number="B-2026-000001", patient_id=patient_id, created_by_id=doctor_id)
            db.session.add(bill)
            db.session.flush()
            db.session.add(
                BillItem(
                    bill_id=bill.id,
                    category_id=item_id,
                    description="Consultation",
                    unit_price=Decimal("1.00"),
                    amount=Decimal("1.00"),
                )
            )
        db.session.commit()


def _medicine_id() -> int:
    from hms.extensions import db
    from hms.reference.models import Medicine

    medicine = Medicine(name="Filler", unit_price=1)
    db.session.add(medicine)
    db.session.flush()
    return medicine.id


@pytest.mark.parametrize("path", [p for p in PATHS if p != "test-types"])
def test_delete_while_referenced_is_409(app, admin, reception, make_user, path):
    item = create(admin, path)
    refer_to(app, make_user, path, item["id"])
    before = table(app, path)
    res = admin.delete(f"/api/{path}/{item['id']}")
    assert res.status_code == 409
    assert res.get_json()["code"] == 409 and "in use" in res.get_json()["message"]
    assert table(app, path) == before
    assert reception.get(f"/api/{path}/{item['id']}").get_json() == item
    # The failed delete left the session usable: the next write goes through.
    assert admin.post(f"/api/{path}", json=SAMPLES[path][2]).status_code == 201


# --- lists -------------------------------------------------------------------------------


def test_search_is_case_insensitive_ordered_and_paginated(admin, reception):
    for name in ("Neurology", "Cardiology", "Dermatology", "ENT", "Cardiac Surgery", "100%_Care"):
        create(admin, "departments", {"name": name})

    def names(query):
        res = reception.get(f"/api/departments?{query}")
        assert res.status_code == 200, res.get_json()
        return [d["name"] for d in res.get_json()["data"]], res.get_json()["meta"]

    everything, meta = names("")
    assert everything == sorted(everything) and meta["total"] == 6
    assert names("q=CARD")[0] == ["Cardiac Surgery", "Cardiology"]
    assert names("q=ology")[0] == ["Cardiology", "Dermatology", "Neurology"]
    assert names("q=%25_")[0] == ["100%_Care"]  # % and _ are literal, not wildcards
    assert names("q=_")[0] == ["100%_Care"]
    assert names("q=nothing")[0] == []
    page, meta = names("limit=2&page=2")
    assert page == everything[2:4] and meta == {"page": 2, "limit": 2, "total": 6}
    page, meta = names("limit=4&page=3")
    assert page == [] and meta["total"] == 6


def test_medicines_are_found_by_name_or_generic_name_accents_and_case_ignored(app, admin, reception):
    for name, generic, strength in (
        ("Crocin", "Paracetamol", "500 mg"),
        ("Dolo 650", "Paracetamol", "650 mg"),
        ("Brufen", "Ibuprofen", "400 mg"),
        ("Crème Solaire", None, "50 ml"),
        ("100%_Pure", "Glycérine", "1 ml"),
    ):
        body = {
            "name": name,
            "generic_name": generic,
            "form": "tablet",
            "strength": strength,
            "unit_price": "2",
        }
        create(admin, "medicines", body)

    def names(q):
        res = reception.get("/api/medicines", query_string={"q": q})
        assert res.status_code == 200, res.get_json()
        return [m["name"] for m in res.get_json()["data"]]

    assert names("paracetamol") == ["Crocin", "Dolo 650"]
    assert names("PARACÉTAMOL") == ["Crocin", "Dolo 650"]
    assert names("dolo") == ["Dolo 650"]
    assert names("creme") == ["Crème Solaire"]
    assert names("glycerine") == ["100%_Pure"]
    assert names("%_") == ["100%_Pure"]  # literal, not wildcards
    assert names("n p") == []  # a match never spans the brand and the generic name
    # A change of either name is what the search sees next.
    crocin = reception.get("/api/medicines", query_string={"q": "crocin"}).get_json()["data"][0]
    assert (
        admin.patch(f"/api/medicines/{crocin['id']}", json={"generic_name": "Acétaminophène"}).status_code
        == 200
    )
    assert names("acetaminophene") == ["Crocin"]
    assert names("paracetamol") == ["Dolo 650"]
    assert admin.patch(f"/api/medicines/{crocin['id']}", json={"name": "Crocin Advance"}).status_code == 200
    assert names("advance") == ["Crocin Advance"] and names("acetaminophene") == ["Crocin Advance"]


def test_instructions_search_their_text(admin, reception):
    create(admin, "medicine-instructions", {"text": "After meals"})
    create(admin, "medicine-instructions", {"text": "Before meals"})
    create(admin, "medicine-instructions", {"text": "At bedtime"})
    res = reception.get("/api/medicine-instructions?q=MEALS").get_json()
    assert [i["text"] for i in res["data"]] == ["After meals", "Before meals"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "page=0", "limit=x", "q=" + "q" * 101, "sort=name", "name=Cardiology"]
)
def test_bad_list_query_is_422(reception, path, query):
    res = reception.get(f"/api/{path}?{query}")
    assert res.status_code == 422


def test_list_costs_the_same_statements_for_1_or_30_items(app, admin, reception, count_queries):
    from hms.core.cache import bump_generation

    def selects_for_a_page():
        with app.app_context():
            bump_generation("ref:categories")  # force a cache miss
        with count_queries() as counter:
            res = reception.get("/api/categories?limit=100")
        assert res.status_code == 200
        return [s for s in counter.statements if s.lstrip().upper().startswith("SELECT")], res.get_json()

    create(admin, "categories", {"name": "Category 00"})
    reception.get("/api/auth/me")
    one, body = selects_for_a_page()
    assert len(body["data"]) == 1
    for i in range(1, 30):
        create(admin, "categories", {"name": f"Category {i:02}"})
    thirty, body = selects_for_a_page()
    assert len(body["data"]) == 30
    assert len(one) == len(thirty) <= 2


# --- caching -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_reads_are_cached_and_writes_are_visible_at_once(app, admin, reception, count_queries, path):
    from hms.extensions import db
    from hms.reference import models

    model = getattr(models, SAMPLES[path][0])
    field = TEXT_FIELD.get(path, "name")
    item = create(admin, path)
    url = f"/api/{path}/{item['id']}"
    reception.get("/api/auth/me")
    listed = reception.get(f"/api/{path}").get_json()
    one = reception.get(url).get_json()
    with count_queries() as counter:
        assert reception.get(f"/api/{path}").get_json() == listed
        assert reception.get(url).get_json() == one
    assert counter.count == 0

    # Behind the service's back: the cached answers stay (proof the cache serves them).
    with app.app_context():
        db.session.execute(update(model).where(model.id == item["id"]).values({field: "Sneaky"}))
        db.session.commit()
    assert reception.get(url).get_json()[field] == item[field]

    # Through the API: visible at once, in the item and in every list.
    changed = admin.patch(url, json=SAMPLES[path][3]).get_json()
    assert reception.get(url).get_json() == changed
    assert reception.get(f"/api/{path}").get_json()["data"] == [changed]

    other = create(admin, path, SAMPLES[path][2])
    assert {i["id"] for i in reception.get(f"/api/{path}").get_json()["data"]} == {item["id"], other["id"]}

    assert admin.delete(url).status_code == 204
    assert reception.get(url).status_code == 404
    assert [i["id"] for i in reception.get(f"/api/{path}").get_json()["data"]] == [other["id"]]
