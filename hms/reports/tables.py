"""The reports as tables: one list of columns per report, used by both the CSV answers
and the admin's reports page, so a spreadsheet and the screen show the same figures.

A column is (key, label): the CSV header row uses the keys (the JSON field names), the
page the labels. Money is written as a plain decimal ("120.00"), minutes with one
decimal, a missing value as an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from hms.billing.models import PAYMENT_METHODS

Column = tuple[str, str]

METHOD_LABELS = {"CASH": "Cash", "CARD": "Card", "UPI": "UPI", "INSURANCE": "Insurance", "OTHER": "Other"}

VISIT_COLUMNS: tuple[Column, ...] = (
    ("doctor_name", "Doctor"),
    ("booked", "Booked"),
    ("completed", "Completed"),
    ("cancelled", "Cancelled"),
    ("no_show", "No-show"),
    ("still_waiting", "Still waiting"),
    ("wait_p50_minutes", "Wait p50 (min)"),
    ("wait_p90_minutes", "Wait p90 (min)"),
    ("consultation_p50_minutes", "Consultation p50 (min)"),
    ("consultation_p90_minutes", "Consultation p90 (min)"),
)
MONEY_COLUMNS: tuple[Column, ...] = (
    ("billed", "Billed"),
    *((f"collected_{method.lower()}", f"Collected: {METHOD_LABELS[method]}") for method in PAYMENT_METHODS),
    ("collected_total", "Collected"),
    ("refunded", "Refunded"),
    ("net", "Net"),
    ("outstanding", "Outstanding"),
)
DAILY_CSV_COLUMNS: tuple[Column, ...] = (
    ("from", "From"),
    ("to", "To"),
    ("row", "Row"),
    ("doctor_id", "Doctor id"),
    *VISIT_COLUMNS,
    *MONEY_COLUMNS,
)
CASH_UP_COLUMNS: tuple[Column, ...] = (
    ("cashier_name", "Staff"),
    ("method", "Method"),
    ("payment_count", "Payments (count)"),
    ("payments", "Payments"),
    ("refund_count", "Refunds (count)"),
    ("refunds", "Refunds"),
    ("net", "Net (drawer)"),
)
CASH_UP_CSV_COLUMNS: tuple[Column, ...] = (
    ("from", "From"),
    ("to", "To"),
    ("row", "Row"),
    ("cashier_id", "Staff id"),
    *CASH_UP_COLUMNS,
)
AGE_LABELS = {
    "not_due": "Not yet due",
    "days_0_30": "0–30 days",
    "days_31_60": "31–60 days",
    "days_61_90": "61–90 days",
    "over_90": "Over 90 days",
}
BUCKET_COLUMNS: tuple[Column, ...] = (
    ("bucket_label", "Days past due"),
    ("bills", "Bills"),
    ("due_amount", "Due"),
)
OLDEST_COLUMNS: tuple[Column, ...] = (
    ("number", "Bill"),
    ("mrn", "MRN"),
    ("patient_name", "Patient"),
    ("created_on", "Created"),
    ("due_date", "Due date"),
    ("days_past_due", "Days past due"),
    ("total_amount", "Total"),
    ("due_amount", "Due"),
)
RECEIVABLES_CSV_COLUMNS: tuple[Column, ...] = (
    ("as_of", "As of"),
    ("from", "From"),
    ("to", "To"),
    ("row", "Row"),
    ("bucket", "Bucket"),
    ("bills", "Bills"),
    ("bill_id", "Bill id"),
    *(column for column in OLDEST_COLUMNS if column[0] != "due_amount"),
    ("due_amount", "Due"),
)


# ---- rows ---------------------------------------------------------------------------------


def money_row(money: dict) -> dict:
    collected = {f"collected_{line['method'].lower()}": line["amount"] for line in money["collected"]}
    return {
        key: money[key] for key in ("billed", "collected_total", "refunded", "net", "outstanding")
    } | collected


def daily_rows(report: dict) -> list[dict]:
    """One row per doctor ("doctor"), then the "total" row, which also carries the money
    (money is the clinic's, not a doctor's)."""
    period = {"from": report["from"], "to": report["to"]}
    rows = [period | {"row": "doctor"} | doctor for doctor in report["doctors"]]
    total = period | {"row": "total"} | report["totals"] | {"doctor_name": "All doctors"}
    return [*rows, total | money_row(report["money"])]


def cash_up_rows(report: dict) -> list[dict]:
    """Per member of staff: a row per method ("method") then their "cashier_total"; last
    the "total" per method and the grand "total" (method ALL)."""
    period = {"from": report["from"], "to": report["to"]}
    rows = []
    for cashier in report["cashiers"]:
        who = {"cashier_id": cashier["cashier_id"], "cashier_name": cashier["cashier_name"]}
        rows += [period | {"row": "method"} | who | line for line in cashier["methods"]]
        rows.append(period | {"row": "cashier_total"} | who | _sums(cashier) | {"method": "ALL"})
    everyone = {"cashier_id": None, "cashier_name": "All staff"}
    totals = report["totals"]
    rows += [period | {"row": "total"} | everyone | line for line in totals["methods"]]
    rows.append(period | {"row": "total"} | everyone | _sums(totals) | {"method": "ALL"})
    return rows


def _sums(source: dict) -> dict:
    return {key: source[key] for key in ("payments", "refunds", "net", "payment_count", "refund_count")}


def bucket_rows(report: dict) -> list[dict]:
    rows = [bucket | {"bucket_label": AGE_LABELS[bucket["bucket"]]} for bucket in report["buckets"]]
    total = {"bucket": "total", "bucket_label": "Total", "bills": report["total_bills"]}
    return [*rows, total | {"due_amount": report["total_due"]}]


def receivables_rows(report: dict) -> list[dict]:
    """The age buckets ("bucket"), their "total", then the oldest bills ("bill")."""
    period = {"as_of": report["as_of"], "from": report["from"], "to": report["to"]}
    rows = [
        period | {"row": "total" if b["bucket"] == "total" else "bucket"} | b for b in bucket_rows(report)
    ]
    return rows + [period | {"row": "bill"} | bill for bill in report["oldest"]]


# ---- cells --------------------------------------------------------------------------------


def method_label(method: str) -> str:
    """A payment method as staff say it ("Cash", "UPI"); ALL, a staff member's total, as "All"."""
    return "All" if method == "ALL" else METHOD_LABELS.get(method, method)


def cell(value) -> str:
    """A value as the text of a table cell or CSV field."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_csv(columns: Iterable[Column], rows: Iterable[dict]) -> str:
    """One header row (the keys), then the rows. Text that a spreadsheet would run as a
    formula (a name starting with =, +, - or @) is prefixed with an apostrophe."""
    columns = tuple(columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([key for key, _ in columns])
    for row in rows:
        writer.writerow([_csv_safe(row.get(key)) for key, _ in columns])
    return out.getvalue()


def _csv_safe(value) -> str:
    text = cell(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@"):
        return "'" + text
    return text
