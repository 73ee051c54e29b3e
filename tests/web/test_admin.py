"""/admin through Flask's test client: who may open it, staff accounts (add, sign in,
disable, enable, reset password, a doctor's fees, room and availability), CSRF, one
account per rendered form, errors in the clinic's words, no 500 on bad input, and the
statement count of the list."""

from __future__ import annotations

import re

import pytest

from tests.conftest import form_login

PASSWORD = "admin-pass-1"


def sign_in(client, make_user, role: str = "admin", **fields):
    user = make_user(role, password=PASSWORD, **fields)
    assert form_login(client, user.username, PASSWORD).status_code == 302
    return user


def form_of(client, path: str) -> dict:
    """The CSRF token and the idempotency key of a page's creating form."""
    html = client.get(path).get_data(as_text=True)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    return {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
        "idempotency_key": key.group(1) if key else None,
        "html": html,
    }


def new_staff(client, **fields) -> dict:
    data = form_of(client, "/admin/staff")
    data.pop("html")
    data.update({"username": "asha", "name": "Asha Rao", "role": "reception", "password": "front-desk-1"})
    data.update(fields)
    return data


def account(app, username: str):
    from sqlalchemy import select

    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        if user is not None:
            db.session.expunge(user)
        db.session.remove()
        return user


def staff_count(app) -> int:
    from sqlalchemy import func, select

    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(User))
        db.session.remove()
        return count


def can_sign_in(app, username: str, password: str) -> bool:
    return form_login(app.test_client(), username, password).status_code == 302


def add_department(admin, name: str = "General Medicine") -> int:
    res = admin.post("/api/departments", json={"name": name})
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


# --- who may open it ---------------------------------------------------------------------


def test_the_console_needs_a_session(client):
    for path in ("/admin", "/admin/staff", "/admin/reference/medicines"):
        res = client.get(path)
        assert res.status_code == 302 and res.headers["Location"].startswith(f"/login?next={path}")


@pytest.mark.parametrize("role", ["reception", "doctor", "cashier", "display"])
def test_other_roles_may_not(client, make_user, role):
    sign_in(client, make_user, role)
    for path in ("/admin", "/admin/staff", "/admin/staff/1", "/admin/reference/medicines"):
        assert client.get(path).status_code == 403, path
    assert client.post("/admin/staff", data={"username": "x"}).status_code == 403
    assert client.post("/admin/reference/medicines", data={"name": "x"}).status_code == 403
    assert client.post("/admin/staff/1/active", data={"active": "0"}).status_code == 403


def test_home_sends_the_admin_to_the_console(client, make_user):
    make_user("doctor", name="Meera Rao")
    sign_in(client, make_user)
    res = client.get("/")
    assert res.status_code == 302 and res.headers["Location"] == "/admin"
    html = client.get("/admin").get_data(as_text=True)
    for words in ("Staff", "Reference data", "Reports", "Screens", "Waiting-room displays"):
        assert words in html
    assert 'href="/admin/reports"' in html and 'href="/admin/staff"' in html
    assert 'href="/reception"' in html and "/display/" in html and "Meera Rao" in html
    for title in ("Departments", "Medicines", "Bill categories", "Medicine instructions", "Test types"):
        assert title in html
    assert 'accesskey="s"' in html and "<kbd>Alt</kbd>+<kbd>S</kbd> Staff" in html


# --- staff accounts ----------------------------------------------------------------------


def test_an_added_account_can_sign_in(app, client, make_user):
    sign_in(client, make_user)
    res = client.post("/admin/staff", data=new_staff(client))
    assert res.status_code == 302 and re.fullmatch(r"/admin/staff/\d+\?added=1", res.headers["Location"])
    page = client.get(res.headers["Location"]).get_data(as_text=True)
    assert "Account added" in page and "Asha Rao" in page
    assert can_sign_in(app, "asha", "front-desk-1")
    listing = client.get("/admin/staff?role=reception").get_data(as_text=True)
    assert "Asha Rao" in listing and "asha" in listing


