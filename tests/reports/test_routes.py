"""The reports API on a day with known numbers (tests/reports/conftest.py): every figure of
each report, in JSON and in CSV; roles; bad input; statement counts; the clinic day."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.reports.conftest import ANAND, BELA, at, book, ok, register, set_rows

EMPTY_MINUTES = {
    "wait_p50_minutes": None,
    "wait_p90_minutes": None,
    "consultation_p50_minutes": None,
    "consultation_p90_minutes": None,
}


def csv_rows(res) -> list[dict]:
    assert res.status_code == 200, res.get_data(as_text=True)
    assert res.mimetype == "text/csv"
    assert res.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(res.get_data(as_text=True))))


# ---- daily ----------------------------------------------------------------------------------


def test_daily_report_has_every_figure_of_the_day(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    report = ok(admin.get(f"/api/reports/daily?date={day}"))
    assert report == {
        "from": day.isoformat(),
        "to": day.isoformat(),
        "doctors": [
            {
                "doctor_id": clinic_day.doctors[ANAND],
                "doctor_name": ANAND,
                "booked": 5,
                "completed": 3,
                "cancelled": 1,
                "no_show": 0,
                "still_waiting": 1,
                "wait_p50_minutes": 25.0,  # 10, 20, 30, 60
                "wait_p90_minutes": 51.0,
                "consultation_p50_minutes": 15.0,  # 10, 15, 20
                "consultation_p90_minutes": 19.0,
            },
            {
                "doctor_id": clinic_day.doctors[BELA],
                "doctor_name": BELA,
                "booked": 3,
                "completed": 1,
                "cancelled": 0,
                "no_show": 1,
                "still_waiting": 1,
                "wait_p50_minutes": 45.0,
                "wait_p90_minutes": 45.0,
                "consultation_p50_minutes": 30.0,
                "consultation_p90_minutes": 30.0,
            },
        ],
        "totals": {
            "booked": 8,
            "completed": 4,
            "cancelled": 1,
            "no_show": 1,
            "still_waiting": 2,
            "wait_p50_minutes": 30.0,  # 10, 20, 30, 45, 60
            "wait_p90_minutes": 54.0,
            "consultation_p50_minutes": 17.5,  # 10, 15, 20, 30
            "consultation_p90_minutes": 27.0,
        },
        "money": {
            "billed": "3450.00",  # 4 x 600 + 3 x 350 (A5's bill is void)
            "collected": [
                {"method": "CASH", "amount": "950.00"},
                {"method": "CARD", "amount": "600.00"},
                {"method": "UPI", "amount": "200.00"},
                {"method": "INSURANCE", "amount": "0.00"},
                {"method": "OTHER", "amount": "0.00"},
            ],
            "collected_total": "1750.00",
            "refunded": "100.00",
            "net": "1650.00",
            "outstanding": "1800.00",  # A2 400 + A3 100 + A4 600 + B1 350 + B3 350
        },
    }
    # The money agrees with the bills themselves.
    bills = [ok(admin.get(f"/api/bills/{bill_id}")) for bill_id in clinic_day.bills.values()]
    live = [bill for bill in bills if bill["status"] != "VOID"]
    assert sum(float(b["total_amount"]) for b in live) == 3450.0
    assert sum(float(b["paid_amount"]) for b in live) == 1650.0
    assert sum(float(b["due_amount"]) for b in live) == 1800.0


def test_daily_report_as_csv(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    res = admin.get(f"/api/reports/daily?date={day}&format=csv")
    assert res.headers["Content-Disposition"] == f'attachment; filename="hms-daily-{day}.csv"'
    rows = csv_rows(res)
    empty_money = dict.fromkeys(
        (
            "billed",
            "collected_cash",
            "collected_card",
            "collected_upi",
            "collected_insurance",
            "collected_other",
            "collected_total",
            "refunded",
            "net",
            "outstanding",
        ),
        "",
    )
    period = {"from": str(day), "to": str(day)}
    assert rows == [
        period
        | {
            "row": "doctor",
            "doctor_id": str(clinic_day.doctors[ANAND]),
            "doctor_name": ANAND,
            "booked": "5",
            "completed": "3",
            "cancelled": "1",
            "no_show": "0",
            "still_waiting": "1",
            "wait_p50_minutes": "25.0",
            "wait_p90_minutes": "51.0",
            "consultation_p50_minutes": "15.0",
            "consultation_p90_minutes": "19.0",
        }
        | empty_money,
        period
        | {
            "row": "doctor",
            "doctor_id": str(clinic_day.doctors[BELA]),
            "doctor_name": BELA,
            "booked": "3",
            "completed": "1",
            "cancelled": "0",
            "no_show": "1",
            "still_waiting": "1",
            "wait_p50_minutes": "45.0",
            "wait_p90_minutes": "45.0",
            "consultation_p50_minutes": "30.0",
            "consultation_p90_minutes": "30.0",
        }
        | empty_money,
        period
        | {
            "row": "total",
            "doctor_id": "",
            "doctor_name": "All doctors",
            "booked": "8",
            "completed": "4",
            "cancelled": "1",
            "no_show": "1",
            "still_waiting": "2",
            "wait_p50_minutes": "30.0",
            "wait_p90_minutes": "54.0",
            "consultation_p50_minutes": "17.5",
            "consultation_p90_minutes": "27.0",
            "billed": "3450.00",
            "collected_cash": "950.00",
            "collected_card": "600.00",
            "collected_upi": "200.00",
            "collected_insurance": "0.00",
            "collected_other": "0.00",
            "collected_total": "1750.00",
            "refunded": "100.00",
            "net": "1650.00",
            "outstanding": "1800.00",
        },
    ]


def test_an_empty_day_has_zeros_and_no_minutes(admin):
    report = ok(admin.get("/api/reports/daily?date=2026-01-05"))
    assert report["doctors"] == []
    assert report["totals"] == {
        "booked": 0,
        "completed": 0,
        "cancelled": 0,
        "no_show": 0,
        "still_waiting": 0,
    } | (EMPTY_MINUTES)
    assert report["money"]["billed"] == report["money"]["net"] == report["money"]["outstanding"] == "0.00"
    rows = csv_rows(admin.get("/api/reports/daily?date=2026-01-05&format=csv"))
    assert [row["row"] for row in rows] == ["total"]
    assert rows[0]["wait_p50_minutes"] == "" and rows[0]["net"] == "0.00"


def test_a_period_adds_up_its_days(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    one = ok(admin.get(f"/api/reports/daily?date={day}"))
    week = ok(admin.get(f"/api/reports/daily?from={day - timedelta(days=6)}&to={day + timedelta(days=1)}"))
    assert week["from"] == str(day - timedelta(days=6)) and week["to"] == str(day + timedelta(days=1))
    assert week["doctors"] == one["doctors"] and week["money"] == one["money"]
    res = admin.get(f"/api/reports/daily?from={day - timedelta(days=6)}&to={day}&format=csv")
    assert f"hms-daily-{day - timedelta(days=6)}_{day}.csv" in res.headers["Content-Disposition"]


# ---- cash-up --------------------------------------------------------------------------------


def _drawer(method, payments, refunds, net, payment_count, refund_count):
    return {
        "method": method,
        "payments": payments,
        "refunds": refunds,
        "net": net,
        "payment_count": payment_count,
        "refund_count": refund_count,
    }


def test_cash_up_has_every_drawer(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    report = ok(admin.get(f"/api/reports/cash-up?date={day}"))
    chitra, dev = clinic_day.cashiers["Chitra Das"], clinic_day.cashiers["Dev Kumar"]
    assert report == {
        "from": str(day),
        "to": str(day),
        "cashier_id": None,
        "cashiers": [
            {
                "cashier_id": clinic_day.admin_id,
                "cashier_name": "Asha Menon",
                "methods": [_drawer("CASH", "0.00", "100.00", "-100.00", 0, 1)],
                "payments": "0.00",
                "refunds": "100.00",
                "net": "-100.00",
                "payment_count": 0,
                "refund_count": 1,
            },
            {
                "cashier_id": chitra,
                "cashier_name": "Chitra Das",
                "methods": [
                    _drawer("CASH", "600.00", "0.00", "600.00", 1, 0),
                    _drawer("UPI", "200.00", "0.00", "200.00", 1, 0),
                ],
                "payments": "800.00",
                "refunds": "0.00",
                "net": "800.00",
                "payment_count": 2,
                "refund_count": 0,
            },
            {
                "cashier_id": dev,
                "cashier_name": "Dev Kumar",
                "methods": [
                    _drawer("CASH", "350.00", "0.00", "350.00", 1, 0),
                    _drawer("CARD", "600.00", "0.00", "600.00", 1, 0),
                ],
                "payments": "950.00",
                "refunds": "0.00",
                "net": "950.00",
                "payment_count": 2,
                "refund_count": 0,
            },
        ],
        "totals": {
            "methods": [
                _drawer("CASH", "950.00", "100.00", "850.00", 2, 1),
                _drawer("CARD", "600.00", "0.00", "600.00", 1, 0),
                _drawer("UPI", "200.00", "0.00", "200.00", 1, 0),
            ],
            "payments": "1750.00",
            "refunds": "100.00",
            "net": "1650.00",
            "payment_count": 4,
            "refund_count": 1,
        },
    }


def test_cash_up_as_csv(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    rows = csv_rows(admin.get(f"/api/reports/cash-up?date={day}&format=csv"))
    chitra, dev = clinic_day.cashiers["Chitra Das"], clinic_day.cashiers["Dev Kumar"]
    got = [
        (r["row"], r["cashier_id"], r["cashier_name"], r["method"])
        + (r["payment_count"], r["payments"], r["refund_count"], r["refunds"], r["net"])
        for r in rows
    ]
    a = str(clinic_day.admin_id)
    assert got == [
        ("method", a, "Asha Menon", "CASH", "0", "0.00", "1", "100.00", "-100.00"),
        ("cashier_total", a, "Asha Menon", "ALL", "0", "0.00", "1", "100.00", "-100.00"),
        ("method", str(chitra), "Chitra Das", "CASH", "1", "600.00", "0", "0.00", "600.00"),
        ("method", str(chitra), "Chitra Das", "UPI", "1", "200.00", "0", "0.00", "200.00"),
        ("cashier_total", str(chitra), "Chitra Das", "ALL", "2", "800.00", "0", "0.00", "800.00"),
        ("method", str(dev), "Dev Kumar", "CASH", "1", "350.00", "0", "0.00", "350.00"),
        ("method", str(dev), "Dev Kumar", "CARD", "1", "600.00", "0", "0.00", "600.00"),
        ("cashier_total", str(dev), "Dev Kumar", "ALL", "2", "950.00", "0", "0.00", "950.00"),
        ("total", "", "All staff", "CASH", "2", "950.00", "1", "100.00", "850.00"),
        ("total", "", "All staff", "CARD", "1", "600.00", "0", "0.00", "600.00"),
        ("total", "", "All staff", "UPI", "1", "200.00", "0", "0.00", "200.00"),
        ("total", "", "All staff", "ALL", "4", "1750.00", "1", "100.00", "1650.00"),
    ]
    assert {(r["from"], r["to"]) for r in rows} == {(str(day), str(day))}


def test_a_cashier_gets_their_own_cash_up_only(clinic_day):
    day = clinic_day.day
    chitra, dev = clinic_day.clients["chitra"], clinic_day.clients["dev"]
    own = ok(chitra.get(f"/api/reports/cash-up?date={day}"))
    assert own["cashier_id"] == chitra.user.id
    assert [c["cashier_name"] for c in own["cashiers"]] == ["Chitra Das"]
    assert own["totals"]["net"] == "800.00"
    assert ok(chitra.get(f"/api/reports/cash-up?date={day}&cashier_id={chitra.user.id}")) == own
    res = chitra.get(f"/api/reports/cash-up?date={day}&cashier_id={dev.user.id}")
    assert res.status_code == 403
    assert "own cash-up" in res.get_json()["message"]
    rows = csv_rows(chitra.get(f"/api/reports/cash-up?date={day}&format=csv"))
    assert {r["cashier_name"] for r in rows} == {"Chitra Das", "All staff"}
    # An admin may ask for anyone's; a cashier with nothing taken has an empty drawer.
    admin = clinic_day.clients["admin"]
    assert (
        ok(admin.get(f"/api/reports/cash-up?date={day}&cashier_id={dev.user.id}"))["totals"]["net"]
        == "950.00"
    )
    nothing = ok(admin.get(f"/api/reports/cash-up?date={day - timedelta(days=1)}&cashier_id={dev.user.id}"))
    assert nothing["cashiers"] == [
        {
            "cashier_id": dev.user.id,
            "cashier_name": "Dev Kumar",
            "methods": [],
            "payments": "0.00",
            "refunds": "0.00",
            "net": "0.00",
            "payment_count": 0,
            "refund_count": 0,
        }
    ]


# ---- receivables ------------------------------------------------------------------------------


def test_receivables_by_age_with_the_oldest_bills(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    report = ok(admin.get(f"/api/reports/receivables?date={day}"))
    assert report["as_of"] == str(day) and report["from"] is None and report["to"] is None
    assert report["buckets"] == [
        {"bucket": "not_due", "bills": 1, "due_amount": "400.00"},
        {"bucket": "days_0_30", "bills": 1, "due_amount": "100.00"},
        {"bucket": "days_31_60", "bills": 1, "due_amount": "600.00"},
        {"bucket": "days_61_90", "bills": 1, "due_amount": "350.00"},
        {"bucket": "over_90", "bills": 1, "due_amount": "350.00"},
    ]
    assert report["total_bills"] == 5 and report["total_due"] == "1800.00"
    bills = {key: ok(admin.get(f"/api/bills/{bill_id}")) for key, bill_id in clinic_day.bills.items()}
    expected = []
    for key, days, total, due in (
        ("B3", 120, "350.00", "350.00"),
        ("B1", 75, "350.00", "350.00"),
        ("A4", 45, "600.00", "600.00"),
        ("A3", 0, "600.00", "100.00"),
        ("A2", -5, "600.00", "400.00"),
    ):
        expected.append(
            {
                "bill_id": clinic_day.bills[key],
                "number": bills[key]["number"],
                "patient_id": bills[key]["patient_id"],
                "mrn": ok(admin.get(f"/api/patients/{bills[key]['patient_id']}"))["mrn"],
                "patient_name": f"Patient {key}",
                "created_on": str(day),
                "due_date": str(day - timedelta(days=days)),
                "days_past_due": days,
                "total_amount": total,
                "due_amount": due,
            }
        )
    assert report["oldest"] == expected

    rows = csv_rows(admin.get(f"/api/reports/receivables?date={day}&format=csv"))
    assert [(r["row"], r["bucket"], r["bills"], r["due_amount"]) for r in rows[:6]] == [
        ("bucket", "not_due", "1", "400.00"),
        ("bucket", "days_0_30", "1", "100.00"),
        ("bucket", "days_31_60", "1", "600.00"),
        ("bucket", "days_61_90", "1", "350.00"),
        ("bucket", "over_90", "1", "350.00"),
        ("total", "total", "5", "1800.00"),
    ]
    bill_columns = (
        "bill_id",
        "number",
        "mrn",
        "patient_name",
        "created_on",
        "due_date",
        "days_past_due",
        "total_amount",
        "due_amount",
    )
    assert [{k: r[k] for k in bill_columns} for r in rows[6:]] == [
        {k: str(bill[k]) for k in bill_columns} for bill in expected
    ]
    assert {r["row"] for r in rows[6:]} == {"bill"}
    assert {r["as_of"] for r in rows} == {str(day)}


def test_receivables_age_on_the_day_asked_and_by_creation_window(clinic_day):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    later = ok(admin.get(f"/api/reports/receivables?date={day + timedelta(days=31)}"))
    assert [b["bills"] for b in later["buckets"]] == [0, 1, 1, 1, 2]  # A2 26 days, A3 31 days past due
    # Before the bills were created there was nothing to collect.
    assert ok(admin.get(f"/api/reports/receivables?date={day - timedelta(days=1)}"))["total_bills"] == 0
    window = ok(admin.get(f"/api/reports/receivables?from={day}&to={day}"))
    assert window["from"] == window["to"] == window["as_of"] == str(day)
    assert window["total_due"] == "1800.00"
    assert (
        ok(
            admin.get(f"/api/reports/receivables?from={day - timedelta(days=9)}&to={day - timedelta(days=1)}")
        )["total_bills"]
        == 0
    )


# ---- the clinic day ---------------------------------------------------------------------------


def test_a_payment_belongs_to_its_local_day(app, monkeypatch, admin, cashier, make_user):
    """At 23:30 in Kolkata it is 18:00 UTC: the payment is that local day's, and one at
    00:30 the next local morning (19:00 UTC, the same UTC date) is the next day's."""
    from hms.billing.models import Payment

    monkeypatch.setitem(app.config, "CLINIC_TIMEZONE", "Asia/Kolkata")
    doctor = make_user("doctor", name="Dr Late", consultation_fee="100.00", hospital_fee="0.00")
    booked = book(admin, register(admin, "Night Patient"), doctor.id)
    with app.app_context():
        from hms.core.time import clinic_today

        today = clinic_today()
    for amount, hhmm, days in (("30.00", "23:30", 0), ("20.00", "00:30", 1)):
        bill = ok(
            cashier.post(
                f"/api/bills/{booked['bill_id']}/payments", json={"amount": amount, "method": "CASH"}
            ),
            201,
        )
        set_rows(app, Payment, bill["payments"][-1]["id"], created_at=at(app, today, hhmm, days))
    first, second = at(app, today, "23:30"), at(app, today, "00:30", 1)
    assert first.date() == second.date()  # the same UTC day, two clinic days
    day_one = ok(admin.get(f"/api/reports/daily?date={today}"))["money"]
    day_two = ok(admin.get(f"/api/reports/daily?date={today + timedelta(days=1)}"))["money"]
    assert (day_one["collected_total"], day_two["collected_total"]) == ("30.00", "20.00")
    assert ok(admin.get(f"/api/reports/cash-up?date={today}"))["totals"]["payments"] == "30.00"


