"""/doctor: the doctor's screen (test client): roles, the room, Call next, the
Prescription form (CSRF, idempotency, errors in words, no 500), the status buttons and
the prescription print view."""

from __future__ import annotations

import re

import pytest

from tests.conftest import form_login
from tests.queue.stream_helpers import booking, make_patient

PASSWORD = "room-pass-1"


@pytest.fixture
def clinic(app, admin, reception, make_user):
    """A doctor with two booked patients, a medicine catalogue and one instruction."""
    doctor = make_user("doctor", name="Meera Rao", password=PASSWORD, room="Room 4")
    paracetamol = admin.post(
        "/api/medicines",
        json={
            "name": "Crocin",
            "generic_name": "Paracetamol",
            "form": "tablet",
            "strength": "500 mg",
            "unit_price": "2.00",
        },
    ).get_json()
    amoxicillin = admin.post(
        "/api/medicines",
        json={
            "name": "Mox",
            "generic_name": "Amoxicillin",
            "form": "capsule",
            "strength": "250 mg",
            "unit_price": "5.00",
        },
    ).get_json()
    after_food = admin.post("/api/medicine-instructions", json={"text": "After food"}).get_json()
    bookings = []
    for name, complaint in (("Asha Kumar", "Fever for 3 days"), ("Ravi Shankar", "Cough")):
        res = reception.post(
            "/api/appointments",
            json={**booking(make_patient(app, name), doctor.id), "chief_complaint": complaint},
        )
        assert res.status_code == 201, res.get_json()
        bookings.append(res.get_json())
    return {
        "doctor": doctor,
        "medicines": (paracetamol, amoxicillin),
        "instruction": after_food,
        "bookings": bookings,
    }


def sign_in(client, user, password: str = PASSWORD) -> None:
    assert form_login(client, user.username, password).status_code == 302


