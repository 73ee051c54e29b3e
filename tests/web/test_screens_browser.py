"""The doctor's screen, the multi-doctor display and the patient's ticket in headless
Chromium against a live gunicorn server (Debian's /usr/bin/chromium through the
playwright package; never `playwright install`), each page checked with axe-core
(axe-playwright-python): no serious or critical violation. Screenshots go to
tests/screenshots/ (ignored by git; CI keeps them as test output)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import run_server, token_for
from tests.queue.stream_helpers import booking, make_patient
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture

SCREENSHOTS = Path("tests/screenshots")
PASSWORD = "screen-pass-1"
LIVE_ENV = {"SSE_HEARTBEAT_SECONDS": "1", "SSE_RETRY_MS": "500", "DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "5"}


def assert_accessible(page, name: str) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    axe = pytest.importorskip("axe_playwright_python.sync_playwright")
    results = axe.Axe().run(page)
    bad = [
        (violation["id"], violation["impact"], [node["target"] for node in violation["nodes"]][:3])
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name}: {bad}"


def wait_until(page, expression: str, timeout: float = 5.0) -> None:
    """Poll `expression` in the page until it is true (page.wait_for_function evaluates a
    string, which the pages' CSP refuses: no 'unsafe-eval')."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def sign_in(page, base: str, user, path: str) -> None:
    page.goto(f"{base}/login?next={path}")
    page.fill("#username", user.username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")


class Api:
    """Reception and admin over the JSON API, as another client would book."""

    def __init__(self, base: str, token: str):
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: dict | None = None, expect: int = 201) -> dict:
        res = requests.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=10)
        assert res.status_code == expect, res.text
        return res.json()

    def get(self, path: str) -> dict:
        res = requests.get(f"{self.base}{path}", headers=self.headers, timeout=10)
        assert res.status_code == 200, res.text
        return res.json()


def test_doctor_screen_from_the_keyboard(app, database_url, make_user, browser):  # noqa: F811
    doctor = make_user("doctor", name="Meera Rao", password=PASSWORD)
    admin = Api("", token_for(app, make_user("admin")))
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        admin.base = base
        crocin = admin.post(
            "/api/medicines",
            {
                "name": "Crocin",
                "generic_name": "Paracetamol",
                "form": "tablet",
                "strength": "500 mg",
                "unit_price": "2",
            },
        )
        admin.post("/api/medicine-instructions", {"text": "After food"})
        sign_in(page, base, doctor, "/doctor")
        page.wait_for_selector('#status[data-state="live"]', timeout=5000)
        assert page.inner_text("#waiting-count") == "0 waiting"
        assert_accessible(page, "doctor, empty queue")

        # Reception books (over the API): the screen shows the patient without a reload.
        booked = admin.post(
            "/api/appointments",
            {**booking(make_patient(app, "Asha Kumar"), doctor.id), "chief_complaint": "Fever for 3 days"},
        )
        row = page.wait_for_selector(f'#queue li[data-appointment-id="{booked["id"]}"]', timeout=2000)
        assert "Asha Kumar" in row.inner_text()
        assert page.inner_text("#waiting-count") == "1 waiting"

        # Call next (Alt+N): the patient comes into the room with their complaint.
        page.keyboard.press("Alt+n")
        page.wait_for_selector("#room-patient", timeout=5000)
        assert page.inner_text("#room-patient") == "Asha Kumar"
        assert "Fever for 3 days" in page.inner_text("#room-complaint")
        assert "called into the room" in page.inner_text("#notice")

        # Prescription (Alt+P), all from the keyboard: search, pick, dose, frequency, days.
        page.keyboard.press("Alt+p")
        assert page.evaluate("document.activeElement.id") == "line-1-search"
        page.keyboard.type("croc")
        page.wait_for_selector(
            f'#line-1-medicine option[value="{crocin["id"]}"]', state="attached", timeout=3000
        )
        page.keyboard.press("Enter")  # to the matches
        assert page.evaluate("document.activeElement.id") == "line-1-medicine"
        page.keyboard.press("Tab")
        page.keyboard.type("1 tablet")
        page.keyboard.press("Tab")
        page.keyboard.type("1-0-1")
        page.keyboard.press("Tab")
        page.keyboard.type("5")
        page.keyboard.press("Tab")  # Quantity: left empty, worked out from 1-0-1 x 5 days
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "line-1-instruction"
        page.keyboard.press("ArrowDown")
        assert_accessible(page, "doctor, patient in the room")
        shot(page, "doctor-prescription")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("#notice >> text=prescription saved", timeout=5000)
        written = admin.get(f"/api/appointments/{booked['id']}/prescriptions")["data"]
        assert len(written) == 1
        item = written[0]["items"][0]
        assert (item["medicine"]["name"], item["dosage"], item["quantity"]) == ("Crocin", "1 tablet", 10)
        assert item["instruction"]["text"] == "After food"

        # Complete (Alt+C): a link to the Prescription print view.
        page.keyboard.press("Alt+c")
        page.wait_for_selector("#notice >> text=consultation completed", timeout=5000)
        assert admin.get(f"/api/appointments/{booked['id']}")["status"] == "COMPLETED"
        assert page.inner_text("#room-empty").startswith("Nobody is in the room")
        link = page.get_attribute("#notice a", "href")
        assert link == f"/prescriptions/{written[0]['id']}/print"
        shot(page, "doctor-completed")

        # No-show on a waiting patient (a row the stream added: one shared form posts it).
        late = admin.post("/api/appointments", booking(make_patient(app, "Ravi Shankar"), doctor.id))
        button = page.wait_for_selector(
            f'#queue li[data-appointment-id="{late["id"]}"] button:text("No-show")', timeout=2000
        )
        button.click()
        page.wait_for_selector("#notice >> text=marked as not here", timeout=5000)
        assert admin.get(f"/api/appointments/{late['id']}")["status"] == "NO_SHOW"

        sheet = context.new_page()
        sheet.set_viewport_size({"width": 560, "height": 794})  # A5 at 96 dpi
        sheet.goto(base + link)
        assert "Crocin 500 mg tablet" in sheet.inner_text("table.lines")
        assert sheet.inner_text("#rx-patient") == "Asha Kumar"
        assert_accessible(sheet, "prescription print view")
        shot(sheet, "prescription-a5")
        sheet.set_viewport_size({"width": 302, "height": 700})  # an 80 mm roll
        assert sheet.evaluate("getComputedStyle(document.querySelector('.lines td')).display") == "block"
        shot(sheet, "prescription-80mm")
    context.close()


