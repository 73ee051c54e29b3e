"""The cashier's till in headless Chromium against a live gunicorn server (Debian's
/usr/bin/chromium through the playwright package; never `playwright install`): a booking
made over the API while the page is open appears in Bills to collect without a reload;
a part payment, then a double-submitted payment of the rest records one payment; the
receipt says PAID. axe: no serious or critical violation. Screenshots go to
tests/screenshots/cashier-*.png."""

from __future__ import annotations

import pytest

from tests.conftest import run_server, token_for
from tests.queue.stream_helpers import booking, make_patient
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture
from tests.web.test_reception_browser import SCREENSHOTS
from tests.web.test_screens_browser import LIVE_ENV, PASSWORD, Api, assert_accessible, sign_in

LIVE = 3000  # ms: a change reaches the till within a second; some slack for CI


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"cashier-{name}.png"), full_page=True)


def double_submit(page, form: str) -> None:
    """Post the form twice, as a double click that beats the page's own guard would (the
    second post carries the same idempotency key), then follow the last answer."""
    page.evaluate(
        """(selector) => {
            const form = document.querySelector(selector);
            const body = new URLSearchParams(new FormData(form));
            return Promise.all([1, 2].map(() => fetch(form.action, {method: "POST", body, redirect: "manual"})));
        }""",
        form,
    )


def test_the_till_follows_bookings_and_takes_payment_once(app, database_url, make_user, browser):  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    doctor = make_user("doctor", name="Dr Meera Rao")
    till = make_user("cashier", name="Kavya Till", password=PASSWORD)
    desk = Api("", token_for(app, make_user("reception")))
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(5000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        desk.base = base
        # The stream cannot connect: the list says so, then follows once it can.
        page.route("**/api/bills/stream", lambda route: route.abort())
        sign_in(page, base, till, "/cashier")
        expect(page.locator("#live-status")).to_have_text("reconnecting…")
        page.unroute("**/api/bills/stream")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10000)
        expect(page.locator("#live-status")).to_have_text("Live")
        expect(page.locator("#bills")).to_contain_text("0 to collect today")
        expect(page.locator("#find-q")).to_be_focused()
        assert_accessible(page, "cashier: empty")
        page.evaluate("window.__notReloaded = true")

        # Reception books over the API: the visit's bill appears without a reload.
        booked = desk.post("/api/appointments", booking(make_patient(app, "Asha Kumar"), doctor.id))
        bill = desk.get(f"/api/appointments/{booked['id']}/bills")["data"][0]
        row = page.locator(f'#bills tr[data-bill-id="{bill["id"]}"]')
        expect(row).to_contain_text("Asha Kumar", timeout=LIVE)
        expect(row).to_contain_text(bill["number"])
        expect(row).to_contain_text("600.00")
        assert page.evaluate("window.__notReloaded === true"), "the till reloaded instead of updating live"
        shot(page, "list")

        # Open it from the keyboard: ↓ from the search box, Enter.
        page.focus("#find-q")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        expect(page.locator("#bill-h")).to_contain_text(bill["number"])
        expect(page.locator("#pay-amount")).to_have_value("600.00")
        expect(page.locator("#pay-amount")).to_be_focused()
        assert_accessible(page, "cashier: a bill")

        # Part payment (Alt+P puts the cursor in Amount).
        page.fill("#pay-amount", "200")
        page.select_option("#pay-method", "CARD")
        page.fill("#pay-reference", "SLIP-42")
        page.click("#pay-submit")
        expect(page.locator("#done")).to_have_text("Payment recorded.")
        expect(page.locator("#bill-due")).to_have_text("400.00")
        expect(page.locator("#bill-status")).to_contain_text("Partly paid")
        expect(page.locator("#pay-amount")).to_have_value("400.00")
        expect(page.locator("#bill-payments")).to_contain_text("SLIP-42")

        # The rest, double-submitted: one payment.
        double_submit(page, "#pay-form")
        page.goto(f"{base}/cashier?bill={bill['id']}")
        expect(page.locator("#bill-due")).to_have_text("0.00")
        expect(page.locator("#bill-status")).to_contain_text("Paid")
        expect(page.locator("#bill-payments tr.payment-row")).to_have_count(2)
        assert len(desk.get(f"/api/bills/{bill['id']}")["payments"]) == 2
        expect(page.locator("#cash-up-net")).to_have_text("600.00")
        expect(page.locator(f'#bills tr[data-bill-id="{bill["id"]}"]')).to_have_count(0)  # collected
        assert_accessible(page, "cashier: paid")
        shot(page, "paid")

        # Print receipt: PAID.
        page.click("#print-receipt")
        expect(page.locator("#receipt-mark")).to_have_text("PAID")
        expect(page.locator("#receipt-number")).to_have_text(bill["number"])
        expect(page.locator("#receipt-due")).to_have_text("0.00")
        assert_accessible(page, "receipt")
        shot(page, "receipt")
    assert errors == []
    context.close()