def page_csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def form_key(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def in_room_field(html: str) -> str:
    return re.search(r'name="in_room" id="in-room" value="([^"]*)"', html).group(1)


def call_next(client, doctor_id: int):
    html = client.get("/doctor").get_data(as_text=True)
    return client.post(
        f"/doctor/{doctor_id}/next", data={"csrf_token": page_csrf(html), "in_room": in_room_field(html)}
    )


def prescription_form(html: str, clinic: dict, **overrides) -> dict:
    medicine = clinic["medicines"][0]
    data = {
        "csrf_token": page_csrf(html),
        "idempotency_key": form_key(html),
        "medicine_search": "para",
        "medicine_id": str(medicine["id"]),
        "dose": "1 tablet",
        "frequency": "1-0-1",
        "duration": "5",
        "quantity": "",
        "instruction_id": str(clinic["instruction"]["id"]),
        "notes": "Drink plenty of water.",
    }
    data.update(overrides)
    return data


def prescriptions_of(admin, appointment_id: int) -> list[dict]:
    return admin.get(f"/api/appointments/{appointment_id}/prescriptions").get_json()["data"]


# --- who sees what --------------------------------------------------------------------------


def test_the_screen_needs_a_session(client):
    res = client.get("/doctor")
    assert res.status_code == 302 and "/login?next=/doctor" in res.headers["Location"]


@pytest.mark.parametrize("role", ["reception", "cashier", "display"])
def test_other_roles_may_not_open_the_doctor_screen(client, make_user, role):
    user = make_user(role, password=PASSWORD)
    sign_in(client, user)
    assert client.get("/doctor").status_code == 403


def test_a_doctor_sees_their_own_queue_with_names(client, clinic):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    res = client.get("/doctor?doctor=999")  # a doctor's screen is always their own queue
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert "Meera Rao" in html and "Asha Kumar" in html and "Ravi Shankar" in html
    assert "Doctor's room: Meera Rao · Room 4" in html
    assert ">Call next</button>" in html
    assert "2 waiting" in html
    assert f'data-stream-url="/api/queue/{doctor.id}/stream"' in html
    assert "Nobody is in the room" in html
    assert "doctor-picker" not in html  # no picker for a doctor


def test_an_admin_picks_any_doctor(client, clinic, make_user):
    other = make_user("doctor", name="Kiran Das")
    admin_user = make_user("admin", password=PASSWORD)
    sign_in(client, admin_user)
    html = client.get("/doctor").get_data(as_text=True)
    assert '<label for="doctor-picker">Doctor</label>' in html
    assert "Meera Rao" in html and "Kiran Das" in html
    html = client.get(f"/doctor?doctor={clinic['doctor'].id}").get_data(as_text=True)
    assert "Asha Kumar" in html
    html = client.get(f"/doctor?doctor={other.id}").get_data(as_text=True)
    assert "Asha Kumar" not in html and "0 waiting" in html
    assert client.get("/doctor?doctor=999999").status_code == 404
    assert client.get("/doctor?doctor=abc").status_code == 200  # the picker again, no 500


# --- the room ---------------------------------------------------------------------------------


def test_call_next_shows_the_patient_with_age_complaint_and_history(app, client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    res = call_next(client, doctor.id)
    assert res.status_code == 302
    html = client.get(res.headers["Location"]).get_data(as_text=True)
    assert "called into the room" in html
    room = html.split('id="room"', 1)[1]
    assert "Asha Kumar" in room and "Fever for 3 days" in room
    assert re.search(r'<dt>Age</dt><dd id="room-age">[^<]+</dd>', room)
    assert "Unpaid bills" in room and "due 600.00 of 600.00" in room  # today's consultation bill
    assert "First visit." in room
    assert ">Complete</button>" in room and ">Send back to queue</button>" in room
    assert ">Prescription</h3>" in room
    for label in (
        "Find medicine (brand or generic name)",
        "Medicine",
        "Dose",
        "Frequency",
        "Duration (days)",
        "Quantity",
        "Instruction",
        "Notes",
    ):
        assert f">{label}</label>" in room, label
    assert "After food" in room  # the instruction catalogue as a select


def test_a_double_call_next_calls_one_patient(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    html = client.get("/doctor").get_data(as_text=True)
    form = {"csrf_token": page_csrf(html), "in_room": in_room_field(html)}
    assert client.post(f"/doctor/{doctor.id}/next", data=form).status_code == 302
    second = client.post(f"/doctor/{doctor.id}/next", data=form)  # the same form again
    assert second.status_code == 409
    assert "Press Call next again" in second.get_data(as_text=True)
    snapshot = admin.get(f"/api/queue/{doctor.id}").get_json()
    assert snapshot["in_consultation"]["token"] == 1 and snapshot["waiting_count"] == 1


def test_call_next_with_nobody_waiting_says_so(client, make_user):
    doctor = make_user("doctor", password=PASSWORD)
    sign_in(client, doctor)
    res = call_next(client, doctor.id)
    assert res.status_code == 409
    assert "Nobody is waiting" in res.get_data(as_text=True)


def test_forms_without_the_csrf_token_are_refused(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    assert client.post(f"/doctor/{doctor.id}/next", data={"in_room": ""}).status_code == 400
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    bad = prescription_form(html, clinic, csrf_token="forged")
    res = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=bad)
    assert res.status_code == 400 and "This form has expired" in res.get_data(as_text=True)
    res = client.post(f"/doctor/appointments/{appointment_id}/status", data={"status": "COMPLETED"})
    assert res.status_code == 400
    assert prescriptions_of(admin, appointment_id) == []
    assert admin.get(f"/api/appointments/{appointment_id}").get_json()["status"] == "IN_CONSULTATION"


# --- the prescription -----------------------------------------------------------------------


def test_a_double_submit_writes_one_prescription(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    form = prescription_form(html, clinic)
    first = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=form)
    second = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=form)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]  # the same prescription
    written = prescriptions_of(admin, appointment_id)
    assert len(written) == 1
    item = written[0]["items"][0]
    assert item["medicine"]["name"] == "Crocin" and item["quantity"] == 10  # 1-0-1 for 5 days
    assert item["instruction"]["text"] == "After food"
    # The same key with other lines is refused in words, and writes nothing.
    changed = {**form, "dose": "2 tablets"}
    res = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=changed)
    assert res.status_code == 422 and "already sent with other lines" in res.get_data(as_text=True)
    assert len(prescriptions_of(admin, appointment_id)) == 1
    # A newly rendered form has a new key: a second prescription is possible.
    html = client.get("/doctor").get_data(as_text=True)
    res = client.post(
        f"/doctor/appointments/{appointment_id}/prescriptions", data=prescription_form(html, clinic)
    )
    assert res.status_code == 302
    assert len(prescriptions_of(admin, appointment_id)) == 2


