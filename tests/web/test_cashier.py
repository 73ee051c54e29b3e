"""/cashier through Flask's test client: who may open it, CSRF, one payment per rendered
form, errors in the clinic's words, no 500 on bad form input, refund and void for admin
only, prescribed medicines billed once, a flat statement count, the receipt."""

from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest

from tests.conftest import form_login, uses_postgres
from tests.queue.stream_helpers import booking, make_patient

PASSWORD = "till-pass-1"


def sign_in(client, make_user, role: str = "cashier"):
    user = make_user(role, password=PASSWORD)
    assert form_login(client, user.username, PASSWORD).status_code == 302
    return user


def page(client, path: str) -> dict:
    html = client.get(path).get_data(as_text=True)
    return {
        "csrf": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1),
        "keys": re.findall(r'name="idempotency_key" value="([^"]+)"', html),
        "html": html,
    }


@pytest.fixture
def visit(app, admin, make_user):
    """A booking (it opens the visit's bill: fees 500.00 + 100.00); its ids."""

    def make(name: str = "Meera Iyer", doctor=None) -> dict:
        doctor = doctor or make_user("doctor", name="Dr Rao")
        patient_id = make_patient(app, name)
        res = admin.post("/api/appointments", json=booking(patient_id, doctor.id))
        assert res.status_code == 201, res.get_json()
        appointment_id = res.get_json()["id"]
        bill = admin.get(f"/api/appointments/{appointment_id}/bills").get_json()["data"][0]
        return {"appointment_id": appointment_id, "bill": bill, "patient_id": patient_id, "doctor": doctor}

    return make


def payments_of(app, bill_id: int) -> list:
    from sqlalchemy import select

    from hms.billing.models import Payment
    from hms.extensions import db

    with app.app_context():
        rows = list(db.session.scalars(select(Payment).where(Payment.bill_id == bill_id)))
        db.session.remove()
        return rows


def pay_form(form: dict, **fields) -> dict:
    data = {"csrf_token": form["csrf"], "idempotency_key": form["keys"][0], "method": "CASH"}
    data.update(fields)
    return data


# --- who may open it ---------------------------------------------------------------------


def test_the_till_needs_a_session(client):
    res = client.get("/cashier")
    assert res.status_code == 302 and res.headers["Location"].startswith("/login?next=/cashier")


@pytest.mark.parametrize("role", ["cashier", "admin"])
def test_cashier_and_admin_open_the_till(client, make_user, role):
    sign_in(client, make_user, role)
    res = client.get("/cashier")
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    for words in ("Bills to collect", "Cash-up", "Find bill", 'accesskey="f"', "Alt</kbd>+<kbd>P"):
        assert words in html


@pytest.mark.parametrize("role", ["reception", "doctor", "display"])
def test_other_roles_may_not(client, make_user, role):
    sign_in(client, make_user, role)
    assert client.get("/cashier").status_code == 403
    assert client.get("/cashier/bills").status_code == 403


def test_home_sends_the_cashier_to_the_till_and_lists_it_for_admin(client, make_user):
    sign_in(client, make_user, "cashier")
    res = client.get("/")
    assert res.status_code == 302 and res.headers["Location"].endswith("/cashier")
    client.post("/logout", data={"csrf_token": page(client, "/cashier")["csrf"]})
    sign_in(client, make_user, "admin")
    assert client.get("/").headers["Location"].endswith("/admin")
    assert 'href="/cashier"' in client.get("/admin").get_data(as_text=True)


# --- the list ----------------------------------------------------------------------------


def test_todays_unpaid_bills_are_listed_and_searchable(client, make_user, visit, admin):
    first = visit("Meera Iyer")
    second = visit("Ravi Shankar", doctor=first["doctor"])
    sign_in(client, make_user)
    html = client.get("/cashier").get_data(as_text=True)
    assert first["bill"]["number"] in html and second["bill"]["number"] in html
    assert html.index(second["bill"]["number"]) < html.index(first["bill"]["number"])  # newest first
    found = client.get("/cashier/bills?q=ravi").get_data(as_text=True)
    assert second["bill"]["number"] in found and first["bill"]["number"] not in found
    by_number = client.get(f"/cashier/bills?q={first['bill']['number'].lower()}").get_data(as_text=True)
    assert first["bill"]["number"] in by_number and second["bill"]["number"] not in by_number
    assert client.get("/cashier/bills?q=%00%00").status_code in (200, 422)  # never a 500
    # A paid bill leaves the list of today's bills to collect.
    admin.post(
        f"/api/bills/{first['bill']['id']}/payments",
        json={"amount": first["bill"]["due_amount"], "method": "CASH"},
    )
    assert first["bill"]["number"] not in client.get("/cashier/bills").get_data(as_text=True)


