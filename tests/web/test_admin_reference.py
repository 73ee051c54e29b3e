"""/admin/reference/<name> through Flask's test client: each of the six catalogues added,
edited and deleted; a row in use stays, with the reason in words; a duplicate is said
beside its field; CSRF; one row per rendered form; no 500 on bad input; search, pages
and a flat statement count."""

from __future__ import annotations

import re

import pytest

from tests.web.test_admin import form_of, sign_in

# name -> (a row to add, a change to it, the text the row shows)
CATALOGUES = {
    "departments": ({"name": "Cardiology"}, {"name": "Cardiology & Heart"}),
    "specializations": ({"name": "Paediatrics"}, {"name": "Paediatric Surgery"}),
    "test-types": ({"name": "CBC", "price": "250"}, {"name": "CBC", "price": "275.50"}),
    "medicines": (
        {
            "name": "Crocin",
            "generic_name": "Paracetamol",
            "form": "tablet",
            "strength": "500 mg",
            "unit_price": "2",
        },
        {
            "name": "Crocin",
            "generic_name": "Paracetamol",
            "form": "tablet",
            "strength": "650 mg",
            "unit_price": "3.10",
        },
    ),
    "medicine-instructions": ({"text": "After food"}, {"text": "After food, with water"}),
    "categories": ({"name": "Pharmacy"}, {"name": "Pharmacy & Stores"}),
}


def rows(admin, name: str) -> list[dict]:
    return admin.get(f"/api/{name}?limit=100").get_json()["data"]


def add(client, catalogue: str, **fields):
    data = form_of(client, f"/admin/reference/{catalogue}")
    data.pop("html")
    return client.post(f"/admin/reference/{catalogue}", data={**data, **fields}), data


@pytest.mark.parametrize("name", list(CATALOGUES))
def test_each_catalogue_adds_edits_and_deletes(client, make_user, admin, name):
    sign_in(client, make_user)
    first, changed = CATALOGUES[name]
    res, _ = add(client, name, **first)
    assert res.status_code == 302 and res.headers["Location"].startswith(
        f"/admin/reference/{name}?done=added&item="
    )
    shown = next(iter(first.values()))
    assert f"Added {shown}." in client.get(res.headers["Location"]).get_data(as_text=True)
    [row] = rows(admin, name)
    for field, value in first.items():
        expected = f"{value}.00" if field in ("price", "unit_price") else value
        assert row[field] == expected
    page = form_of(client, f"/admin/reference/{name}/{row['id']}")
    res = client.post(
        f"/admin/reference/{name}/{row['id']}", data={"csrf_token": page["csrf_token"], **changed}
    )
    assert res.status_code == 302
    [row] = rows(admin, name)
    for field, value in changed.items():
        assert row[field] == (f"{float(value):.2f}" if field in ("price", "unit_price") else value)
    listing = client.get(f"/admin/reference/{name}").get_data(as_text=True)
    assert next(iter(changed.values())).replace("&", "&amp;") in listing
    res = client.post(f"/admin/reference/{name}/{row['id']}/delete", data={"csrf_token": page["csrf_token"]})
    assert res.status_code == 302 and "done=deleted" in res.headers["Location"]
    assert rows(admin, name) == []


def test_labels_are_visible_for_every_field(client, make_user):
    sign_in(client, make_user)
    html = client.get("/admin/reference/medicines").get_data(as_text=True)
    for field, label in (
        ("name", "Name"),
        ("generic-name", "Generic name"),
        ("form", "Form"),
        ("strength", "Strength"),
        ("unit-price", "Unit price"),
    ):
        assert f'<label for="add-{field}">{label}</label>' in html
    assert 'accesskey="n"' in html and "<kbd>Alt</kbd>+<kbd>N</kbd>" in html


def test_a_department_with_staff_is_not_deleted(client, make_user, admin):
    sign_in(client, make_user)
    department = admin.post("/api/departments", json={"name": "Cardiology"}).get_json()
    make_user("doctor", department_id=department["id"])
    token = form_of(client, "/admin/reference/departments")["csrf_token"]
    res = client.post(f"/admin/reference/departments/{department['id']}/delete", data={"csrf_token": token})
    assert res.status_code == 409
    assert "Staff belong to this department: it cannot be deleted." in res.get_data(as_text=True)
    assert [row["name"] for row in rows(admin, "departments")] == ["Cardiology"]


def test_a_medicine_on_a_prescription_is_not_deleted(app, client, make_user, admin):
    from hms.extensions import db
    from hms.prescriptions.models import PrescriptionItem

    sign_in(client, make_user)
    medicine = admin.post("/api/medicines", json=CATALOGUES["medicines"][0]).get_json()
    prescribed = _prescribe(app, admin, make_user, medicine["id"])
    with app.app_context():
        assert db.session.get(PrescriptionItem, prescribed) is not None
    token = form_of(client, "/admin/reference/medicines")["csrf_token"]
    res = client.post(f"/admin/reference/medicines/{medicine['id']}/delete", data={"csrf_token": token})
    assert res.status_code == 409
    assert "This medicine is on prescriptions: it cannot be deleted." in res.get_data(as_text=True)
    assert [row["name"] for row in rows(admin, "medicines")] == ["Crocin"]


def _prescribe(app, admin, make_user, medicine_id: int) -> int:
    """A prescription item of `medicine_id` (a booked patient, called in, prescribed)."""
    from tests.conftest import RoleClient, token_for
    from tests.queue.stream_helpers import booking, make_patient

    doctor = make_user("doctor")
    booked = admin.post("/api/appointments", json=booking(make_patient(app), doctor.id)).get_json()
    as_doctor = RoleClient(app.test_client(), token_for(app, doctor), doctor)
    assert as_doctor.post(f"/api/queue/{doctor.id}/next").status_code == 200
    body = {
        "items": [
            {
                "medicine_id": medicine_id,
                "dosage": "1",
                "frequency": "1-0-1",
                "duration_days": 3,
                "quantity": 6,
            }
        ]
    }
    res = as_doctor.post(f"/api/appointments/{booked['id']}/prescriptions", json=body)
    assert res.status_code == 201, res.get_json()
    return res.get_json()["items"][0]["id"]


