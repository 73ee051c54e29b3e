"""/reception in headless Chromium against a live gunicorn server, with the keyboard only.

Reception signs in, finds a patient, books, reaches the token slip; registers a new
patient (and sees Possible duplicates for a second one with the same phone); another
reception screen shows each booking live, without a reload. axe reports no serious or
critical violation on any of these pages. Uses Debian's /usr/bin/chromium through the
`playwright` package (never `playwright install`); skipped when either is missing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests

from tests.conftest import run_server, token_for
from tests.queue.stream_helpers import booking, make_patient
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture
from tests.web.test_screens_browser import wait_until

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
PASSWORD = "desk-pass-1"
ENV = {"SSE_HEARTBEAT_SECONDS": "1", "SSE_RETRY_MS": "500", "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "3"}


def assert_accessible(page, name: str) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def keyboard_sign_in(page, username: str) -> None:
    """The sign-in form with the keyboard: the username field has focus."""
    page.wait_for_selector("#username:focus")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def wait_focus(page, element_id: str) -> None:
    """The page's script moves focus once it has run (scripts are deferred)."""
    wait_until(page, f"document.activeElement && document.activeElement.id === {element_id!r}", timeout=5.0)


def test_reception_finds_registers_books_and_prints_with_the_keyboard(app, database_url, make_user, browser):  # noqa: F811
    doctor = make_user("doctor", name="Meera Rao")
    make_user("doctor", name="Ravi Iyer")
    desk = make_user("reception", password=PASSWORD, name="Lata Desk")
    make_patient(app, "Asha Kumar")
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    with run_server(database_url, workers=1, extra_env=ENV) as base:
        page.goto(f"{base}/")
        assert "/login" in page.url
        assert_accessible(page, "login")
        keyboard_sign_in(page, desk.username)
        page.wait_for_url(f"{base}/reception")  # `/` sends reception to its screen
        page.wait_for_selector('#live-status[data-state="live"]', timeout=5000)
        assert page.inner_text("#me-name") == "Lata Desk"
        wait_focus(page, "find-q")  # the find box has focus on load

        # Find: results as you type; ↓ to the result, Enter picks it for booking.
        page.keyboard.type("asha")
        page.wait_for_selector("#find-results a.result")
        assert_accessible(page, "reception: results")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.classList.contains('result')")
        page.keyboard.press("Enter")
        page.wait_for_selector("#book-form")
        assert page.inner_text("#book-patient") == "Asha Kumar"
        wait_focus(page, "book-doctor")
        option = page.inner_text(f'#book-doctor option[data-doctor-id="{doctor.id}"]')
        assert "Meera Rao" in option and "0 waiting" in option and "no wait" in option
        assert_accessible(page, "reception: book")
        shot(page, "reception-book")

        # Book: Type, Priority, Chief complaint, Enter.
        page.keyboard.press("Tab")  # Type (New)
        page.keyboard.press("Tab")  # Priority
        page.keyboard.press("U")  # Urgent
        page.keyboard.press("Tab")
        page.keyboard.type("Fever for two days")
        page.keyboard.press("Enter")
        page.wait_for_selector("#slip")
        assert page.inner_text("#slip-token") == "1"
        wait_focus(page, "print-slip")
        assert page.inner_text(f"#queue-{doctor.id} tbody").count("Asha Kumar") == 1
        assert "Urgent" in page.inner_text(f"#queue-{doctor.id} tbody")
        assert_accessible(page, "reception: slip")
        shot(page, "reception-booked")

        # The token slip: Enter on "Print token slip".
        page.keyboard.press("Enter")
        page.wait_for_selector("#token")
        assert page.inner_text("#token") == "1"
        assert page.inner_text("#slip-doctor") == "Meera Rao"
        assert page.query_selector(".qr svg") is not None
        assert re.fullmatch(rf"{re.escape(base)}/t/\S+", page.inner_text("#ticket-url"))
        wait_focus(page, "print-now")
        assert_accessible(page, "token slip")
        shot(page, "token-slip")

        # Back to the desk with the keyboard, then register a new patient.
        page.keyboard.press("Tab")  # 80 mm
        page.keyboard.press("Tab")  # Back to reception
        page.keyboard.press("Enter")
        page.wait_for_selector("#find-q:focus")
        page.keyboard.type("Ravi Shankar")
        page.wait_for_selector("a.to-register")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # "Register patient": the name goes along
        wait_focus(page, "reg-name")
        assert page.input_value("#reg-name") == "Ravi Shankar"
        page.keyboard.press("Tab")
        page.keyboard.press("M")  # Gender: Male
        page.keyboard.press("Tab")
        page.keyboard.type("1980-04-02")
        page.keyboard.press("Tab")  # Age: left empty
        page.keyboard.press("Tab")
        page.keyboard.type("98450 11223")
        page.keyboard.press("Tab")
        page.keyboard.type("12 MG Road")
        page.keyboard.press("Enter")
        page.wait_for_selector("#book-form")
        assert page.inner_text("#book-patient") == "Ravi Shankar"
        assert "Registered" in page.inner_text("#book")
        wait_focus(page, "book-doctor")

        # A second registration with the same phone: Possible duplicates, open one instead.
        # (Playwright's synthetic keys do not fire accesskeys: back to Name with Shift+Tab.)
        for _ in range(10):
            if focused_id(page) == "reg-name":
                break
            page.keyboard.press("Shift+Tab")
        assert focused_id(page) == "reg-name"
        page.keyboard.type("R Shankar")
        page.keyboard.press("Tab")
        page.keyboard.press("M")
        for _ in range(3):
            page.keyboard.press("Tab")
        page.keyboard.type("9845011223")
        page.keyboard.press("Enter")
        page.wait_for_selector("#duplicates")
        assert "Possible duplicates" in page.inner_text("#duplicates")
        assert "Ravi Shankar" in page.inner_text("#duplicates")
        assert page.evaluate("document.activeElement.classList.contains('open-duplicate')")
        assert page.query_selector("#register-anyway") is not None
        assert_accessible(page, "reception: duplicates")
        shot(page, "reception-duplicates")
        page.keyboard.press("Enter")  # open the one already registered
        page.wait_for_selector("#book-form")
        assert page.inner_text("#book-patient") == "Ravi Shankar"
    context.close()


