"""One whole visit across the staff screens, in parallel browser contexts.

Five signed-in contexts side by side (reception, the doctor's own account, a waiting-room
display following two doctors, the cashier) and one without an account for the patient's ticket,
all against one live gunicorn server (SQLite, or PostgreSQL + Redis when
TEST_DATABASE_URL/TEST_REDIS_URL are set):

1. reception registers a patient, sees **Possible duplicates** for a second registration
   with the same phone and opens the first patient instead;
2. reception books them (the token slip, its QR code and ticket link);
3. the doctor's screen, the display and the ticket page follow the booking without a reload;
4. the doctor presses **Call next**, writes a **Prescription** and presses **Complete**:
   the display and the ticket follow;
5. the cashier's **Bills to collect** lists the visit's bill without a reload; the
   cashier adds the prescribed medicines, takes a part payment, then the rest (the form
   posted twice: one payment), and the receipt shows PAID;
6. the admin's **Reports** page shows the visit in today's figures: one booked and
   completed for the doctor, 618.00 collected, nothing outstanding, the cashier's drawer.

axe reports no serious or
critical violation on any page visited; screenshots go to tests/screenshots/visit-*.png
(ignored by git; CI keeps them as test output). Uses Debian's /usr/bin/chromium through
the playwright package (never `playwright install`); skipped when either is missing.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import run_server, token_for
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture
from tests.web.test_reception_browser import SCREENSHOTS
from tests.web.test_screens_browser import LIVE_ENV, PASSWORD, Api, assert_accessible, sign_in

NAME = "Asha Kumar"
PHONE = "98450 11223"  # typed as reception would; kept in E.164 with the clinic's code
LIVE = 3000  # ms: a change reaches every open screen within a second; some slack for CI


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"visit-{name}.png"), full_page=True)


def mark_not_reloaded(page) -> None:
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page, name: str) -> None:
    assert page.evaluate("window.__notReloaded === true"), f"{name} reloaded instead of updating live"


def hold_the_flash_at_its_peak(page) -> None:
    """Pause the display's flash with the called panel inverted (yellow), so that axe
    checks the colours a patient sees at the flash's peak, not whichever frame it lands on."""
    held = page.evaluate(
        """() => document.getAnimations()
            .filter(a => a.effect.target.closest('.now.called'))
            .map(a => { a.pause(); a.currentTime = a.effect.getComputedTiming().duration / 2; return 1; })
            .length"""
    )
    assert held >= 2, "the called panel does not flash"
    background = page.eval_on_selector(".now.called", "n => getComputedStyle(n).backgroundColor")
    assert background == "rgb(255, 209, 102)", background


def resume_animations(page) -> None:
    page.evaluate("() => document.getAnimations().forEach(a => a.play())")