def test_several_lines_and_blank_lines(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    crocin, mox = clinic["medicines"]
    form = prescription_form(html, clinic)
    form.update(
        medicine_search=["cro", "amox", ""],
        medicine_id=[str(crocin["id"]), str(mox["id"]), ""],
        dose=["1 tablet", "1 capsule", ""],
        frequency=["1-0-1", "three times a day", ""],
        duration=["5", "7", ""],
        quantity=["", "21", ""],
        instruction_id=[str(clinic["instruction"]["id"]), "", ""],
    )
    res = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=form)
    assert res.status_code == 302, res.get_data(as_text=True)
    items = prescriptions_of(admin, appointment_id)[0]["items"]
    assert [(i["medicine"]["name"], i["frequency"], i["quantity"]) for i in items] == [
        ("Crocin", "1-0-1", 10),
        ("Mox", "three times a day", 21),
    ]
    assert items[1]["instruction"] is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"medicine_id": ""}, "Line 1: choose a medicine"),
        ({"dose": ""}, "Line 1: enter the dose"),
        ({"frequency": ""}, "Line 1: enter how often"),
        ({"duration": "ten"}, "Line 1: enter the duration in days"),
        ({"duration": "0"}, "Line 1: enter the duration in days"),
        ({"duration": "99999999999999999999"}, "Line 1: enter the duration in days"),
        ({"frequency": "twice a day", "quantity": ""}, "Line 1: enter the quantity"),
        ({"quantity": "-3"}, "Line 1: enter the quantity"),
        ({"instruction_id": "x"}, "Line 1: choose an instruction"),
        ({"medicine_id": "999999"}, "Line 1: that medicine is no longer in the catalogue"),
        ({"instruction_id": "999999"}, "Line 1: that instruction is no longer in the catalogue"),
        ({"dose": "x" * 61}, "the dose is too long"),
        ({"notes": "n" * 2001}, "The notes are too long"),
        (
            {"medicine_id": "", "dose": "", "frequency": "", "duration": "", "instruction_id": ""},
            "Add at least one medicine",
        ),
        ({"idempotency_key": ""}, "This form has expired"),
        ({"dose": "1 tablet\x00"}, None),
    ],
)
def test_bad_prescription_input_is_refused_in_words(client, clinic, admin, overrides, words):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    res = client.post(
        f"/doctor/appointments/{appointment_id}/prescriptions",
        data=prescription_form(html, clinic, **overrides),
    )
    assert 400 <= res.status_code < 500
    body = res.get_data(as_text=True)
    if words is not None:
        assert words in body
        assert 'role="alert"' in body
        assert "Asha Kumar" in body  # the screen again, with what was typed kept
    assert prescriptions_of(admin, appointment_id) == []


def test_only_the_patients_own_doctor_prescribes(app, client, clinic, admin, make_user):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    html = client.get("/doctor").get_data(as_text=True)
    form = prescription_form(html, clinic)
    other = make_user("doctor", password=PASSWORD)
    client.post("/logout", data={"csrf_token": page_csrf(html)})
    sign_in(client, other)
    html = client.get("/doctor").get_data(as_text=True)
    form.update(csrf_token=page_csrf(html), idempotency_key="another-doctors-form-key")
    appointment_id = clinic["bookings"][0]["id"]
    res = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=form)
    assert res.status_code == 403 and "own doctor" in res.get_data(as_text=True)
    assert prescriptions_of(admin, appointment_id) == []


def test_a_prescription_for_a_patient_no_longer_in_consultation(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    html = client.get("/doctor").get_data(as_text=True)  # nobody in the room: no form, but post anyway
    assert 'name="idempotency_key"' not in html
    form = {
        **prescription_form(html.replace("</main>", 'name="idempotency_key" value="x"'), clinic),
        "idempotency_key": "k" * 20,
    }
    appointment_id = clinic["bookings"][1]["id"]  # WAITING
    res = client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=form)
    assert res.status_code == 409
    assert "no longer in consultation" in res.get_data(as_text=True)


# --- Complete, Send back, No-show, and the print view ---------------------------------------