def test_display_of_four_doctors_flashes_the_called_token(app, database_url, make_user, browser):  # noqa: F811
    doctors = [
        make_user("doctor", name=f"Dr {name}", room=f"Room {n}")
        for n, name in enumerate(("Meera Rao", "Kiran Das", "Uma Iyer", "Ali Khan"), start=1)
    ]
    screen = make_user("display", password=PASSWORD)
    api = Api("", token_for(app, make_user("reception")))
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    with run_server(database_url, workers=1, extra_env={**LIVE_ENV, "CLINIC_NAME": "Sunrise Clinic"}) as base:
        api.base = base
        for index, doctor in enumerate(doctors):
            for n in range(3):
                priority = "URGENT" if (index, n) == (1, 2) else "NORMAL"
                patient = make_patient(app, f"Patient {index}{n} Name")
                api.post("/api/appointments", {**booking(patient, doctor.id), "priority": priority})
        path = "/display?doctors=" + ",".join(str(d.id) for d in doctors)
        sign_in(page, base, screen, path)
        wait_until(page, "document.querySelectorAll('.status[data-state=\"live\"]').length === 4", 8)
        assert page.inner_text("#clinic-name") == "Sunrise Clinic"
        names = page.eval_on_selector_all(".doctor-name", "nodes => nodes.map(n => n.textContent)")
        assert names == [d.name for d in doctors]
        rooms = page.eval_on_selector_all(".doctor-room", "nodes => nodes.map(n => n.textContent)")
        assert rooms == ["Room 1", "Room 2", "Room 3", "Room 4"]
        # Readable at 1280x720: four panels side by side, none cut off, tokens large.
        boxes = page.eval_on_selector_all(
            ".panel-doctor",
            "nodes => nodes.map(n => { const r = n.getBoundingClientRect(); return [r.x, r.y, r.right, r.bottom]; })",
        )
        assert len({round(box[1]) for box in boxes}) == 1  # one row
        assert all(box[2] <= 1280 and box[3] <= 720 for box in boxes)
        token_px = page.eval_on_selector(".room-token", "n => parseFloat(getComputedStyle(n).fontSize)")
        list_px = page.eval_on_selector("ol.next li", "n => parseFloat(getComputedStyle(n).fontSize)")
        assert token_px >= 48 and list_px >= 16
        assert page.eval_on_selector_all(
            "ol.next", "lists => lists.every(l => l.scrollHeight <= l.parentElement.clientHeight + 1)"
        )
        # The urgent token is marked in words.
        urgent = page.query_selector(f'.panel-doctor[data-doctor-id="{doctors[1].id}"] ol.next li.urgent')
        assert urgent.query_selector(".urgent-flag").inner_text().lower() == "urgent"
        assert urgent.get_attribute("data-token") == "3"  # the urgent one first
        # Turn on sound (the browser's one gesture), then a call: flash and chime.
        page.click("#sound")
        wait_until(page, "document.getElementById('sound').getAttribute('aria-pressed') === 'true'")
        assert page.evaluate("localStorage.getItem('hms.display.sound')") == "on"
        assert_accessible(page, "display, four doctors")
        api.post(f"/api/queue/{doctors[2].id}/next", expect=200)
        panel = f'.panel-doctor[data-doctor-id="{doctors[2].id}"]'
        page.wait_for_selector(f"{panel} .now.called", timeout=2000)
        assert page.inner_text(f"{panel} .room-token") == "1"
        assert page.get_attribute(panel, "data-called-token") == "1"
        assert "Now calling" in page.inner_text(f"{panel} .now")
        assert re.match(r"Token 1: please go to Room 3, Dr Uma Iyer", page.inner_text("#announce"))
        other = f'.panel-doctor[data-doctor-id="{doctors[0].id}"] .now'
        assert "called" not in (page.get_attribute(other, "class") or "")
        shot(page, "display-four-doctors")
        # The sound choice is remembered: a reload shows it asked for, resumed at a key press.
        page.reload()
        page.wait_for_selector(".status[data-state='live']")
        page.keyboard.press("Shift")
        wait_until(page, "document.getElementById('sound').getAttribute('aria-pressed') === 'true'")
    page.close()