def test_an_added_doctor_is_in_the_directory_with_fees_and_room(app, client, make_user, admin):
    department = add_department(admin)
    sign_in(client, make_user)
    data = new_staff(
        client,
        username="meera",
        name="Meera Rao",
        role="doctor",
        department_id=str(department),
        consultation_fee="500",
        hospital_fee="100.50",
        room="Room 4",
        is_available="on",
    )
    assert client.post("/admin/staff", data=data).status_code == 302
    doctors = admin.get("/api/doctors").get_json()["data"]
    assert [
        (d["name"], d["consultation_fee"], d["hospital_fee"], d["room"], d["is_available"]) for d in doctors
    ] == [("Meera Rao", "500.00", "100.50", "Room 4", True)]
    assert doctors[0]["department"]["name"] == "General Medicine"


def test_a_double_submit_adds_one_account(app, client, make_user):
    sign_in(client, make_user)
    data = new_staff(client)
    before = staff_count(app)
    first = client.post("/admin/staff", data=data)
    second = client.post("/admin/staff", data=data)  # the same rendered form again
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert staff_count(app) == before + 1


def test_a_used_form_sent_again_with_other_values_is_reset(app, client, make_user):
    sign_in(client, make_user)
    data = new_staff(client)
    assert client.post("/admin/staff", data=data).status_code == 302
    res = client.post("/admin/staff", data={**data, "username": "someone", "name": "Someone Else"})
    assert res.status_code == 422
    html = res.get_data(as_text=True)
    assert "This form was already sent with other values" in html
    assert data["idempotency_key"] not in html  # a fresh key for the fresh form
    assert account(app, "someone") is None


def test_without_the_csrf_token_nothing_is_written(app, client, make_user):
    admin_user = sign_in(client, make_user)
    other = make_user("reception", password="old-password-1")
    before = staff_count(app)
    for forged in ({}, {"csrf_token": "forged"}):
        data = {**new_staff(client), **forged}
        if not forged:
            del data["csrf_token"]
        assert client.post("/admin/staff", data=data).status_code == 400
        assert (
            client.post(f"/admin/staff/{other.id}/active", data={"active": "0", **forged}).status_code == 400
        )
        changed = {"password": "new-password-1", **forged}
        assert client.post(f"/admin/staff/{other.id}/password", data=changed).status_code == 400
        assert client.post(f"/admin/staff/{other.id}", data={"name": "Renamed", **forged}).status_code == 400
    assert staff_count(app) == before
    assert account(app, other.username).active and account(app, other.username).name == other.name
    assert can_sign_in(app, other.username, "old-password-1")
    assert account(app, admin_user.username).active


def test_a_taken_username_is_said_beside_the_field(app, client, make_user):
    sign_in(client, make_user)
    make_user("reception", username="asha")
    res = client.post("/admin/staff", data=new_staff(client))
    assert res.status_code == 409
    html = res.get_data(as_text=True)
    assert 'id="add-username-error"' in html and "This username is taken: choose another" in html
    assert 'value="Asha Rao"' in html  # what the admin typed is kept
    assert "front-desk-1" not in html  # never the password


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"username": "A!"}, "username", "Use 3 to 64 of a-z, 0-9, dot, dash or underscore"),
        ({"password": "short"}, "password", "Use 8 to 256 characters"),
        ({"name": "   "}, "name", "Fill this in"),
        ({"name": "x" * 500}, "name", "This is too long"),
        ({"role": "janitor"}, "role", "Pick one of the choices"),
        ({"role": "doctor", "consultation_fee": "-5"}, "consultation_fee", "An amount cannot be negative"),
        ({"role": "doctor", "consultation_fee": "1e99"}, "consultation_fee", "Enter an amount like 150.00"),
        (
            {"role": "doctor", "hospital_fee": "99999999999999"},
            "hospital_fee",
            "Use an amount up to 9999999999.99",
        ),
        ({"role": "doctor", "room": "R" * 80}, "room", "Use at most 40 characters"),
        (
            {"consultation_fee": "100"},
            "consultation_fee",
            "Only doctors have this: leave it empty for this role",
        ),
        ({"department_id": "999999"}, "department_id", "Pick a department from the list"),
        ({"department_id": "99999999999999"}, "department_id", "Enter a whole number"),
    ],
)
def test_bad_input_is_said_in_the_clinic_s_words(app, client, make_user, fields, field, words):
    sign_in(client, make_user)
    before = staff_count(app)
    res = client.post("/admin/staff", data=new_staff(client, **fields))
    assert res.status_code == 422, res.get_data(as_text=True)[:500]
    html = res.get_data(as_text=True)
    error_id = "add-" + field.replace("_id", "").replace("_", "-") + "-error"
    assert re.search(rf'id="{error_id}">{re.escape(words)}<', html), (error_id, words)
    assert staff_count(app) == before