def test_statements_stay_flat_as_bills_grow(client, make_user, visit, count_queries):
    first = visit()
    sign_in(client, make_user)
    client.get(f"/cashier?bill={first['bill']['id']}")  # the session's first reads, cached after
    with count_queries() as few:
        assert client.get(f"/cashier?bill={first['bill']['id']}").status_code == 200
    for n in range(4):
        visit(f"Patient {n}", doctor=first["doctor"])
    with count_queries() as many:
        assert client.get(f"/cashier?bill={first['bill']['id']}").status_code == 200
    assert many.count == few.count


# --- take payment ------------------------------------------------------------------------


def test_a_bill_shows_items_payments_and_due_and_the_amount_defaults_to_due(client, make_user, visit):
    bill = visit()["bill"]
    sign_in(client, make_user)
    html = client.get(f"/cashier?bill={bill['id']}").get_data(as_text=True)
    assert "Take payment" in html and "Print receipt" in html
    assert re.search(r'id="pay-amount" name="amount" value="600.00"', html)
    for label in ("Amount", "Method", "Reference"):
        assert re.search(rf'<label for="pay-[a-z]+">{label}</label>', html), label
    assert "Refund" not in html and "Void" not in html  # cashiers don't see them


def test_csrf_is_refused_and_nothing_written(app, client, make_user, visit):
    bill = visit()["bill"]
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    res = client.post(
        f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="10", csrf_token="forged")
    )
    assert res.status_code == 400 and "This form has expired" in res.get_data(as_text=True)
    assert payments_of(app, bill["id"]) == []


def test_a_double_submit_pays_once_then_the_rest(app, client, make_user, visit):
    bill = visit()["bill"]
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    first = client.post(f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="200"))
    second = client.post(f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="200"))
    assert first.status_code == second.status_code == 302
    assert len(payments_of(app, bill["id"])) == 1
    html = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "Payment recorded." in html and 'id="bill-due">400.00' in html and "Partly paid" in html
    form = page(client, f"/cashier?bill={bill['id']}")
    assert re.search(r'name="amount" value="400.00"', form["html"])
    res = client.post(
        f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="400.00", method="UPI")
    )
    assert res.status_code == 302
    html = client.get(res.headers["Location"]).get_data(as_text=True)
    assert 'id="bill-due">0.00' in html and "Paid in full" in html
    cash_up = html[html.index('id="cash-up"') :]
    assert (
        "Cash" in cash_up
        and "200.00" in cash_up
        and "UPI" in cash_up
        and 'id="cash-up-net">600.00' in cash_up
    )


def test_more_than_due_paid_and_void_are_refused_in_words(app, client, make_user, visit, admin):
    bill = visit()["bill"]
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    res = client.post(f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="700"))
    assert res.status_code == 422
    assert "more than the due amount: at most 600.00" in res.get_data(as_text=True)
    admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "600.00", "method": "CASH"})
    res = client.post(
        f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount="1", idempotency_key="k" * 20)
    )
    assert res.status_code == 422 and "This bill is already paid." in res.get_data(as_text=True)
    other = visit("Other Patient")["bill"]
    admin.post(f"/api/bills/{other['id']}/void", json={"reason": "Booked twice"})
    res = client.post(
        f"/cashier/bills/{other['id']}/payments", data=pay_form(form, amount="1", idempotency_key="v" * 20)
    )
    assert res.status_code == 409 and "void" in res.get_data(as_text=True).lower()
    assert len(payments_of(app, bill["id"])) == 1 and payments_of(app, other["id"]) == []


@pytest.mark.parametrize(
    "amount",
    ["abc", "12.345", "-5", "1e3", "\x00", "9" * 30, "99999999999999.99", "", "0", "NaN"],
)
def test_bad_amounts_are_refused_without_a_500(app, client, make_user, visit, amount):
    bill = visit()["bill"]
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    res = client.post(f"/cashier/bills/{bill['id']}/payments", data=pay_form(form, amount=amount))
    assert res.status_code == 422, amount
    if "\x00" not in amount:  # NUL is refused before any view (hms.core.inputs)
        assert 'class="error"' in res.get_data(as_text=True)
    assert payments_of(app, bill["id"]) == []