def status_form(client, status: str, doctor_id: int) -> dict:
    html = client.get("/doctor").get_data(as_text=True)
    return {"csrf_token": page_csrf(html), "status": status, "doctor_id": str(doctor_id)}


def test_complete_then_print_the_prescription(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=prescription_form(html, clinic))
    res = client.post(
        f"/doctor/appointments/{appointment_id}/status", data=status_form(client, "COMPLETED", doctor.id)
    )
    assert res.status_code == 302
    html = client.get(res.headers["Location"]).get_data(as_text=True)
    assert "consultation completed" in html
    prescription_id = prescriptions_of(admin, appointment_id)[0]["id"]
    link = f'href="/prescriptions/{prescription_id}/print"'
    assert link in html and "Prescription 1 (print)" in html
    assert admin.get(f"/api/appointments/{appointment_id}").get_json()["status"] == "COMPLETED"
    printed = client.get(f"/prescriptions/{prescription_id}/print")
    assert printed.status_code == 200
    sheet = printed.get_data(as_text=True)
    for text in (
        "Meera Rao",
        "Asha Kumar",
        "RT",
        "Crocin 500 mg tablet",
        "1 tablet",
        "1-0-1",
        "5 days",
        "After food",
        "<td>10</td>",
        "Drink plenty of water.",
    ):
        assert text in sheet, text
    assert "print.css" in sheet and '<button type="button" id="print-now" autofocus>Print</button>' in sheet


@pytest.mark.parametrize("role", ["reception", "cashier", "admin"])
def test_the_print_view_is_for_the_roles_that_read_prescriptions(client, clinic, make_user, role, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    appointment_id = clinic["bookings"][0]["id"]
    html = client.get("/doctor").get_data(as_text=True)
    client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data=prescription_form(html, clinic))
    prescription_id = prescriptions_of(admin, appointment_id)[0]["id"]
    client.post("/logout", data={"csrf_token": page_csrf(html)})
    sign_in(client, make_user(role, password=PASSWORD))
    assert client.get(f"/prescriptions/{prescription_id}/print").status_code == 200
    assert client.get("/prescriptions/999999/print").status_code == 404


def test_the_display_role_may_not_print_prescriptions(client, make_user):
    sign_in(client, make_user("display", password=PASSWORD))
    assert client.get("/prescriptions/1/print").status_code == 403


def test_send_back_and_no_show(client, clinic, admin):
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    first, second = (b["id"] for b in clinic["bookings"])
    res = client.post(f"/doctor/appointments/{first}/status", data=status_form(client, "WAITING", doctor.id))
    assert res.status_code == 302
    assert "sent back to the queue" in client.get(res.headers["Location"]).get_data(as_text=True)
    res = client.post(f"/doctor/appointments/{second}/status", data=status_form(client, "NO_SHOW", doctor.id))
    assert res.status_code == 302
    assert admin.get(f"/api/appointments/{second}").get_json()["status"] == "NO_SHOW"
    # Twice: the second is refused in words, not a 500.
    res = client.post(f"/doctor/appointments/{second}/status", data=status_form(client, "NO_SHOW", doctor.id))
    assert res.status_code == 409 and "has moved on" in res.get_data(as_text=True)
    res = client.post(
        f"/doctor/appointments/{first}/status", data=status_form(client, "CANCELLED", doctor.id)
    )
    assert res.status_code == 400 and "Choose Complete" in res.get_data(as_text=True)


def test_a_doctor_may_not_change_another_doctors_patient(client, clinic, make_user, admin):
    other = make_user("doctor", password=PASSWORD)
    sign_in(client, other)
    appointment_id = clinic["bookings"][0]["id"]
    res = client.post(
        f"/doctor/appointments/{appointment_id}/status", data=status_form(client, "NO_SHOW", other.id)
    )
    assert res.status_code == 403 and "your own queue" in res.get_data(as_text=True)
    assert (
        client.post(f"/doctor/{clinic['doctor'].id}/next", data=status_form(client, "x", 0)).status_code
        == 403
    )
    assert admin.get(f"/api/appointments/{appointment_id}").get_json()["status"] == "WAITING"
    assert client.get(f"/doctor/{clinic['doctor'].id}/room").status_code == 403