# ---- statements, roles, bad input --------------------------------------------------------------


def test_statement_counts_do_not_grow_with_rows(clinic_day, count_queries, app):
    admin, day = clinic_day.clients["admin"], clinic_day.day
    urls = [f"/api/reports/{name}?date={day}" for name in ("daily", "cash-up", "receivables")]

    def counts():
        result = []
        for url in urls:
            with count_queries() as counter:
                ok(admin.get(url))
            result.append(counter.count)
        return result

    before = counts()
    reception, chitra = clinic_day.clients["reception"], clinic_day.clients["chitra"]
    doctor_ids = list(clinic_day.doctors.values())
    for n in range(6):
        booked = book(reception, register(reception, f"More Patient {n}"), doctor_ids[n % 2])
        ok(
            chitra.post(
                f"/api/bills/{booked['bill_id']}/payments", json={"amount": "10.00", "method": "OTHER"}
            ),
            201,
        )
    ok(admin.post(f"/api/queue/{doctor_ids[1]}/next"))
    assert ok(admin.get(urls[0]))["totals"]["booked"] == 14
    assert counts() == before


@pytest.mark.parametrize("role", ["reception", "doctor", "cashier", "display"])
def test_only_admin_reads_the_reports(as_role, role):
    caller = as_role(role)
    for name in ("daily", "receivables"):
        assert caller.get(f"/api/reports/{name}").status_code == 403
    expected = 200 if role == "cashier" else 403
    assert caller.get("/api/reports/cash-up").status_code == expected