def test_bad_method_reference_and_key_are_refused_without_a_500(app, client, make_user, visit):
    bill = visit()["bill"]
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    url = f"/cashier/bills/{bill['id']}/payments"
    assert client.post(url, data=pay_form(form, amount="1", method="GOLD")).status_code == 422
    assert client.post(url, data=pay_form(form, amount="1", reference="a\x00b")).status_code == 422
    assert client.post(url, data=pay_form(form, amount="1", idempotency_key="short")).status_code == 400
    assert client.post("/cashier/bills/999999/payments", data=pay_form(form, amount="1")).status_code == 404
    assert payments_of(app, bill["id"]) == []


# --- refund and void: admin only ----------------------------------------------------------


def test_refund_and_void_are_admin_only(app, client, make_user, visit, admin):
    bill = visit()["bill"]
    admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "100.00", "method": "CASH"})
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    res = client.post(
        f"/cashier/bills/{bill['id']}/refunds",
        data={"csrf_token": form["csrf"], "idempotency_key": "r" * 20, "amount": "10", "reason": "x"},
    )
    assert res.status_code == 403
    res = client.post(f"/cashier/bills/{bill['id']}/void", data={"csrf_token": form["csrf"], "reason": "x"})
    assert res.status_code == 403
    assert len(payments_of(app, bill["id"])) == 1


def test_admin_refunds_at_most_what_was_paid_and_voids_only_unpaid(app, client, make_user, visit, admin):
    bill = visit()["bill"]
    admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "100.00", "method": "CASH"})
    sign_in(client, make_user, "admin")
    form = page(client, f"/cashier?bill={bill['id']}")
    assert "Refund" in form["html"] and 'id="void-form"' not in form["html"]  # money paid: no void
    refund = {"csrf_token": form["csrf"], "idempotency_key": form["keys"][1], "method": "CASH"}
    res = client.post(
        f"/cashier/bills/{bill['id']}/refunds", data={**refund, "amount": "150", "reason": "Overcharged"}
    )
    assert res.status_code == 422 and "more than was paid: at most 100.00" in res.get_data(as_text=True)
    res = client.post(
        f"/cashier/bills/{bill['id']}/refunds", data={**refund, "amount": "100", "reason": "Overcharged"}
    )
    assert res.status_code == 302
    assert [p.kind for p in payments_of(app, bill["id"])] == ["PAYMENT", "REFUND"]
    # Nothing paid now: the void form shows, and voids.
    form = page(client, f"/cashier?bill={bill['id']}")
    res = client.post(f"/cashier/bills/{bill['id']}/void", data={"csrf_token": form["csrf"], "reason": ""})
    assert res.status_code == 422 and "Reason" in res.get_data(as_text=True)
    res = client.post(
        f"/cashier/bills/{bill['id']}/void", data={"csrf_token": form["csrf"], "reason": "Duplicate"}
    )
    assert res.status_code == 302
    assert admin.get(f"/api/bills/{bill['id']}").get_json()["status"] == "VOID"
    paid = visit("Paid Patient")["bill"]
    admin.post(f"/api/bills/{paid['id']}/payments", json={"amount": "1.00", "method": "CASH"})
    res = client.post(f"/cashier/bills/{paid['id']}/void", data={"csrf_token": form["csrf"], "reason": "x"})
    assert res.status_code == 409 and "refund first" in res.get_data(as_text=True)


# --- the receipt -------------------------------------------------------------------------


def test_the_receipt_shows_the_bill_and_its_mark(client, make_user, visit, admin):
    found = visit()
    bill = found["bill"]
    sign_in(client, make_user)
    html = client.get(f"/cashier/bills/{bill['id']}/receipt").get_data(as_text=True)
    for words in (bill["number"], "HMS Clinic", "Meera Iyer", "Consultation", "600.00", ">UNPAID<"):
        assert words in html, words
    admin.post(
        f"/api/bills/{bill['id']}/payments",
        json={"amount": "100.00", "method": "CARD", "reference": "SLIP-9"},
    )
    html = client.get(f"/cashier/bills/{bill['id']}/receipt").get_data(as_text=True)
    assert ">PARTLY PAID<" in html and "SLIP-9" in html and 'id="receipt-due">500.00' in html
    admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "500.00", "method": "CASH"})
    thermal = client.get(f"/cashier/bills/{bill['id']}/receipt?width=80mm").get_data(as_text=True)
    assert ">PAID<" in thermal and "receipt-80mm.css" in thermal
    assert client.get("/cashier/bills/999999/receipt").status_code == 404


# --- prescribed medicines ----------------------------------------------------------------


