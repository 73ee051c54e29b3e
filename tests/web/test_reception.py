"""/reception through Flask's test client: who may open it, CSRF, one patient and one
booking per rendered form, possible duplicates, errors in the clinic's words, no 500 on
bad form input, the token slip and the queue buttons."""

from __future__ import annotations

import re

import pytest

from tests.conftest import form_login
from tests.queue.stream_helpers import booking, make_patient

PASSWORD = "desk-pass-1"


def sign_in(client, make_user, role: str = "reception"):
    user = make_user(role, password=PASSWORD)
    assert form_login(client, user.username, PASSWORD).status_code == 302
    return user


def page_form(client, path: str = "/reception") -> dict:
    """The CSRF token and the idempotency keys (register form first, then book) of a page."""
    html = client.get(path).get_data(as_text=True)
    return {
        "csrf": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
        "keys": re.findall(r'name="idempotency_key" value="([^"]+)"', html),
        "html": html,
    }


def patient_count(app) -> int:
    from hms.patients.service import count_patients

    with app.app_context():
        return count_patients()


def appointments_of(app, patient_id: int) -> list:
    from sqlalchemy import select

    from hms.appointments.models import Appointment
    from hms.extensions import db

    with app.app_context():
        rows = list(db.session.scalars(select(Appointment).where(Appointment.patient_id == patient_id)))
        db.session.remove()
        return rows


def register_form(form: dict, **fields) -> dict:
    data = {"csrf_token": form["csrf"], "idempotency_key": form["keys"][0], "gender": "female"}
    data.update(fields)
    return data


# --- who may open it ---------------------------------------------------------------------


def test_reception_needs_a_session(client):
    res = client.get("/reception")
    assert res.status_code == 302 and res.headers["Location"].startswith("/login?next=/reception")


@pytest.mark.parametrize("role", ["reception", "admin"])
def test_reception_and_admin_open_the_desk(client, make_user, role):
    sign_in(client, make_user, role)
    res = client.get("/reception")
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    for label in ("Find patient", "Register patient", "Book", "Today's queues", "Sign out", "HMS Clinic"):
        assert label in html
    for field in ("Name", "Gender", "Date of birth", "Age", "Phone", "Address"):
        assert re.search(rf"<label for=\"reg-[a-z]+\">{field}</label>", html), field


@pytest.mark.parametrize("role", ["doctor", "cashier", "display"])
def test_other_roles_may_not(client, make_user, role):
    sign_in(client, make_user, role)
    assert client.get("/reception").status_code == 403
    assert client.post("/reception/patients", data={"name": "X"}).status_code == 403


@pytest.mark.parametrize(
    ("role", "where"),
    [("reception", "/reception"), ("admin", "/admin"), ("display", None), ("cashier", "/cashier")],
)
def test_home_sends_each_role_to_its_screen(client, make_user, role, where):
    make_user("doctor", name="Meera Rao")
    sign_in(client, make_user, role)
    res = client.get("/")
    if where:
        assert res.status_code == 302 and res.headers["Location"] == where
    else:  # an index: the screens this role may use, and a display per doctor
        assert res.status_code == 200
        html = res.get_data(as_text=True)
        assert "Meera Rao" in html and "/display/" in html
        assert ('href="/reception"' in html) == (role == "admin")
        assert ('href="/cashier"' in html) == (role == "admin")


# --- CSRF ----------------------------------------------------------------------------------


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(app, client, make_user):
    doctor = make_user("doctor")
    sign_in(client, make_user)
    form = page_form(client)
    patient = make_patient(app)
    for forged in ({}, {"csrf_token": "forged"}):
        data = {**register_form(form, name="Asha Kumar", age="40"), **forged}
        data.pop("csrf_token", None) if not forged else None
        assert client.post("/reception/patients", data=data).status_code == 400
        booking_data = {
            "idempotency_key": form["keys"][0],
            "patient_id": patient,
            "doctor_id": doctor.id,
            "appointment_type": "NEW",
            **forged,
        }
        assert client.post("/reception/appointments", data=booking_data).status_code == 400
    assert patient_count(app) == 1
    assert appointments_of(app, patient) == []