def test_a_nul_byte_is_refused_not_a_500(app, client, make_user):
    sign_in(client, make_user)
    res = client.post("/admin/staff", data=new_staff(client, name="Asha\x00Rao"))
    assert res.status_code == 422
    res = client.get("/admin/staff?q=a%00b")
    assert res.status_code in (200, 422)


def test_disabling_ends_the_account_s_sessions(app, client, make_user):
    sign_in(client, make_user)
    user = make_user("reception", password="desk-pass-1")
    theirs = app.test_client()
    assert form_login(theirs, user.username, "desk-pass-1").status_code == 302
    assert theirs.get("/reception").status_code == 200
    token = form_of(client, f"/admin/staff/{user.id}")["csrf_token"]
    res = client.post(f"/admin/staff/{user.id}/active", data={"csrf_token": token, "active": "0"})
    assert res.status_code == 302
    assert "Account disabled" in client.get(res.headers["Location"]).get_data(as_text=True)
    assert theirs.get("/reception").status_code == 302  # their open session ended
    assert not can_sign_in(app, user.username, "desk-pass-1")
    # Enabled again: they sign in again (the old session stays ended).
    res = client.post(f"/admin/staff/{user.id}/active", data={"csrf_token": token, "active": "1"})
    assert res.status_code == 302
    assert theirs.get("/reception").status_code == 302
    assert can_sign_in(app, user.username, "desk-pass-1")


def test_an_admin_cannot_disable_themselves(app, client, make_user):
    me = sign_in(client, make_user)
    token = form_of(client, f"/admin/staff/{me.id}")["csrf_token"]
    res = client.post(f"/admin/staff/{me.id}/active", data={"csrf_token": token, "active": "0"})
    assert res.status_code == 409
    assert "You cannot disable your own account" in res.get_data(as_text=True)
    assert account(app, me.username).active


def test_reset_password_typed(app, client, make_user):
    sign_in(client, make_user)
    user = make_user("cashier", password="old-password-1")
    theirs = app.test_client()
    form_login(theirs, user.username, "old-password-1")
    token = form_of(client, f"/admin/staff/{user.id}")["csrf_token"]
    res = client.post(
        f"/admin/staff/{user.id}/password", data={"csrf_token": token, "password": "new-password-1"}
    )
    assert res.status_code == 302
    assert "Password changed" in client.get(res.headers["Location"]).get_data(as_text=True)
    assert not can_sign_in(app, user.username, "old-password-1")
    assert can_sign_in(app, user.username, "new-password-1")
    assert theirs.get("/").status_code == 302 and "/login" in theirs.get("/").headers["Location"]


def test_reset_password_drawn_is_shown_once(app, client, make_user):
    sign_in(client, make_user)
    user = make_user("cashier", password="old-password-1")
    token = form_of(client, f"/admin/staff/{user.id}")["csrf_token"]
    res = client.post(f"/admin/staff/{user.id}/password", data={"csrf_token": token, "password": ""})
    assert res.status_code == 200 and res.headers["Cache-Control"] == "no-store"
    drawn = re.search(r'<code id="new-password">([^<]+)</code>', res.get_data(as_text=True)).group(1)
    assert len(drawn) == 12
    assert can_sign_in(app, user.username, drawn)
    assert not can_sign_in(app, user.username, "old-password-1")
    assert drawn not in client.get(f"/admin/staff/{user.id}").get_data(as_text=True)


def test_a_short_reset_password_is_refused_in_words(app, client, make_user):
    sign_in(client, make_user)
    user = make_user("cashier", password="old-password-1")
    token = form_of(client, f"/admin/staff/{user.id}")["csrf_token"]
    res = client.post(f"/admin/staff/{user.id}/password", data={"csrf_token": token, "password": "short"})
    assert res.status_code == 422
    assert 'id="reset-password-error">Use 8 to 256 characters<' in res.get_data(as_text=True)
    assert can_sign_in(app, user.username, "old-password-1")