def prescribe(app, appointment_id: int, lines: list[tuple[str, str, int]]) -> None:
    """A prescription straight in the database: (medicine, unit price, quantity) lines."""
    from hms.appointments.models import Appointment
    from hms.extensions import db
    from hms.prescriptions.models import Prescription, PrescriptionItem
    from hms.reference.models import Medicine

    with app.app_context():
        appointment = db.session.get(Appointment, appointment_id)
        prescription = Prescription(
            appointment_id=appointment_id, doctor_id=appointment.doctor_id, patient_id=appointment.patient_id
        )
        db.session.add(prescription)
        db.session.flush()
        for name, price, quantity in lines:
            medicine = Medicine(name=name, unit_price=Decimal(price), strength="500 mg", form="tablet")
            db.session.add(medicine)
            db.session.flush()
            db.session.add(
                PrescriptionItem(
                    prescription_id=prescription.id,
                    medicine_id=medicine.id,
                    dosage="1 tablet",
                    frequency="twice a day",
                    duration_days=5,
                    quantity=quantity,
                )
            )
        db.session.commit()
        db.session.remove()


def test_prescribed_medicines_are_billed_once(app, client, make_user, visit, admin):
    found = visit()
    bill = found["bill"]
    prescribe(app, found["appointment_id"], [("Paracetamol", "2.50", 10), ("Cetirizine", "4.00", 5)])
    sign_in(client, make_user)
    form = page(client, f"/cashier?bill={bill['id']}")
    assert "Add prescribed medicines" in form["html"] and "Paracetamol 500 mg tablet" in form["html"]
    assert "25.00" in form["html"] and "20.00" in form["html"]
    url = f"/cashier/bills/{bill['id']}/prescribed"
    assert client.post(url, data={"csrf_token": "forged"}).status_code == 400
    assert client.post(url, data={"csrf_token": form["csrf"]}).status_code == 302
    again = client.post(url, data={"csrf_token": form["csrf"]})
    assert again.status_code == 409 and "already on a bill" in again.get_data(as_text=True)
    billed = admin.get(f"/api/bills/{bill['id']}").get_json()
    assert billed["total_amount"] == "645.00" and len(billed["items"]) == 4
    html = client.get(f"/cashier?bill={bill['id']}").get_data(as_text=True)
    assert "prescribed-submit" not in html
    # The API does the same, once.
    assert admin.post(f"/api/bills/{bill['id']}/prescribed-items").status_code == 409


def test_the_api_bills_prescribed_medicines_and_refuses_paid_and_void_bills(app, visit, admin):
    found = visit()
    bill = found["bill"]
    prescribe(app, found["appointment_id"], [("Amoxicillin", "6.00", 3)])
    admin.post(f"/api/bills/{bill['id']}/payments", json={"amount": "600.00", "method": "CASH"})
    res = admin.post(f"/api/bills/{bill['id']}/prescribed-items")
    assert res.status_code == 409 and "PAID" in res.get_json()["message"]
    other = visit("Second Visit", doctor=found["doctor"])
    prescribe(app, other["appointment_id"], [("Ibuprofen", "3.00", 2)])
    res = admin.post(f"/api/bills/{other['bill']['id']}/prescribed-items")
    assert res.status_code == 201
    assert res.get_json()["total_amount"] == "606.00"
    assert admin.post("/api/bills/999999/prescribed-items").status_code == 404


@pytest.mark.skipif(
    not uses_postgres(), reason="concurrency is tested against PostgreSQL (set TEST_DATABASE_URL)"
)
def test_two_cashiers_at_once_bill_the_lines_once(app, visit, make_user):
    from sqlalchemy import func, select

    from hms.auth.service import load_identity
    from hms.billing.models import BillItem
    from hms.errors import Conflict
    from hms.extensions import db
    from hms.prescriptions.service import bill_prescribed

    found = visit()
    bill_id = found["bill"]["id"]
    prescribe(app, found["appointment_id"], [("Paracetamol", "2.50", 10), ("Cetirizine", "4.00", 5)])
    cashiers = [make_user("cashier"), make_user("cashier")]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def click(user) -> None:
        with app.app_context():
            identity = load_identity(user.id)
            barrier.wait()
            try:
                bill_prescribed(bill_id, identity)
                results.append("billed")
            except Conflict:
                results.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=click, args=(user,)) for user in cashiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["billed", "conflict"]
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(BillItem).where(BillItem.prescription_item_id.is_not(None))
        )
        db.session.remove()
    assert count == 2