def test_a_duplicate_is_said_beside_the_field(client, make_user, admin):
    sign_in(client, make_user)
    admin.post("/api/medicines", json=CATALOGUES["medicines"][0])
    res, _ = add(client, "medicines", **{**CATALOGUES["medicines"][0], "name": "crocin"})
    assert res.status_code == 409
    html = res.get_data(as_text=True)
    assert re.search(
        r'id="add-name-error">There is already a medicine with this name, form and strength<', html
    )
    assert len(rows(admin, "medicines")) == 1
    # Editing into a duplicate: the same words, nothing changed.
    other = admin.post("/api/categories", json={"name": "Lab"}).get_json()
    admin.post("/api/categories", json={"name": "Pharmacy"})
    token = form_of(client, "/admin/reference/categories")["csrf_token"]
    res = client.post(
        f"/admin/reference/categories/{other['id']}", data={"csrf_token": token, "name": "PHARMACY"}
    )
    assert res.status_code == 409
    assert "There is already a category with this name" in res.get_data(as_text=True)
    assert sorted(row["name"] for row in rows(admin, "categories")) == ["Lab", "Pharmacy"]


def test_a_double_submit_adds_one_row(client, make_user, admin):
    sign_in(client, make_user)
    first, data = add(client, "categories", name="Lab")
    second = client.post("/admin/reference/categories", data={**data, "name": "Lab"})
    assert first.status_code == second.status_code == 302
    assert [row["name"] for row in rows(admin, "categories")] == ["Lab"]


def test_without_the_csrf_token_nothing_is_written(client, make_user, admin):
    sign_in(client, make_user)
    lab = admin.post("/api/categories", json={"name": "Lab"}).get_json()
    key = form_of(client, "/admin/reference/categories")["idempotency_key"]
    for forged in ({}, {"csrf_token": "forged"}):
        res = client.post("/admin/reference/categories", data={"idempotency_key": key, "name": "X", **forged})
        assert res.status_code == 400
        assert (
            client.post(f"/admin/reference/categories/{lab['id']}", data={"name": "Y", **forged}).status_code
            == 400
        )
        assert client.post(f"/admin/reference/categories/{lab['id']}/delete", data=forged).status_code == 400
    assert [row["name"] for row in rows(admin, "categories")] == ["Lab"]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": "  "}, "name", "Fill this in"),
        ({"name": "X" * 200}, "name", "This is too long"),
        ({"price": "-1"}, "price", "An amount cannot be negative"),
        ({"price": "12.345"}, "price", "Use at most two decimals"),
        ({"price": "1" * 30}, "price", "Enter an amount like 150.00"),
        ({"price": "99999999999"}, "price", "Use an amount up to 9999999999.99"),
        ({"price": ""}, "price", "Enter an amount like 150.00"),
    ],
)
def test_bad_input_is_said_in_the_clinic_s_words(client, make_user, admin, fields, field, words):
    sign_in(client, make_user)
    res, _ = add(client, "test-types", **{"name": "CBC", "price": "250", **fields})
    assert res.status_code == 422
    assert f'id="add-{field}-error">{words}<' in res.get_data(as_text=True)
    assert rows(admin, "test-types") == []


def test_no_500_on_odd_input(client, make_user, admin):
    sign_in(client, make_user)
    res, _ = add(client, "categories", name="La\x00b")
    assert res.status_code == 422
    assert client.get("/admin/reference/nothing").status_code == 404
    assert client.get("/admin/reference/categories/99999").status_code == 404
    token = form_of(client, "/admin/reference/categories")["csrf_token"]
    assert (
        client.post("/admin/reference/categories/99999/delete", data={"csrf_token": token}).status_code == 404
    )
    assert client.get("/admin/reference/categories?page=-3&q=%25_").status_code == 200
    assert rows(admin, "categories") == []


def test_search_and_pages(client, make_user, admin):
    sign_in(client, make_user)
    for n in range(25):
        admin.post("/api/categories", json={"name": f"Category {n:02d}"})
    admin.post("/api/medicines", json=CATALOGUES["medicines"][0])
    first = client.get("/admin/reference/categories").get_data(as_text=True)
    assert "Page 1 of 2" in first and "Category 19" in first and "Category 20" not in first
    second = client.get("/admin/reference/categories?page=2").get_data(as_text=True)
    assert "Category 24" in second and "Category 00" not in second
    found = client.get("/admin/reference/categories?q=ory 07").get_data(as_text=True)
    assert "Category 07" in found and "Category 08" not in found
    by_generic = client.get("/admin/reference/medicines?q=paracet").get_data(as_text=True)
    assert "Crocin" in by_generic


def test_the_list_costs_the_same_statements_with_more_rows(client, make_user, admin, count_queries):
    sign_in(client, make_user)
    for n in range(2):
        admin.post("/api/test-types", json={"name": f"Test {n}", "price": "10"})
    client.get("/admin/reference/test-types?q=Test")  # the session's account, now cached
    with count_queries() as few:
        assert client.get("/admin/reference/test-types?q=Test").status_code == 200
    for n in range(2, 20):
        admin.post("/api/test-types", json={"name": f"Test {n}", "price": "10"})
    client.get("/admin/reference/test-types?q=Test")
    with count_queries() as many:
        assert client.get("/admin/reference/test-types?q=Test").status_code == 200
    assert many.count == few.count
