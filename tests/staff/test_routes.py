"""Staff accounts (/api/staff) and the doctor directory (/api/doctors)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from werkzeug.security import check_password_hash

OTHER_ROLES = ("reception", "doctor", "cashier", "display")
STAFF_ROLES = ("admin", "reception", "doctor", "cashier")


# --- helpers ------------------------------------------------------------------------


def users_table(app) -> list[tuple]:
    """Every column of every account (hashes and epochs too), to prove nothing changed."""
    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        return [tuple(row) for row in db.session.execute(select(*User.__table__.columns).order_by(User.id))]


def stored_user(app, user_id):
    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def add_reference(app, model_name: str, name: str) -> int:
    from hms.extensions import db
    from hms.reference import models

    with app.app_context():
        row = getattr(models, model_name)(name=name)
        db.session.add(row)
        db.session.commit()
        return row.id


def login(client, username, password):
    return client.post("/api/auth/token", json={"username": username, "password": password})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def new_staff(**fields) -> dict:
    body = {"username": "rita.r", "password": "long-enough", "name": "Rita", "role": "reception"}
    body.update(fields)
    return body


@pytest.fixture
def cardiology(app):
    return add_reference(app, "Department", "Cardiology")


@pytest.fixture
def surgeon(app):
    return add_reference(app, "Specialization", "Surgeon")


# --- create ---------------------------------------------------------------------------


def test_admin_creates_a_doctor(app, client, admin, cardiology, surgeon):
    res = admin.post(
        "/api/staff",
        json={
            "username": "  Dr.House ",
            "password": "vicodin-42",
            "name": " Gregory House ",
            "role": "doctor",
            "department_id": cardiology,
            "specialization_id": surgeon,
            "consultation_fee": "750.5",
            "hospital_fee": 120,
            "room": " Room 4 ",
        },
    )
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    assert body == {
        "id": body["id"],
        "username": "dr.house",
        "name": "Gregory House",
        "role": "doctor",
        "department_id": cardiology,
        "specialization_id": surgeon,
        "consultation_fee": "750.50",
        "hospital_fee": "120.00",
        "room": "Room 4",
        "is_available": True,
        "active": True,
    }
    stored = stored_user(app, body["id"])
    assert stored.password_hash != "vicodin-42"
    assert check_password_hash(stored.password_hash, "vicodin-42")
    # Sign-in lower-cases too, so the new account can log in as typed.
    assert login(client, "DR.HOUSE", "vicodin-42").status_code == 200


def test_doctor_fees_default_to_zero(admin):
    res = admin.post("/api/staff", json=new_staff(role="doctor", username="dr.zero"))
    assert res.status_code == 201
    body = res.get_json()
    assert (body["consultation_fee"], body["hospital_fee"]) == ("0.00", "0.00")


@pytest.mark.parametrize("role", ["admin", "reception", "cashier", "display"])
def test_other_roles_have_no_fees_or_specialization(admin, role, cardiology):
    res = admin.post("/api/staff", json=new_staff(role=role, department_id=cardiology))
    assert res.status_code == 201
    body = res.get_json()
    assert body["role"] == role and body["department_id"] == cardiology
    assert body["consultation_fee"] is None and body["hospital_fee"] is None
    assert body["specialization_id"] is None


@pytest.mark.parametrize(
    "extra",
    [{"consultation_fee": "10.00"}, {"hospital_fee": 0}, {"specialization_id": 1}],
)
def test_fees_or_specialization_for_a_non_doctor_is_422(app, admin, surgeon, extra):
    before = users_table(app)
    res = admin.post("/api/staff", json=new_staff(**extra))
    assert res.status_code == 422
    assert list(extra) == list(res.get_json()["errors"]["json"])
    assert users_table(app) == before


def test_password_is_never_returned(admin):
    created = admin.post("/api/staff", json=new_staff()).get_json()
    listed = admin.get("/api/staff").get_json()
    one = admin.get(f"/api/staff/{created['id']}").get_json()
    for body in (created, listed, one):
        assert "password" not in str(body) and "hash" not in str(body) and "long-enough" not in str(body)


BAD_CREATE_BODIES = {
    "missing username": {"password": "long-enough", "name": "Rita", "role": "reception"},
    "missing password": {"username": "rita", "name": "Rita", "role": "reception"},
    "missing name": {"username": "rita", "password": "long-enough", "role": "reception"},
    "missing role": {"username": "rita", "password": "long-enough", "name": "Rita"},
    "short password": new_staff(password="seven77"),
    "huge password": new_staff(password="p" * 300),
    "username too short": new_staff(username="ab"),
    "username too long": new_staff(username="a" * 65),
    "username with a space": new_staff(username="rita r"),
    "username with a slash": new_staff(username="rita/r"),
    "username not a string": new_staff(username=12345),
    "unknown role": new_staff(role="nurse"),
    "role wrong case": new_staff(role="Admin"),
    "blank name": new_staff(name="   "),
    "name too long": new_staff(name="n" * 121),
    "huge name": new_staff(name="n" * 200_000),
    "name not a string": new_staff(name=["Rita"]),
    "unknown field": new_staff(is_admin=True),
    "active on create": new_staff(active=False),
    "department id as string": new_staff(department_id="1"),
    "department id float": new_staff(department_id=1.5),
    "department id boolean": new_staff(department_id=True),
    "department id zero": new_staff(department_id=0),
    "department id too big": new_staff(department_id=2**31),
    "negative fee": new_staff(role="doctor", consultation_fee="-1.00"),
    "three decimals": new_staff(role="doctor", consultation_fee="1.001"),
    "fee not a number": new_staff(role="doctor", hospital_fee="abc"),
    "fee boolean": new_staff(role="doctor", hospital_fee=True),
    "fee too large": new_staff(role="doctor", hospital_fee="10000000000.00"),
    "fee null": new_staff(role="doctor", hospital_fee=None),
}


@pytest.mark.parametrize("body", BAD_CREATE_BODIES.values(), ids=BAD_CREATE_BODIES.keys())
def test_bad_create_is_422_and_stores_nothing(app, admin, body):
    before = users_table(app)
    res = admin.post("/api/staff", json=body)
    assert res.status_code == 422, res.get_json()
    assert res.get_json()["code"] == 422 and res.get_json()["errors"]
    assert users_table(app) == before


@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_non_object_body_is_rejected(app, admin, body):
    before = users_table(app)
    res = admin.post("/api/staff", json=body)
    assert res.status_code in (400, 422)
    assert users_table(app) == before


def test_malformed_json_is_400(app, admin):
    res = admin.post("/api/staff", data="{nope", headers={"Content-Type": "application/json"})
    assert res.status_code == 400


@pytest.mark.parametrize("field", ["department_id", "specialization_id"])
def test_unknown_department_or_specialization_is_422(app, admin, field):
    before = users_table(app)
    res = admin.post("/api/staff", json=new_staff(role="doctor", **{field: 4242}))
    assert res.status_code == 422
    assert field in res.get_json()["errors"]["json"]
    assert users_table(app) == before


def test_duplicate_username_is_409_whatever_the_case(app, admin):
    assert admin.post("/api/staff", json=new_staff(username="rita")).status_code == 201
    before = users_table(app)
    res = admin.post("/api/staff", json=new_staff(username=" RITA ", name="Other Rita"))
    assert res.status_code == 409
    assert res.get_json()["code"] == 409
    assert users_table(app) == before


# --- access control ---------------------------------------------------------------


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_only_admin_manages_staff(app, as_role, make_user, role):
    caller = as_role(role)
    target = make_user("cashier")
    before = users_table(app)
    assert caller.post("/api/staff", json=new_staff()).status_code == 403
    assert caller.get("/api/staff").status_code == 403
    assert caller.get(f"/api/staff/{target.id}").status_code == 403
    assert caller.patch(f"/api/staff/{target.id}", json={"name": "Hacked"}).status_code == 403
    assert caller.patch(f"/api/staff/{target.id}", json={"active": False}).status_code == 403
    assert users_table(app) == before


def test_display_may_not_read_doctors(display, make_user):
    doc = make_user("doctor")
    assert display.get("/api/doctors").status_code == 403
    assert display.get(f"/api/doctors/{doc.id}").status_code == 403


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_staff_role_reads_doctors(as_role, make_user, role):
    doc = make_user("doctor", name="Dr. Read")
    caller = as_role(role)
    listed = caller.get("/api/doctors")
    assert listed.status_code == 200
    assert doc.id in [d["id"] for d in listed.get_json()["data"]]
    assert caller.get(f"/api/doctors/{doc.id}").status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/staff"),
        ("POST", "/api/staff"),
        ("GET", "/api/staff/1"),
        ("PATCH", "/api/staff/1"),
        ("GET", "/api/doctors"),
        ("GET", "/api/doctors/1"),
    ],
)
def test_no_token_is_401_before_validation(client, method, url):
    res = client.open(url, method=method, json={"bogus": 1})
    assert res.status_code == 401
    assert res.get_json()["code"] == 401


# --- list and read --------------------------------------------------------------------


def test_list_staff_filters_searches_and_paginates(admin, make_user):
    make_user("doctor", name="Zed Doctor", username="zed")
    make_user("doctor", name="Amy Doctor", username="amy")
    make_user("cashier", name="Bob Cashier", username="bobby")
    make_user("reception", name="Amy Front", username="front")

    everyone = admin.get("/api/staff").get_json()
    names = [s["name"] for s in everyone["data"]]
    assert names == sorted(names)
    assert everyone["meta"] == {"page": 1, "limit": 20, "total": 5}  # 4 + the admin

    doctors = admin.get("/api/staff?role=doctor").get_json()
    assert [s["name"] for s in doctors["data"]] == ["Amy Doctor", "Zed Doctor"]

    amy = admin.get("/api/staff?q=AMY").get_json()
    assert [s["name"] for s in amy["data"]] == ["Amy Doctor", "Amy Front"]
    by_username = admin.get("/api/staff?q=bobb").get_json()
    assert [s["username"] for s in by_username["data"]] == ["bobby"]
    assert admin.get("/api/staff?q=%25").get_json()["meta"]["total"] == 0  # % is literal

    page2 = admin.get("/api/staff?limit=2&page=2").get_json()
    assert page2["meta"] == {"page": 2, "limit": 2, "total": 5}
    assert [s["name"] for s in page2["data"]] == names[2:4]
    beyond = admin.get("/api/staff?limit=2&page=9").get_json()
    assert beyond["data"] == [] and beyond["meta"]["total"] == 5


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "page=0", "page=-1", "limit=abc", "role=nurse", "sort=name", "q=" + "x" * 101],
)
def test_bad_staff_query_is_422(admin, query):
    res = admin.get(f"/api/staff?{query}")
    assert res.status_code == 422


def test_get_staff_and_404s(admin, make_user):
    user = make_user("cashier", name="Cash")
    res = admin.get(f"/api/staff/{user.id}")
    assert res.status_code == 200 and res.get_json()["name"] == "Cash"
    for url in (
        "/api/staff/999999",
        "/api/staff/abc",
        "/api/staff/0",
        "/api/staff/-1",
        f"/api/staff/{2**31}",
    ):
        res = admin.get(url)
        assert res.status_code == 404, url
        assert res.get_json()["code"] == 404


# --- update ---------------------------------------------------------------------------


def test_admin_updates_an_account(app, admin, make_user, cardiology, surgeon):
    doc = make_user("doctor", name="Old Name")
    res = admin.patch(
        f"/api/staff/{doc.id}",
        json={
            "name": "New Name",
            "department_id": cardiology,
            "specialization_id": surgeon,
            "consultation_fee": 900,
            "hospital_fee": "0",
            "is_available": False,
        },
    )
    assert res.status_code == 200, res.get_json()
    body = res.get_json()
    assert body["name"] == "New Name"
    assert (body["department_id"], body["specialization_id"]) == (cardiology, surgeon)
    assert (body["consultation_fee"], body["hospital_fee"]) == ("900.00", "0.00")
    assert body["is_available"] is False
    assert admin.get(f"/api/staff/{doc.id}").get_json() == body
    # Clearing the department.
    assert (
        admin.patch(f"/api/staff/{doc.id}", json={"department_id": None}).get_json()["department_id"] is None
    )


def test_changing_a_doctors_role_clears_and_restores_doctor_fields(admin, make_user, surgeon):
    doc = make_user("doctor", specialization_id=surgeon)
    body = admin.patch(f"/api/staff/{doc.id}", json={"role": "reception"}).get_json()
    assert body["role"] == "reception"
    assert (body["consultation_fee"], body["hospital_fee"], body["specialization_id"]) == (None, None, None)
    # Back to doctor: fees default to zero unless given.
    body = admin.patch(f"/api/staff/{doc.id}", json={"role": "doctor", "hospital_fee": "50"}).get_json()
    assert (body["consultation_fee"], body["hospital_fee"]) == ("0.00", "50.00")
    # Fees for a non-doctor are refused even in the same request that changes the role.
    res = admin.patch(f"/api/staff/{doc.id}", json={"role": "cashier", "consultation_fee": "1.00"})
    assert res.status_code == 422


BAD_PATCHES = {
    "empty": {},
    "username cannot change": {"username": "other"},
    "unknown field": {"salary": 10},
    "availability as string": {"is_available": "yes"},
    "availability as number": {"is_available": 0},
    "active as string": {"active": "false"},
    "short password": {"password": "short"},
    "blank name": {"name": ""},
    "huge name": {"name": "x" * 100_000},
    "null name": {"name": None},
    "unknown role": {"role": "root"},
    "bad fee": {"consultation_fee": "12.345"},
    "negative fee": {"hospital_fee": -5},
    "department id too big": {"department_id": 2**40},
    "department id string": {"department_id": "2"},
    "unknown department": {"department_id": 777},
    "unknown specialization": {"specialization_id": 777},
}


@pytest.mark.parametrize("body", BAD_PATCHES.values(), ids=BAD_PATCHES.keys())
def test_bad_patch_is_422_and_changes_nothing(app, admin, make_user, body):
    doc = make_user("doctor")
    before = users_table(app)
    res = admin.patch(f"/api/staff/{doc.id}", json=body)
    assert res.status_code == 422, res.get_json()
    assert users_table(app) == before


def test_patch_unknown_account_is_404(admin):
    assert admin.patch("/api/staff/424242", json={"name": "X"}).status_code == 404
    assert admin.patch("/api/staff/abc", json={"name": "X"}).status_code == 404


def test_disabling_an_account_ends_its_tokens_at_once(app, client, admin, make_user):
    user = make_user("reception", password="desk-pass-1")
    token = login(client, user.username, "desk-pass-1").get_json()["access_token"]
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200

    res = admin.patch(f"/api/staff/{user.id}", json={"active": False})
    assert res.status_code == 200 and res.get_json()["active"] is False
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/doctors", headers=bearer(token)).status_code == 401
    assert login(client, user.username, "desk-pass-1").status_code == 401

    # Enabling it again lets the account sign in anew; the old token stays dead.
    assert admin.patch(f"/api/staff/{user.id}", json={"active": True}).status_code == 200
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
    fresh = login(client, user.username, "desk-pass-1").get_json()["access_token"]
    assert client.get("/api/auth/me", headers=bearer(fresh)).status_code == 200


def test_changing_the_password_ends_tokens_and_the_old_password(app, client, admin, make_user):
    user = make_user("cashier", password="old-password")
    token = login(client, user.username, "old-password").get_json()["access_token"]
    epoch = stored_user(app, user.id).token_epoch

    assert admin.patch(f"/api/staff/{user.id}", json={"password": "new-password"}).status_code == 200
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
    assert stored_user(app, user.id).token_epoch == epoch + 1
    assert login(client, user.username, "old-password").status_code == 401
    assert login(client, user.username, "new-password").status_code == 200


def test_other_changes_keep_tokens_valid(app, client, admin, make_user):
    user = make_user("doctor", password="doc-password")
    token = login(client, user.username, "doc-password").get_json()["access_token"]
    assert client.get("/api/auth/me", headers=bearer(token)).get_json()["name"] == user.name  # now cached
    assert (
        admin.patch(f"/api/staff/{user.id}", json={"name": "Renamed", "is_available": False}).status_code
        == 200
    )
    me = client.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.get_json()["name"] == "Renamed"  # the cached identity was refreshed


@pytest.mark.parametrize("body", [{"active": False}, {"role": "reception"}, {"role": "doctor", "name": "X"}])
def test_admin_cannot_disable_or_demote_themselves(app, admin, body):
    before = users_table(app)
    res = admin.patch(f"/api/staff/{admin.user.id}", json=body)
    assert res.status_code == 409
    assert users_table(app) == before
    assert admin.get("/api/auth/me").status_code == 200


def test_admin_may_change_their_own_name_and_another_admin(app, admin, as_role):
    assert (
        admin.patch(f"/api/staff/{admin.user.id}", json={"name": "Chief", "role": "admin"}).status_code == 200
    )
    assert admin.get("/api/auth/me").get_json()["name"] == "Chief"
    other = as_role("admin")
    assert admin.patch(f"/api/staff/{other.user.id}", json={"active": False}).status_code == 200
    assert other.get("/api/auth/me").status_code == 401


def test_doctor_sets_own_availability_and_nothing_else(app, as_role, make_user):
    doctor = as_role("doctor", name="Dr. Self")
    colleague = make_user("doctor")
    url = f"/api/staff/{doctor.user.id}"

    res = doctor.patch(url, json={"is_available": False})
    assert res.status_code == 200 and res.get_json()["is_available"] is False
    assert doctor.get(f"/api/doctors/{doctor.user.id}").get_json()["is_available"] is False
    assert doctor.patch(url, json={"is_available": True}).get_json()["is_available"] is True
    # Setting availability does not end the doctor's own session.
    assert doctor.get("/api/auth/me").status_code == 200

    before = users_table(app)
    for body in (
        {"name": "Dr. Promoted"},
        {"is_available": False, "name": "Dr. Sneaky"},
        {"consultation_fee": "9999.00"},
        {"role": "admin"},
        {"active": False},
        {"password": "a-new-password"},
    ):
        assert doctor.patch(url, json=body).status_code == 403, body
    assert doctor.patch(f"/api/staff/{colleague.id}", json={"is_available": False}).status_code == 403
    assert doctor.patch("/api/staff/987654", json={"is_available": False}).status_code == 403
    assert doctor.get(url).status_code == 403  # reading accounts stays admin-only
    assert users_table(app) == before


# --- the doctor directory ---------------------------------------------------------------


def test_doctor_directory_shows_active_doctors_with_their_units(
    app, reception, make_user, cardiology, surgeon
):
    neuro = add_reference(app, "Department", "Neurology")
    b = make_user("doctor", name="B Doc", department_id=cardiology, specialization_id=surgeon)
    a = make_user("doctor", name="A Doc", department_id=neuro, consultation_fee="300.50", hospital_fee="0")
    c = make_user("doctor", name="C Doc", department_id=cardiology, is_available=False)
    make_user("doctor", name="Gone Doc", active=False)
    make_user("reception", name="Not A Doc", department_id=cardiology)

    res = reception.get("/api/doctors")
    assert res.status_code == 200
    body = res.get_json()
    assert body["meta"] == {"page": 1, "limit": 20, "total": 3}
    assert [d["id"] for d in body["data"]] == [a.id, b.id, c.id]
    assert body["data"][0] == {
        "id": a.id,
        "name": "A Doc",
        "department": {"id": neuro, "name": "Neurology"},
        "specialization": None,
        "consultation_fee": "300.50",
        "hospital_fee": "0.00",
        "room": None,
        "is_available": True,
    }
    assert body["data"][1]["specialization"] == {"id": surgeon, "name": "Surgeon"}

    def ids(query):
        res = reception.get(f"/api/doctors?{query}")
        assert res.status_code == 200, res.get_json()
        return [d["id"] for d in res.get_json()["data"]]

    assert ids(f"department_id={cardiology}") == [b.id, c.id]
    assert ids(f"specialization_id={surgeon}") == [b.id]
    assert ids("available=true") == [a.id, b.id]
    assert ids("available=false") == [c.id]
    assert ids(f"department_id={cardiology}&available=true") == [b.id]
    assert ids("limit=1&page=3") == [c.id]


@pytest.mark.parametrize(
    "query",
    [
        "available=maybe",
        "available=1",
        "department_id=abc",
        "department_id=0",
        f"specialization_id={2**31}",
        "limit=0",
        "limit=101",
        "page=0",
        "name=x",
    ],
)
def test_bad_doctor_query_is_422(reception, query):
    assert reception.get(f"/api/doctors?{query}").status_code == 422


def test_doctor_detail_404_for_non_doctors_and_disabled_doctors(reception, make_user):
    gone = make_user("doctor", active=False)
    clerk = make_user("cashier")
    for doctor_id in (gone.id, clerk.id, 999999):
        res = reception.get(f"/api/doctors/{doctor_id}")
        assert res.status_code == 404
        assert res.get_json()["code"] == 404
    assert reception.get("/api/doctors/abc").status_code == 404


def test_doctor_reads_are_cached(app, reception, make_user, count_queries):
    from hms.auth.models import User
    from hms.extensions import db

    doc = make_user("doctor", name="Dr. Cache", consultation_fee="100.00")
    reception.get("/api/auth/me")  # the caller's identity is cached from here on
    first_list = reception.get("/api/doctors").get_json()
    first_one = reception.get(f"/api/doctors/{doc.id}").get_json()
    with count_queries() as counter:
        assert reception.get("/api/doctors").get_json() == first_list
        assert reception.get(f"/api/doctors/{doc.id}").get_json() == first_one
    assert counter.count == 0
    # A change behind the service's back is not seen: the answers come from the cache.
    with app.app_context():
        db.session.execute(update(User).where(User.id == doc.id).values(consultation_fee=1))
        db.session.commit()
    assert reception.get(f"/api/doctors/{doc.id}").get_json()["consultation_fee"] == "100.00"


def test_staff_writes_are_visible_in_the_directory_at_once(app, admin, reception, make_user, cardiology):
    doc = make_user("doctor", name="Dr. Fresh", consultation_fee="100.00")
    assert reception.get(f"/api/doctors/{doc.id}").get_json()["consultation_fee"] == "100.00"
    assert [d["id"] for d in reception.get("/api/doctors").get_json()["data"]] == [doc.id]

    admin.patch(f"/api/staff/{doc.id}", json={"consultation_fee": "250", "department_id": cardiology})
    one = reception.get(f"/api/doctors/{doc.id}").get_json()
    assert one["consultation_fee"] == "250.00" and one["department"] == {
        "id": cardiology,
        "name": "Cardiology",
    }
    assert reception.get("/api/doctors").get_json()["data"][0]["consultation_fee"] == "250.00"

    created = admin.post(
        "/api/staff", json=new_staff(role="doctor", username="dr.new", name="Dr. New")
    ).get_json()
    assert [d["id"] for d in reception.get("/api/doctors").get_json()["data"]] == [doc.id, created["id"]]

    admin.patch(f"/api/staff/{doc.id}", json={"active": False})
    assert reception.get(f"/api/doctors/{doc.id}").status_code == 404
    assert [d["id"] for d in reception.get("/api/doctors").get_json()["data"]] == [created["id"]]

    admin.patch(f"/api/staff/{created['id']}", json={"role": "cashier"})
    assert reception.get("/api/doctors").get_json()["data"] == []


def test_renaming_a_department_shows_in_doctor_profiles_at_once(app, admin, reception, make_user, cardiology):
    doc = make_user("doctor", department_id=cardiology)
    assert reception.get(f"/api/doctors/{doc.id}").get_json()["department"]["name"] == "Cardiology"
    assert reception.get("/api/doctors").get_json()["data"][0]["department"]["name"] == "Cardiology"
    assert admin.patch(f"/api/departments/{cardiology}", json={"name": "Heart"}).status_code == 200
    assert reception.get(f"/api/doctors/{doc.id}").get_json()["department"]["name"] == "Heart"
    assert reception.get("/api/doctors").get_json()["data"][0]["department"]["name"] == "Heart"


def test_doctor_list_costs_the_same_statements_for_1_or_20_doctors(
    app, reception, make_user, count_queries, cardiology, surgeon
):
    from hms.staff.service import forget_doctors

    def statements_for_one_page() -> list[str]:
        with app.app_context():
            forget_doctors()  # a cache miss: the database answers
        with count_queries() as counter:
            res = reception.get("/api/doctors?limit=100")
        assert res.status_code == 200
        return [s for s in counter.statements if s.lstrip().upper().startswith("SELECT")], res.get_json()

    make_user("doctor", name="Doc 0", department_id=cardiology, specialization_id=surgeon)
    reception.get("/api/auth/me")  # warm the caller's identity
    one, body = statements_for_one_page()
    assert len(body["data"]) == 1
    for i in range(1, 20):
        make_user("doctor", name=f"Doc {i:02}", department_id=cardiology, specialization_id=surgeon)
    twenty, body = statements_for_one_page()
    assert len(body["data"]) == 20
    assert all(d["department"]["name"] == "Cardiology" for d in body["data"])
    assert len(one) == len(twenty) <= 2


def test_doctor_lists_cache_only_the_unfiltered_first_page(app, admin, make_user):
    from tests.conftest import cache_key_count

    make_user("doctor", name="Meera Rao")
    assert admin.get("/api/doctors").status_code == 200
    before = cache_key_count(app)
    for n in range(40):
        assert admin.get(f"/api/doctors?page={n + 2}").status_code == 200
        assert admin.get(f"/api/doctors?department_id={n + 1}").status_code == 200
        assert admin.get(f"/api/doctors?specialization_id={n + 1}&available=true").status_code == 200
    assert cache_key_count(app) - before <= 2
    assert [d["name"] for d in admin.get("/api/doctors").get_json()["data"]] == ["Meera Rao"]