# --- one patient, one booking per form ---------------------------------------------------


def test_a_double_submitted_registration_registers_one_patient(app, client, make_user):
    sign_in(client, make_user)
    form = page_form(client)
    data = register_form(form, name="Asha Kumar", age="40", phone="98450 11223")
    first = client.post("/reception/patients", data=data)
    second = client.post("/reception/patients", data=data)  # a double click: the same key
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert "patient=" in first.headers["Location"]
    assert patient_count(app) == 1
    # A newly rendered form has a new key: that is a new registration (after the check).
    again = page_form(client)
    assert again["keys"][0] != form["keys"][0]


def test_a_double_submitted_booking_books_once_and_shows_the_slip(app, client, make_user):
    doctor = make_user("doctor", name="Meera Rao", room="Room 4")
    patient = make_patient(app, "Asha Kumar")
    sign_in(client, make_user)
    form = page_form(client, f"/reception?patient={patient}")
    assert len(form["keys"]) == 2  # register and book
    assert "Meera Rao · Room 4 — 0 waiting, no wait</option>" in form["html"]  # the doctor picker
    data = {
        "csrf_token": form["csrf"],
        "idempotency_key": form["keys"][1],
        "patient_id": str(patient),
        "doctor_id": str(doctor.id),
        "appointment_type": "NEW",
        "priority": "URGENT",
        "chief_complaint": "Fever",
    }
    first = client.post("/reception/appointments", data=data)
    second = client.post("/reception/appointments", data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    booked = appointments_of(app, patient)
    assert len(booked) == 1 and booked[0].priority == "URGENT" and booked[0].chief_complaint == "Fever"
    html = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "Token slip" in html and "Print token slip" in html
    assert re.search(r'id="slip-token">1<', html)


# --- possible duplicates -------------------------------------------------------------------


def test_possible_duplicates_are_shown_before_saving(app, client, make_user):
    sign_in(client, make_user)
    form = page_form(client)
    assert (
        client.post(
            "/reception/patients", data=register_form(form, name="Asha Kumar", phone="9845011223")
        ).status_code
        == 302
    )
    form = page_form(client)
    data = register_form(form, name="Asha K", phone="9845011223")
    res = client.post("/reception/patients", data=data)
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert "Possible duplicates" in html and "Asha Kumar" in html and "Register anyway" in html
    assert re.search(r'<a href="/reception\?patient=\d+" class="open-duplicate"', html)  # open one instead
    assert patient_count(app) == 1  # nothing saved yet
    # The same key comes back with the form: "Register anyway" saves it, once.
    assert f'value="{data["idempotency_key"]}"' in html
    anyway = {**data, "confirm": "register-anyway"}
    assert client.post("/reception/patients", data=anyway).status_code == 302
    assert client.post("/reception/patients", data=anyway).status_code == 302
    assert patient_count(app) == 2


# --- errors in the clinic's words, never a 500 --------------------------------------------


def test_errors_are_in_the_clinic_s_words_and_keep_what_was_typed(app, client, make_user):
    sign_in(client, make_user)
    form = page_form(client)
    res = client.post(
        "/reception/patients", data=register_form(form, name="Asha Kumar", date_of_birth="03/12/1990")
    )
    assert res.status_code == 422
    html = res.get_data(as_text=True)
    assert "Use the date format YYYY-MM-DD" in html
    assert "Not a valid date" not in html
    assert 'value="Asha Kumar"' in html and 'aria-invalid="true"' in html
    res = client.post("/reception/patients", data=register_form(form, name="", gender=""))
    assert res.status_code == 422
    assert "Name: Fill this in" in res.get_data(as_text=True)
    assert patient_count(app) == 0


def test_a_status_change_that_no_longer_applies_is_explained(app, client, make_user, reception):
    doctor = make_user("doctor")
    booked = reception.post("/api/appointments", json=booking(make_patient(app), doctor.id)).get_json()
    reception.patch(f"/api/appointments/{booked['id']}/status", json={"status": "CANCELLED"})
    sign_in(client, make_user)
    form = page_form(client)
    res = client.post(
        f"/reception/appointments/{booked['id']}/status",
        data={"csrf_token": form["csrf"], "status": "NO_SHOW"},
        headers={"HX-Request": "true"},
    )
    assert res.status_code == 200  # htmx swaps the words into the page's status line
    text = res.get_data(as_text=True)
    assert "already moved on" in text and "CANCELLED" not in text


BAD_REGISTRATIONS = [
    {"name": "A\x00B"},
    {"name": "x" * 5000},
    {"gender": "robot"},
    {"age": "abc"},
    {"age": "-4"},
    {"age": "99999999999999999999"},
    {"date_of_birth": "2999-01-01"},
    {"date_of_birth": "1990-02-30"},
    {"date_of_birth": "\x00"},
    {"phone": "call me"},
    {"phone": "+91+98"},
    {"address": "\x07" * 10},
    {"date_of_birth": "1990-01-01", "age": "3"},
]


@pytest.mark.parametrize("bad", BAD_REGISTRATIONS)
def test_no_bad_registration_input_gives_a_500(app, client, make_user, bad):
    sign_in(client, make_user)
    form = page_form(client)
    res = client.post("/reception/patients", data=register_form(form, **{"name": "Asha Kumar", **bad}))
    assert res.status_code == 422, res.get_data(as_text=True)[:500]
    if "\x00" not in "".join(bad.values()):  # NUL is refused before any view (hms.core.inputs)
        assert 'role="alert"' in res.get_data(as_text=True)
    assert patient_count(app) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"patient_id": "abc"},
        {"patient_id": "99999999999999"},
        {"patient_id": "999999"},
        {"doctor_id": "0"},
        {"doctor_id": "123456"},
        {"appointment_type": "LATER"},
        {"priority": "\x00"},
        {"chief_complaint": "x" * 2000},
        {"idempotency_key": ""},
        {"idempotency_key": "short"},
    ],
)
def test_no_bad_booking_input_gives_a_500(app, client, make_user, bad):
    doctor = make_user("doctor")
    patient = make_patient(app)
    sign_in(client, make_user)
    form = page_form(client, f"/reception?patient={patient}")
    data = {
        "csrf_token": form["csrf"],
        "idempotency_key": form["keys"][1],
        "patient_id": str(patient),
        "doctor_id": str(doctor.id),
        "appointment_type": "NEW",
        **bad,
    }
    res = client.post("/reception/appointments", data=data)
    assert res.status_code in (400, 409, 422), res.get_data(as_text=True)[:500]
    if "\x00" not in "".join(bad.values()):  # NUL is refused before any view (hms.core.inputs)
        assert 'role="alert"' in res.get_data(as_text=True)
    assert appointments_of(app, patient) == []