def test_reports_need_an_account(client):
    for name in ("daily", "cash-up", "receivables"):
        assert client.get(f"/api/reports/{name}?date=nonsense").status_code == 401


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("date=2026-13-01", "date", "Not a valid date"),
        ("date=03-12-2026", "date", "Not a valid date"),
        ("from=2026-01-01", "to", "Give both from and to"),
        ("to=2026-01-01", "from", "Give both from and to"),
        ("from=2026-02-01&to=2026-01-01", "to", "Must not be before from"),
        ("from=2025-01-01&to=2026-01-02", "to", "at most 366 days"),
        ("date=2026-01-01&from=2026-01-01&to=2026-01-02", "date", "either date, or from and to"),
        ("format=xml", "format", "format=json or format=csv"),
        ("dates=2026-01-01", "dates", "Unknown field"),
    ],
)
def test_bad_periods_are_422_in_words(admin, query, field, words):
    for name in ("daily", "cash-up", "receivables"):
        res = admin.get(f"/api/reports/{name}?{query}")
        assert res.status_code == 422, (name, query)
        body = res.get_json()
        assert words in str(body["errors"]["query"][field]), body


def test_a_year_is_allowed(admin):
    assert admin.get("/api/reports/daily?from=2025-01-01&to=2026-01-01").status_code == 200  # 366 days


def test_openapi_documents_the_reports(client):
    spec = client.get("/api/openapi.json").get_json()
    for name in ("daily", "cash-up", "receivables"):
        operation = spec["paths"][f"/api/reports/{name}"]["get"]
        assert "text/csv" in operation["responses"]["200"]["content"]
        assert {p["name"] for p in operation["parameters"]} >= {"date", "from", "to", "format"}