def test_one_visit_across_reception_doctor_display_ticket_and_till(app, database_url, make_user, browser):  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    doctor = make_user("doctor", name="Dr Meera Rao", room="Room 3", password=PASSWORD)
    other = make_user("doctor", name="Dr Ravi Iyer", room="Room 4")
    desk = make_user("reception", password=PASSWORD, name="Lata Desk")
    screen = make_user("display", password=PASSWORD)
    admin = Api("", token_for(app, make_user("admin")))
    desk_api = Api("", token_for(app, desk))
    errors: list[str] = []

    def context(**options):
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(5000)
        page = ctx.new_page()
        page.on("pageerror", lambda exc, page=page: errors.append(f"{page.url}: {exc}"))
        return ctx, page

    desk_ctx, reception = context(viewport={"width": 1280, "height": 900})
    doctor_ctx, room = context(viewport={"width": 1280, "height": 900})
    display_ctx, tv = context(viewport={"width": 1280, "height": 720})
    phone_ctx, ticket = context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    till_ctx, till = context(viewport={"width": 1280, "height": 900})
    cashier = make_user("cashier", password=PASSWORD, name="Kavya Till")
    owner = make_user("admin", password=PASSWORD, name="Office Admin")
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        admin.base = desk_api.base = base
        dolo = admin.post(
            "/api/medicines",
            {
                "name": "Dolo 650",
                "generic_name": "Paracetamol",
                "form": "tablet",
                "strength": "650 mg",
                "unit_price": "3",
            },
        )
        admin.post(
            "/api/medicines",
            {
                "name": "Azee",
                "generic_name": "Azithromycin",
                "form": "tablet",
                "strength": "500 mg",
                "unit_price": "20",
            },
        )

        # 1. Four signed-in screens side by side, open before anything is booked.
        sign_in(reception, base, desk, "/reception")
        sign_in(room, base, doctor, "/doctor")
        display_path = f"/display?doctors={doctor.id},{other.id}"
        sign_in(tv, base, screen, display_path)
        sign_in(till, base, cashier, "/cashier")
        expect(till.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(till.locator("#bills")).to_contain_text("0 to collect today")
        mark_not_reloaded(till)
        expect(reception.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(room.locator("#status")).to_have_attribute("data-state", "live")
        expect(tv.locator('.status[data-state="live"]')).to_have_count(2)
        assert room.inner_text("h1").startswith("Doctor's room: Dr Meera Rao")
        expect(room.locator("#waiting-count")).to_have_text("0 waiting")
        panel = tv.locator(f'.panel-doctor[data-doctor-id="{doctor.id}"]')
        expect(panel.locator(".doctor-name")).to_have_text("Dr Meera Rao")
        expect(panel.locator(".room-initials")).to_have_text("Nobody yet")
        mark_not_reloaded(room)
        mark_not_reloaded(tv)

        # 2. Register: Name, Gender, Age, Phone.
        reception.fill("#reg-name", NAME)
        reception.select_option("#reg-gender", "female")
        reception.fill("#reg-age", "34")
        reception.fill("#reg-phone", PHONE)
        reception.click("#register-submit")
        expect(reception.locator("#book-patient")).to_have_text(NAME)
        assert "Registered" in reception.inner_text("#book")
        first = reception.locator("#book .chosen .meta").inner_text()
        mrn = re.match(r"(P\d+) ", first).group(1)
        assert "+919845011223" in first  # kept in E.164

        # A second registration with the same phone (typed another way): Possible duplicates.
        reception.fill("#reg-name", "Asha K")
        reception.select_option("#reg-gender", "female")
        reception.fill("#reg-age", "34")
        reception.fill("#reg-phone", "+91 9845011223")
        reception.click("#register-submit")
        duplicates = reception.locator("#duplicates")
        expect(duplicates).to_contain_text("Possible duplicates")
        expect(duplicates.locator("a.open-duplicate")).to_have_count(1)
        expect(duplicates.locator("a.open-duplicate")).to_have_text(f"Open {mrn} · {NAME}")
        expect(duplicates).to_contain_text("same phone")
        assert_accessible(reception, "reception: possible duplicates")
        reception.click("a.open-duplicate")  # the one already registered, not a second one
        expect(reception.locator("#book-patient")).to_have_text(NAME)
        assert mrn in reception.inner_text("#book .chosen")
        found = desk_api.get("/api/patients?q=9845011223")
        assert [(p["mrn"], p["phone"]) for p in found["data"]] == [(mrn, "+919845011223")]

        # 3. Book with the doctor: the slip, its QR code and the ticket link.
        reception.select_option("#book-doctor", str(doctor.id))
        reception.fill("#book-complaint", "Fever for two days")
        reception.click("#book-submit")
        expect(reception.locator("#slip-token")).to_have_text("1")
        booked_at = time.monotonic()
        assert f"Booked {NAME} ({mrn}) with Dr Meera Rao, Room 3." in reception.inner_text("#slip")
        expect(reception.locator(f'#queue-{doctor.id} tr[data-token="1"]')).to_contain_text(NAME)
        assert_accessible(reception, "reception: booked")
        shot(reception, "reception")
        appointment_id = int(
            re.search(r"/slip/(\d+)", reception.get_attribute("#print-slip", "href")).group(1)
        )

        # 4. Without a reload: the doctor's queue, the display (initials only) and the ticket.
        row = room.locator(f'#queue li[data-appointment-id="{appointment_id}"]')
        expect(row).to_contain_text(NAME, timeout=LIVE)
        assert time.monotonic() - booked_at < LIVE / 1000
        expect(row.locator(".token")).to_have_text("1")
        expect(room.locator("#waiting-count")).to_have_text("1 waiting")
        assert_not_reloaded(room, "the doctor's screen")
        item = panel.locator('ol.next li[data-token="1"]')
        expect(item.locator(".initials")).to_have_text("A.K.", timeout=LIVE)
        expect(panel.locator(".waiting-count")).to_have_text("1 waiting")
        assert_not_reloaded(tv, "the display")
        assert "Asha" not in tv.content() and "Kumar" not in tv.content()
        expect(tv.locator(f'.panel-doctor[data-doctor-id="{other.id}"] ol.next li')).to_have_count(0)
        # The till lists the visit's bill (opened by the booking) without a reload.
        bill = desk_api.get(f"/api/appointments/{appointment_id}/bills")["data"][0]
        till_row = till.locator(f'#bills tr[data-bill-id="{bill["id"]}"]')
        expect(till_row).to_contain_text(NAME, timeout=LIVE)
        expect(till_row).to_contain_text("600.00")
        assert_not_reloaded(till, "the cashier's screen")

        reception.click("#print-slip")
        expect(reception.locator("#token")).to_have_text("1")
        expect(reception.locator("#slip-doctor")).to_have_text("Dr Meera Rao")
        expect(reception.locator("#slip-room")).to_have_text("Room 3")
        assert reception.locator(".qr svg").count() == 1
        link = reception.inner_text("#ticket-url").strip()
        assert re.fullmatch(rf"{re.escape(base)}/t/\S+", link)
        assert desk_api.get(f"/api/appointments/{appointment_id}/ticket")["url"] == link
        assert_accessible(reception, "token slip")
        shot(reception, "slip")

        ticket.goto(link)
        expect(ticket.locator("#status")).to_have_attribute("data-state", "live")
        expect(ticket.locator("#token")).to_have_text("1")
        expect(ticket.locator("#initials")).to_have_text("A.K.")
        expect(ticket.locator("#position")).to_have_text("1")
        expect(ticket.locator("#headline")).to_have_text("Please wait: you will be called.")
        expect(ticket.locator("#now-serving")).to_have_text("nobody yet")
        assert "Asha" not in ticket.content()
        mark_not_reloaded(ticket)
        assert_accessible(ticket, "ticket: waiting")

        # 5. Call next: the doctor's room, the display's flash and the ticket's turn.
        room.click("#call-next")
        expect(room.locator("#room-patient")).to_have_text(NAME)
        expect(room.locator("#room-token")).to_have_text("1")
        expect(room.locator("#room-complaint")).to_have_text("Fever for two days")
        expect(room.locator("#notice")).to_contain_text("called into the room")
        now = panel.locator(".now")
        expect(now).to_have_class(re.compile(r"\bcalled\b"), timeout=LIVE)
        hold_the_flash_at_its_peak(tv)  # while it flashes (3.6 s)
        assert_accessible(tv, "display: called, at the flash's peak")
        resume_animations(tv)
        expect(now.locator(".room-token")).to_have_text("1")
        expect(now.locator(".room-initials")).to_have_text("A.K.")
        expect(panel).to_have_attribute("data-called-token", "1")
        expect(tv.locator("#announce")).to_have_text("Token 1: please go to Room 3, Dr Meera Rao.")
        expect(panel.locator("ol.next li")).to_have_count(0)
        assert_not_reloaded(tv, "the display")
        assert "Asha" not in tv.content()
        expect(ticket.locator("#headline")).to_have_text(
            "It is your turn: please go in to Room 3.", timeout=LIVE
        )
        expect(ticket.locator("#ticket")).to_have_class(re.compile(r"\bturn\b"))
        expect(ticket.locator("#now-serving")).to_have_text("1")
        assert_not_reloaded(ticket, "the ticket page")
        shot(tv, "display")
        assert_accessible(tv, "display: called")

        # 6. Prescription: the medicine found by its generic name; Dose, Frequency, Duration.
        room.fill("#line-1-search", "paracetamol")
        match = room.locator(f'#line-1-medicine option[value="{dolo["id"]}"]')
        expect(match).to_be_attached()
        expect(room.locator("#line-1-medicine option")).to_have_count(1)  # not Azithromycin
        room.select_option("#line-1-medicine", str(dolo["id"]))
        room.fill("#line-1-dose", "1 tablet")
        room.fill("#line-1-frequency", "1-0-1")
        room.fill("#line-1-duration", "3")
        assert_accessible(room, "doctor: patient in the room")
        shot(room, "doctor")
        room.click("#save-prescription")
        expect(room.locator("#notice")).to_contain_text("prescription saved")
        written = admin.get(f"/api/appointments/{appointment_id}/prescriptions")["data"]
        assert len(written) == 1
        line = written[0]["items"][0]
        assert (line["medicine"]["name"], line["dosage"], line["frequency"], line["duration_days"]) == (
            "Dolo 650",
            "1 tablet",
            "1-0-1",
            3,
        )
        assert line["quantity"] == 6  # worked out from 1-0-1 for 3 days

        room.click("#complete")
        expect(room.locator("#notice")).to_contain_text("consultation completed")
        expect(room.locator("#room-empty")).to_contain_text("Nobody is in the room")
        assert admin.get(f"/api/appointments/{appointment_id}")["status"] == "COMPLETED"
        expect(now.locator(".room-initials")).to_have_text("Nobody yet", timeout=LIVE)
        expect(now.locator(".room-token")).to_have_text("")
        expect(panel.locator(".waiting-count")).to_have_text("0 waiting")
        expect(ticket.locator("#headline")).to_have_text("Your consultation is complete.", timeout=LIVE)
        expect(ticket.locator("#ticket")).to_have_attribute("data-status", "COMPLETED")
        expect(ticket.locator("#position")).to_have_text("—")
        assert_not_reloaded(tv, "the display")
        assert_not_reloaded(ticket, "the ticket page")
        assert_accessible(ticket, "ticket: completed")
        shot(ticket, "ticket")

        # The prescription's print view, from the link on the doctor's screen.
        href = room.get_attribute("#notice .print-links a", "href")
        assert href == f"/prescriptions/{written[0]['id']}/print"
        sheet = doctor_ctx.new_page()
        sheet.goto(base + href)
        expect(sheet.locator("#rx-patient")).to_have_text(NAME)
        expect(sheet.locator("table.lines")).to_contain_text("Dolo 650 650 mg tablet")
        expect(sheet.locator("table.lines")).to_contain_text("1-0-1")
        assert_accessible(sheet, "prescription print view")
        shot(sheet, "prescription")

        # 7. The till: the bill, the prescribed medicines, a part payment, then the rest.
        till_row.locator("a.bill-link").click()
        expect(till.locator("#bill-h")).to_contain_text(bill["number"])
        expect(till.locator("#prescribed")).to_contain_text("Dolo 650 650 mg tablet")
        expect(till.locator("#prescribed")).to_contain_text("18.00")  # 6 x 3.00
        assert_accessible(till, "cashier: the visit's bill")
        till.click("#prescribed-submit")
        expect(till.locator("#done")).to_have_text("Prescribed medicines added to the bill.")
        expect(till.locator("#bill-total")).to_have_text("618.00")
        expect(till.locator("#prescribed")).to_have_count(0)
        expect(till.locator("#pay-amount")).to_have_value("618.00")
        till.fill("#pay-amount", "300")
        till.click("#pay-submit")
        expect(till.locator("#bill-due")).to_have_text("318.00")
        expect(till.locator("#pay-amount")).to_have_value("318.00")
        till.evaluate(
            """() => {
                const form = document.querySelector("#pay-form");
                const body = new URLSearchParams(new FormData(form));
                return Promise.all([1, 2].map(() => fetch(form.action, {method: "POST", body, redirect: "manual"})));
            }"""
        )  # the rest, posted twice with the form's one key
        till.goto(f"{base}/cashier?bill={bill['id']}")
        expect(till.locator("#bill-due")).to_have_text("0.00")
        expect(till.locator("#bill-payments tr.payment-row")).to_have_count(2)
        assert [p["amount"] for p in admin.get(f"/api/bills/{bill['id']}")["payments"]] == [
            "300.00",
            "318.00",
        ]
        assert_accessible(till, "cashier: paid")
        shot(till, "cashier")
        till.click("#print-receipt")
        expect(till.locator("#receipt-mark")).to_have_text("PAID")
        expect(till.locator("table.lines").first).to_contain_text("Dolo 650")
        assert_accessible(till, "receipt")
        shot(till, "receipt")

        # 8. The admin's reports page: the visit is in today's figures.
        office_ctx, office = context(viewport={"width": 1280, "height": 900})
        sign_in(office, base, owner, "/admin/reports")
        visits = office.locator("#daily-table tbody tr", has_text="Dr Meera Rao")
        expect(visits.locator('[data-col="booked"]')).to_have_text("1")
        expect(visits.locator('[data-col="completed"]')).to_have_text("1")
        expect(visits.locator('[data-col="still_waiting"]')).to_have_text("0")
        expect(office.locator('#money-table [data-col="billed"]')).to_have_text("618.00")
        expect(office.locator('#money-table [data-col="collected_total"]')).to_have_text("618.00")
        expect(office.locator('#money-table [data-col="outstanding"]')).to_have_text("0.00")
        drawer = office.locator("#cash-up-table tbody tr.total-row", has_text="Kavya Till")
        expect(drawer.locator('[data-col="payment_count"]')).to_have_text("2")
        expect(drawer.locator('[data-col="net"]')).to_have_text("618.00")
        expect(drawer.locator('[data-col="method"]')).to_have_text("All")
        cash = office.locator("#cash-up-table tbody tr:not(.total-row)", has_text="Kavya Till")
        expect(cash.locator('[data-col="method"]')).to_have_text("Cash")  # as staff say it, not CASH
        assert_accessible(office, "reports: the visit's day")
        shot(office, "reports")
    assert errors == []  # no script error on any page
    for ctx in (desk_ctx, doctor_ctx, display_ctx, phone_ctx, till_ctx, office_ctx):
        ctx.close()