@pytest.mark.parametrize(
    "url",
    [
        "/reception?q=%00",
        "/reception?patient=abc&booked=999999999999",
        "/reception?booked=424242",
        "/reception/patients?q=" + "x" * 500,
        "/reception/patients?q=%00%ff",
        "/reception/slip/99999",
        "/reception/slip/1?width=a0",
    ],
)
def test_no_bad_query_gives_a_500(client, make_user, url):
    sign_in(client, make_user)
    assert client.get(url).status_code in (200, 404, 422)  # NUL: refused by hms.core.inputs


# --- find, slip, queue buttons --------------------------------------------------------------


def test_find_patient_matches_mrn_phone_and_name_as_you_type(app, client, make_user):
    sign_in(client, make_user)
    form = page_form(client)
    client.post(
        "/reception/patients", data=register_form(form, name="Asha Kumar", phone="9845011223", age="40")
    )
    from hms.patients.models import Patient

    with app.app_context():
        mrn = Patient.query.one().mrn
    for q in (mrn, "98450", "asha", "KUMAR"):
        html = client.get(f"/reception/patients?q={q}").get_data(as_text=True)
        assert "Asha Kumar" in html and "1 found" in html, q
    assert "No patient found" in client.get("/reception/patients?q=nobody").get_data(as_text=True)
    assert "<html" not in client.get("/reception/patients?q=asha").get_data(as_text=True)  # a fragment