def test_the_queues_follow_a_booking_made_elsewhere_within_a_second(app, database_url, make_user, browser):  # noqa: F811
    doctor = make_user("doctor", name="Meera Rao")
    desk = make_user("reception", password=PASSWORD)
    api = token_for(app, make_user("reception"))
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with run_server(database_url, workers=1, extra_env=ENV) as base:
        page.goto(f"{base}/reception")
        keyboard_sign_in(page, desk.username)
        page.wait_for_url(f"{base}/reception")
        page.wait_for_selector('#live-status[data-state="live"]', timeout=5000)
        assert page.inner_text("#live-status") == "Live"
        assert "Nobody waiting" in page.inner_text(f"#queue-{doctor.id}")
        page.evaluate("window.__notReloaded = true")

        started = time.monotonic()
        res = requests.post(
            f"{base}/api/appointments",
            json=booking(make_patient(app, "Kiran Das"), doctor.id),
            headers={"Authorization": f"Bearer {api}"},
            timeout=10,
        )
        assert res.status_code == 201, res.text
        row = page.wait_for_selector(f'#queue-{doctor.id} tr[data-token="1"]', timeout=1000)
        assert time.monotonic() - started < 2.0  # booking + within a second of the commit
        assert "Kiran Das" in row.inner_text()
        assert page.evaluate("window.__notReloaded") is True  # no reload
        assert page.inner_text(f"#queue-{doctor.id} .waiting-count") == "1 waiting"

        # No-show with the keyboard, from the live row: it moves to the no-shows, then Recall.
        page.focus(f'#queue-{doctor.id} tr[data-token="1"] button[value="NO_SHOW"]')
        page.keyboard.press("Enter")
        page.wait_for_selector('#no-shows tr[data-token="1"]', timeout=2000)
        page.wait_for_selector(f"#queue-{doctor.id} tr.empty-row", timeout=2000)
        assert "marked no-show" in page.inner_text("#queue-message")
        assert_accessible(page, "reception: queues")
        shot(page, "reception-queues")
        page.focus('#no-shows tr[data-token="1"] button[value="WAITING"]')
        page.keyboard.press("Enter")
        page.wait_for_selector(f'#queue-{doctor.id} tr[data-token="1"]', timeout=2000)
        page.wait_for_selector("#no-shows >> text=No no-shows today", timeout=2000)

    # The server is gone: the screen says so in words.
    page.wait_for_selector('#live-status[data-state="reconnecting"]', timeout=5000)
    assert page.inner_text("#live-status").endswith("reconnecting…")
    assert errors == []  # no script error on the page
    page.close()
