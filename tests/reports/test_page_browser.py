"""The admin's reports page in headless Chromium against a live gunicorn server (the
fixtures of tests/web/test_screens_browser.py): the day's figures and charts, axe (no
serious or critical violation), a screenshot under tests/screenshots/."""

from __future__ import annotations

from tests.conftest import run_server, token_for
from tests.queue.stream_helpers import booking, make_patient
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture
from tests.web.test_screens_browser import LIVE_ENV, PASSWORD, SCREENSHOTS, Api, assert_accessible, sign_in


def test_reports_page_in_a_browser(app, database_url, make_user, browser):  # noqa: F811
    admin_user = make_user("admin", name="Asha Menon", password=PASSWORD)
    doctor = make_user("doctor", name="Dr Meera Rao", consultation_fee="500.00", hospital_fee="100.00")
    api = Api("", token_for(app, admin_user))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        api.base = base
        booked = api.post("/api/appointments", booking(make_patient(app, "Asha Kumar"), doctor.id))
        api.post(f"/api/bills/{booked['bill_id']}/payments", {"amount": "600.00", "method": "CARD"})
        api.post(f"/api/queue/{doctor.id}/next", expect=200)

        sign_in(page, base, admin_user, "/admin/reports")
        assert page.inner_text("#daily-h") == "The day per doctor"
        assert "Dr Meera Rao" in page.inner_text("#daily-table")
        assert "600.00" in page.inner_text("#money-table")
        assert page.get_attribute("#chart-collections", "role") == "img"
        assert "Card" in page.text_content("#chart-collections")
        assert page.get_attribute("#csv-daily", "href").endswith("format=csv")
        assert_accessible(page, "reports")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "admin-reports.png"), full_page=True)
        page.fill("#report-from", "2026-02-01")
        page.fill("#report-to", "2026-01-01")
        page.click("#period-h ~ button")
        page.wait_for_selector("#report-error")
        assert "Must not be before from" in page.inner_text("#report-error")
        assert_accessible(page, "reports, a bad period")
    context.close()