def test_the_ticket_page_follows_a_call_on_a_phone(app, database_url, make_user, browser):  # noqa: F811
    doctor = make_user("doctor", name="Meera Rao")
    api = Api("", token_for(app, make_user("reception")))
    phone = browser.new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        api.base = base
        first = api.post("/api/appointments", booking(make_patient(app, "Ravi Shankar"), doctor.id))
        mine = api.post("/api/appointments", booking(make_patient(app, "Asha Kumar"), doctor.id))
        link = api.get(f"/api/appointments/{mine['id']}/ticket")["url"]
        page.goto(link)
        page.wait_for_selector('#status[data-state="live"]', timeout=5000)
        assert page.inner_text("#token") == "2"
        assert page.inner_text("#position") == "2"
        assert page.inner_text("#now-serving") == "nobody yet"
        assert "Asha" not in page.content() and "Ravi" not in page.content()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
        token_px = page.eval_on_selector("#token", "n => parseFloat(getComputedStyle(n).fontSize)")
        assert token_px >= 48
        assert_accessible(page, "ticket, waiting")
        shot(page, "ticket-waiting")
        api.post(f"/api/queue/{doctor.id}/next", expect=200)  # token 1 in
        wait_until(page, "document.getElementById('now-serving').textContent === '1'", 2)
        assert page.inner_text("#position") == "2"  # position 1 is the patient in the room
        api.post(f"/api/queue/{doctor.id}/next", expect=200)  # token 1 done, token 2 (mine) in
        page.wait_for_selector("#headline >> text=It is your turn", timeout=2000)
        assert page.inner_text("#now-serving") == "2"
        assert "turn" in page.get_attribute("#ticket", "class")
        assert_accessible(page, "ticket, your turn")
        shot(page, "ticket-your-turn")
        assert first["token"] == 1

        bad = phone.new_page()
        response = bad.goto(link[:-2] + "xx")
        assert response.status == 404
        assert bad.inner_text("h1") == "Ticket not found"
        assert_accessible(bad, "ticket not found")
    # The server is gone: the ticket says so.
    page.wait_for_selector('#status[data-state="reconnecting"]', timeout=5000)
    assert page.inner_text("#status") == "Reconnecting…"
    phone.close()