def test_a_doctor_s_fees_room_and_availability_show_in_the_directory(app, client, make_user, admin):
    sign_in(client, make_user)
    doctor = make_user("doctor", name="Meera Rao")
    assert admin.get(f"/api/doctors/{doctor.id}").get_json()["consultation_fee"] == "500.00"  # cached now
    page = form_of(client, f"/admin/staff/{doctor.id}")
    assert 'value="500.00"' in page["html"] and "Taking bookings" in page["html"]
    changes = {
        "csrf_token": page["csrf_token"],
        "name": "Meera Rao",
        "consultation_fee": "650",
        "hospital_fee": "120.25",
        "room": "Room 9",
    }  # Taking bookings left unticked
    res = client.post(f"/admin/staff/{doctor.id}", data=changes)
    assert res.status_code == 302 and "saved=1" in res.headers["Location"]
    seen = admin.get(f"/api/doctors/{doctor.id}").get_json()
    assert (seen["consultation_fee"], seen["hospital_fee"], seen["room"], seen["is_available"]) == (
        "650.00",
        "120.25",
        "Room 9",
        False,
    )
    res = client.post(f"/admin/staff/{doctor.id}", data={**changes, "consultation_fee": "-1"})
    assert res.status_code == 422
    assert "An amount cannot be negative" in res.get_data(as_text=True)
    assert admin.get(f"/api/doctors/{doctor.id}").get_json()["consultation_fee"] == "650.00"


def test_the_staff_list_filters_searches_and_pages(client, make_user):
    sign_in(client, make_user, name="Zed Admin")
    for n in range(23):
        make_user("reception", name=f"Desk {n:02d}")
    make_user("doctor", name="Meera Rao", username="meera")
    html = client.get("/admin/staff?role=doctor").get_data(as_text=True)
    assert "Meera Rao" in html and "Desk 00" not in html
    html = client.get("/admin/staff?q=meer").get_data(as_text=True)
    assert "Meera Rao" in html and "Desk" not in html
    first = client.get("/admin/staff?role=reception").get_data(as_text=True)
    assert "Page 1 of 2" in first and "Desk 19" in first and "Desk 20" not in first
    second = client.get("/admin/staff?role=reception&page=2").get_data(as_text=True)
    assert "Desk 20" in second and "Desk 22" in second
    assert client.get("/admin/staff?page=zzz&role=nobody").status_code == 200


def test_the_staff_list_costs_the_same_statements_with_more_rows(app, client, make_user, count_queries):
    sign_in(client, make_user)
    for n in range(3):
        make_user("reception", name=f"Desk {n}")
    client.get("/admin/staff")  # warm the caches
    with count_queries() as few:
        assert client.get("/admin/staff").status_code == 200
    for n in range(15):
        make_user("doctor", name=f"Doctor {n}")
    client.get("/admin/staff")
    with count_queries() as many:
        assert client.get("/admin/staff").status_code == 200
    assert many.count == few.count


def test_a_receptionist_s_name_and_department_change(app, client, make_user, admin):
    department = add_department(admin, "Front Office")
    sign_in(client, make_user)
    user = make_user("reception", name="Lata Desk")
    page = form_of(client, f"/admin/staff/{user.id}")
    assert "Consultation fee" not in page["html"]  # doctors only
    data = {"csrf_token": page["csrf_token"], "name": "Lata Menon", "department_id": str(department)}
    assert client.post(f"/admin/staff/{user.id}", data=data).status_code == 302
    changed = account(app, user.username)
    assert (changed.name, changed.department_id) == ("Lata Menon", department)
    listing = client.get("/admin/staff?q=lata").get_data(as_text=True)
    assert "Lata Menon" in listing and "Front Office" in listing
    res = client.post(f"/admin/staff/{user.id}", data={**data, "room": "Room 1", "name": ""})
    assert res.status_code == 422
    assert 'id="edit-name-error">Fill this in<' in res.get_data(as_text=True)
