"""The admin's reports page, /admin/reports (session cookie, as a browser)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.conftest import form_login
from tests.reports.conftest import ANAND, BELA


def signed_in(app, user):
    browser = app.test_client()
    assert form_login(browser, user.username, "secret-pass").status_code == 302
    return browser


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of one table."""
    table = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [
        [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    ]


def test_the_page_shows_every_report_of_the_day(app, clinic_day):
    browser = signed_in(app, clinic_day.clients["admin"].user)
    day = clinic_day.day
    res = browser.get(f"/admin/reports?date={day}")
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert cells(html, "daily-table") == [
        [ANAND, "5", "3", "1", "0", "1", "25.0", "51.0", "15.0", "19.0"],
        [BELA, "3", "1", "0", "1", "1", "45.0", "45.0", "30.0", "30.0"],
        ["All doctors", "8", "4", "1", "1", "2", "30.0", "54.0", "17.5", "27.0"],
    ]
    assert cells(html, "money-table") == [
        ["3450.00", "950.00", "600.00", "200.00", "0.00", "0.00", "1750.00", "100.00", "1650.00", "1800.00"]
    ]
    cash_up = cells(html, "cash-up-table")
    assert cash_up[-1] == ["All staff", "All", "4", "1750.00", "1", "100.00", "1650.00"]
    assert [
        "Asha Menon",
        "Cash",
        "0",
        "0.00",
        "1",
        "100.00",
        "-100.00",
    ] in cash_up  # methods as staff say them
    assert ["Chitra Das", "UPI", "1", "200.00", "0", "0.00", "200.00"] in cash_up
    assert cells(html, "receivables-table") == [
        ["Not yet due", "1", "400.00"],
        ["0–30 days", "1", "100.00"],
        ["31–60 days", "1", "600.00"],
        ["61–90 days", "1", "350.00"],
        ["Over 90 days", "1", "350.00"],
        ["Total", "5", "1800.00"],
    ]
    assert [row[2] for row in cells(html, "oldest-table")] == [
        f"Patient {k}" for k in ("B3", "B1", "A4", "A3", "A2")
    ]
    # The charts: inline SVG, titled, every bar written out as text.
    waits = re.search(r'<svg id="chart-waits".*?</svg>', html, re.S).group(0)
    assert 'role="img"' in waits and "<title" in waits
    assert "p50 25.0 min" in waits and "p90 51.0 min" in waits and "p50 45.0 min" in waits
    collections = re.search(r'<svg id="chart-collections".*?</svg>', html, re.S).group(0)
    assert "950.00" in collections and "Cash" in collections and "Insurance" in collections
    # CSV links: the API's, for the same day, opened by the session cookie.
    for name in ("daily", "cash-up", "receivables"):
        link = re.search(rf'id="csv-{name}"[^>]*href="([^"]+)"', html).group(1).replace("&amp;", "&")
        assert link == f"/api/reports/{name}?date={day}&format=csv"
        download = browser.get(link)
        assert download.status_code == 200 and download.mimetype == "text/csv"
    assert 'href="/admin"' in html


def test_a_period_and_an_empty_day_render(app, clinic_day):
    browser = signed_in(app, clinic_day.clients["admin"].user)
    day = clinic_day.day
    res = browser.get(f"/admin/reports?from={day - timedelta(days=2)}&to={day}")
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and f"{day - timedelta(days=2)}</strong> to <strong>{day}" in html
    assert f"from={day - timedelta(days=2)}&amp;to={day}&amp;format=csv" in html
    empty = browser.get("/admin/reports?date=2026-01-05")
    html = empty.get_data(as_text=True)
    assert empty.status_code == 200
    assert cells(html, "daily-table") == [["All doctors", "0", "0", "0", "0", "0", "", "", "", ""]]
    assert "Nothing to show" in html and "No unpaid bills." in html


def test_today_by_default_and_bad_dates_in_words(app, make_user):
    browser = signed_in(app, make_user("admin"))
    assert browser.get("/admin/reports").status_code == 200
    res = browser.get("/admin/reports?from=2026-02-01&to=2026-01-01")
    assert res.status_code == 422 and "Must not be before from" in res.get_data(as_text=True)
    res = browser.get("/admin/reports?date=2026-02-30")
    assert res.status_code == 422 and 'role="alert"' in res.get_data(as_text=True)


@pytest.mark.parametrize("role", ["cashier", "reception", "doctor", "display"])
def test_only_admin_opens_the_page(app, make_user, role):
    assert signed_in(app, make_user(role)).get("/admin/reports").status_code == 403


def test_signed_out_goes_to_login(client):
    res = client.get("/admin/reports")
    assert res.status_code == 302 and "/login?next=/admin/reports" in res.headers["Location"]
