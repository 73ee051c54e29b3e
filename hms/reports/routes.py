"""HTTP routes of the reports: /api/reports/daily, /cash-up and /receivables, JSON or CSV."""

from datetime import date

from flask import current_app
from flask.views import MethodView

from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.reports import service, tables
from hms.reports.schemas import (
    PERIOD_RULES,
    CashUpQuery,
    CashUpReportSchema,
    DailyReportSchema,
    PeriodQuery,
    ReceivablesReportSchema,
)

blp = Blueprint("reports", __name__, url_prefix="/api/reports", description="reports (admin)")

_CSV_DOC = {"responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}}}


def csv_response(name: str, start: date | None, end: date, columns, rows):
    """A text/csv download named e.g. hms-daily-2026-12-03.csv (or ..._2026-12-01_2026-12-03.csv)."""
    days = end.isoformat() if start is None or start == end else f"{start.isoformat()}_{end.isoformat()}"
    return current_app.response_class(
        tables.to_csv(columns, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="hms-{name}-{days}.csv"'},
    )


@blp.route("/daily")
class DailyReport(MethodView):
    @allow("reports.read")
    @blp.doc(description=PERIOD_RULES, **_CSV_DOC)
    @blp.arguments(PeriodQuery, location="query")
    @blp.response(200, DailyReportSchema)
    @blp.alt_response(422, description="A bad date, from without to, to before from, more than 366 days")
    def get(self, query):
        """Visits, waits and consultation minutes per doctor, and the money of the period"""
        start, end = service.resolve_period(query.get("date"), query.get("start"), query.get("end"))
        report = service.daily(start, end)
        if query["format"] == "csv":
            return csv_response("daily", start, end, tables.DAILY_CSV_COLUMNS, tables.daily_rows(report))
        return report


@blp.route("/cash-up")
class CashUpReport(MethodView):
    @allow("reports.cash_up")
    @blp.doc(description=PERIOD_RULES + " A cashier gets their own cash-up only.", **_CSV_DOC)
    @blp.arguments(CashUpQuery, location="query")
    @blp.response(200, CashUpReportSchema)
    @blp.alt_response(403, description="A cashier asking for another cashier's cash-up")
    @blp.alt_response(422, description="A bad date or period")
    def get(self, query):
        """Payments, refunds and net per member of staff and method: what each drawer should hold"""
        cashier_id = service.cash_up_scope(current_identity(), query.get("cashier_id"))
        start, end = service.resolve_period(query.get("date"), query.get("start"), query.get("end"))
        report = service.cash_up(start, end, cashier_id)
        if query["format"] == "csv":
            name = "cash-up" if cashier_id is None else f"cash-up-{cashier_id}"
            return csv_response(name, start, end, tables.CASH_UP_CSV_COLUMNS, tables.cash_up_rows(report))
        return report


@blp.route("/receivables")
class ReceivablesReport(MethodView):
    @allow("reports.read")
    @blp.doc(
        description=PERIOD_RULES
        + " `?date=` ages every bill created by that day; `?from=&to=` ages, on `to`, "
        "the bills created in those days.",
        **_CSV_DOC,
    )
    @blp.arguments(PeriodQuery, location="query")
    @blp.response(200, ReceivablesReportSchema)
    @blp.alt_response(422, description="A bad date or period")
    def get(self, query):
        """What is still due, by days past the due date, with the oldest bills"""
        report = service.receivables_report(query.get("date"), query.get("start"), query.get("end"))
        if query["format"] == "csv":
            return csv_response(
                "receivables",
                report["from"],
                report["as_of"],
                tables.RECEIVABLES_CSV_COLUMNS,
                tables.receivables_rows(report),
            )
        return report