def test_medicine_search_as_you_type(client, clinic):
    sign_in(client, clinic["doctor"])
    found = client.get("/doctor/medicines?q=cro").get_json()["results"]
    assert [m["label"] for m in found] == ["Crocin 500 mg tablet (Paracetamol)"]
    assert client.get("/doctor/medicines?q=c").get_json()["results"] == []
    by_generic = client.get("/doctor/medicines?q=paracetamol").get_json()["results"]
    assert [m["label"] for m in by_generic] == ["Crocin 500 mg tablet (Paracetamol)"]
    assert client.get("/doctor/medicines?q=%00%00").status_code in (200, 400, 422)


def test_the_room_panel_and_the_screen_take_a_fixed_number_of_statements(
    client, clinic, app, admin, count_queries
):
    """The room panel's history is paginated and bounded: more past visits, prescriptions
    and bills do not add statements (no N+1)."""
    doctor = clinic["doctor"]
    sign_in(client, doctor)
    call_next(client, doctor.id)
    patient_id = clinic["bookings"][0]["patient_id"]

    def room_statements(more_visits: int) -> tuple[int, str]:
        for _ in range(more_visits):
            assert admin.post("/api/appointments", json=booking(patient_id, doctor.id)).status_code == 201
        client.get(f"/doctor/{doctor.id}/room")  # the queue snapshot changed: cache it again
        with count_queries() as counter:
            res = client.get(f"/doctor/{doctor.id}/room")
        assert res.status_code == 200
        return counter.count, res.get_data(as_text=True)

    few, _ = room_statements(1)  # one past visit, two bills due
    many, html = room_statements(6)  # seven past visits, eight bills due
    assert many == few
    assert "and 3 more" in html  # 8 bills due, 5 shown
    assert "and 2 earlier" in html  # 7 past visits, 5 shown


def test_an_admin_runs_any_doctors_room_but_does_not_prescribe(client, clinic, make_user, admin):
    doctor = clinic["doctor"]
    sign_in(client, make_user("admin", password=PASSWORD))
    html = client.get(f"/doctor?doctor={doctor.id}").get_data(as_text=True)
    res = client.post(f"/doctor/{doctor.id}/next", data={"csrf_token": page_csrf(html), "in_room": ""})
    assert res.status_code == 302 and f"doctor={doctor.id}" in res.headers["Location"]
    html = client.get(res.headers["Location"]).get_data(as_text=True)
    assert "Asha Kumar" in html.split('id="room"', 1)[1]
    assert "Only the patient's own doctor writes the prescription." in html
    assert 'id="prescription-form"' not in html
    appointment_id = clinic["bookings"][0]["id"]
    res = client.post(
        f"/doctor/appointments/{appointment_id}/status",
        data={"csrf_token": page_csrf(html), "status": "COMPLETED", "doctor_id": str(doctor.id)},
    )
    assert res.status_code == 302 and f"doctor={doctor.id}" in res.headers["Location"]
    assert admin.get(f"/api/appointments/{appointment_id}").get_json()["status"] == "COMPLETED"
    # The prescription route is the doctor's alone (API.md: write prescriptions).
    assert client.post(f"/doctor/appointments/{appointment_id}/prescriptions", data={}).status_code == 403


def test_the_screen_script_follows_the_stream_and_says_when_it_is_down(client, clinic):
    sign_in(client, clinic["doctor"])
    script = client.get("/static/doctor.js").get_data(as_text=True)
    assert "new EventSource" in script and "Reconnecting…" in script
    assert 'case "KeyN"' in script and 'case "KeyC"' in script


def test_the_screen_stays_small_with_80_patients_waiting(app, client, reception, make_user):
    """CONSOLES.md's aim: a console page under 60 KB of HTML with 80 patients waiting."""
    doctor = make_user("doctor", name="Meera Rao", password=PASSWORD, room="Room 4")
    for number in range(80):
        patient_id = make_patient(app, f"Patient Number {number} Longname")
        res = reception.post(
            "/api/appointments",
            json={**booking(patient_id, doctor.id), "chief_complaint": "Fever and cough for three days"},
        )
        assert res.status_code == 201
    sign_in(client, doctor)
    html = client.get("/doctor").get_data()
    assert html.count(b"<li data-appointment-id=") == 80
    assert html.count(b">No-show</button>") == 80
    assert len(html) < 60 * 1024, len(html)
