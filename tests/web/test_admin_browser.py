"""The administrator's console in headless Chromium against a live gunicorn server (the
fixtures of test_screens_browser.py): by keyboard, add a doctor and a medicine; axe-core
finds no serious or critical violation on /admin, the staff pages and the catalogue
pages; screenshots under tests/screenshots/."""

from __future__ import annotations

from tests.conftest import run_server, token_for
from tests.web.test_display_browser import browser  # noqa: F401 - the fixture
from tests.web.test_screens_browser import LIVE_ENV, PASSWORD, Api, assert_accessible, shot, sign_in


def focused(page) -> str:
    return page.evaluate("document.activeElement.id")


def test_add_a_doctor_and_a_medicine_by_keyboard(app, database_url, make_user, browser):  # noqa: F811
    admin = make_user("admin", name="Anita Admin", password=PASSWORD)
    api = Api("", token_for(app, admin))
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    with run_server(database_url, workers=1, extra_env=LIVE_ENV) as base:
        api.base = base
        api.post("/api/departments", {"name": "General Medicine"})
        sign_in(page, base, admin, "/admin")
        assert page.inner_text("h1") == "Administration"
        assert_accessible(page, "admin home")
        shot(page, "admin-home")

        # Staff (Alt+S), Add staff member (Alt+N): a doctor, all from the keyboard.
        page.keyboard.press("Alt+s")
        page.wait_for_url("**/admin/staff")
        assert_accessible(page, "admin staff")
        page.keyboard.press("Alt+n")
        assert focused(page) == "add-username"
        page.keyboard.type("meera")
        page.keyboard.press("Tab")
        page.keyboard.type("Meera Rao")
        page.keyboard.press("Tab")
        assert focused(page) == "add-role"
        page.keyboard.type("doc")
        assert page.input_value("#add-role") == "doctor"
        page.keyboard.press("Tab")
        page.keyboard.type("consult-room-4")
        page.keyboard.press("Tab")
        assert focused(page) == "add-department"
        page.keyboard.type("Gen")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")  # Specialization: none yet
        assert focused(page) == "add-room"
        page.keyboard.type("Room 4")
        page.keyboard.press("Tab")
        page.keyboard.type("500")
        page.keyboard.press("Tab")
        page.keyboard.type("100")
        shot(page, "admin-staff-add")
        page.keyboard.press("Enter")
        page.wait_for_selector("#notice >> text=Account added", timeout=5000)
        assert page.inner_text("h1") == "Meera Rao"
        assert_accessible(page, "admin staff account")
        shot(page, "admin-staff-account")
        [doctor] = api.get("/api/doctors")["data"]
        assert (doctor["name"], doctor["room"], doctor["consultation_fee"], doctor["hospital_fee"]) == (
            "Meera Rao",
            "Room 4",
            "500.00",
            "100.00",
        )
        assert doctor["department"]["name"] == "General Medicine" and doctor["is_available"] is True

        # Reference data (Alt+G), then Medicines, and Add (Alt+N) from the keyboard.
        page.keyboard.press("Alt+g")
        page.wait_for_url("**/admin/reference/departments")
        page.focus("nav.catalogues a >> text=Medicines")
        page.keyboard.press("Enter")
        page.wait_for_url("**/admin/reference/medicines")
        page.keyboard.press("Alt+n")
        assert focused(page) == "add-name"
        for text in ("Crocin", "Paracetamol", "tablet", "500 mg", "2.50"):
            page.keyboard.type(text)
            page.keyboard.press("Tab")
        shot(page, "admin-medicine-add")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#notice >> text=Added Crocin.", timeout=5000)
        assert "Crocin" in page.inner_text("#ref-table")
        assert_accessible(page, "admin medicines")
        shot(page, "admin-medicines")
        [medicine] = api.get("/api/medicines")["data"]
        assert (medicine["generic_name"], medicine["strength"], medicine["unit_price"]) == (
            "Paracetamol",
            "500 mg",
            "2.50",
        )

        # A refused add: the words beside the field, and the page still passes axe.
        page.keyboard.press("Alt+n")
        for text in ("Dolo", "", "", "", "-1"):
            page.keyboard.type(text)
            page.keyboard.press("Tab")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#add-unit-price-error >> text=An amount cannot be negative", timeout=5000)
        assert focused(page) == "add-unit-price"
        assert_accessible(page, "admin medicines, refused")
        page.goto(f"{base}/admin/reference/medicines/{medicine['id']}")
        assert_accessible(page, "admin medicine edit")
    context.close()