def test_the_token_slip_shows_clinic_token_doctor_time_wait_and_the_ticket_qr(
    app, client, make_user, reception
):
    doctor = make_user("doctor", name="Meera Rao", room="Room 4")
    booked = reception.post(
        "/api/appointments", json=booking(make_patient(app, "Asha Kumar"), doctor.id)
    ).get_json()
    sign_in(client, make_user)
    for width in ("a5", "80mm"):
        res = client.get(f"/reception/slip/{booked['id']}?width={width}")
        assert res.status_code == 200
        html = res.get_data(as_text=True)
        assert "HMS Clinic" in html and 'id="token">1<' in html and "Meera Rao" in html
        assert 'id="slip-time">' in html and 'id="slip-wait">now<' in html
        assert 'id="slip-room">Room 4<' in html
        assert f"slip-{width}.css" in html
        assert "<svg" in html and "Asha" not in html  # the QR, and no name on the slip
        url = re.search(r'id="ticket-url">([^<]+)<', html).group(1)
        assert url.startswith("http://localhost/t/")


def test_cancel_no_show_and_recall_from_the_desk(app, client, make_user, reception):
    doctor = make_user("doctor", name="Meera Rao")
    first = reception.post(
        "/api/appointments", json=booking(make_patient(app, "Asha Kumar"), doctor.id)
    ).get_json()
    second = reception.post(
        "/api/appointments", json=booking(make_patient(app, "Ravi Shankar"), doctor.id)
    ).get_json()
    sign_in(client, make_user)
    form = page_form(client)
    html = form["html"]
    assert "Asha Kumar" in html and "Ravi Shankar" in html and "No-show" in html and "Cancel" in html

    def press(appointment_id: int, status: str):
        return client.post(
            f"/reception/appointments/{appointment_id}/status",
            data={"csrf_token": form["csrf"], "status": status},
        )

    assert press(first["id"], "NO_SHOW").status_code == 302
    no_shows = client.get("/reception/no-shows").get_data(as_text=True)
    assert "Asha Kumar" in no_shows and "Recall" in no_shows and "Ravi" not in no_shows
    assert press(first["id"], "WAITING").status_code == 302  # Recall: back at the end of the line
    assert "No no-shows today" in client.get("/reception/no-shows").get_data(as_text=True)
    assert press(second["id"], "CANCELLED").status_code == 302
    snapshot = reception.get(f"/api/queue/{doctor.id}").get_json()
    assert [e["patient"]["name"] for e in snapshot["entries"]] == ["Asha Kumar"]
    assert press(second["id"], "IN_CONSULTATION").status_code == 422  # not a desk button


def test_the_page_stays_under_60_kb_with_80_patients_waiting(app, client, make_user, reception):
    doctor = make_user("doctor", name="Meera Rao")
    for number in range(80):
        res = reception.post(
            "/api/appointments", json=booking(make_patient(app, f"Patient Number{number}"), doctor.id)
        )
        assert res.status_code == 201
    sign_in(client, make_user)
    html = client.get("/reception").get_data()
    assert html.count(b'formaction="/reception/appointments/') == 160  # Cancel and No-show each
    assert len(html) < 60 * 1024


def test_the_desk_reads_no_more_sql_with_more_doctors(app, client, make_user, reception, count_queries):
    """Each doctor's queue is one cached snapshot read: more doctors, no more statements."""
    from hms.staff.service import forget_doctors

    sign_in(client, make_user)
    made: list = []

    def statements_with(doctors: int) -> int:
        for _ in range(doctors):
            doctor = make_user("doctor", name=f"Doctor {len(made)}")
            made.append(doctor)
            patient = make_patient(app, f"Patient {len(made)}")
            assert reception.post("/api/appointments", json=booking(patient, doctor.id)).status_code == 201
        with app.app_context():
            forget_doctors()  # the accounts were made in the database, not through the API
        assert client.get("/reception").status_code == 200  # warms the caches
        with count_queries() as counter:
            html = client.get("/reception").get_data(as_text=True)
        assert html.count('<section class="queue"') == len(made)
        return counter.count

    few = statements_with(2)
    assert statements_with(4) == few  # 6 doctors now
