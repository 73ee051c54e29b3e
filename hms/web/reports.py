"""The admin's reports page: /admin/reports (admin).

One GET form (a day, or from–to), then the three reports of hms.reports as tables (the
columns of hms.reports.tables, the same as the CSV downloads), a CSV link for each (the
API's ?format=csv, which the session cookie opens), and two small inline SVG charts of
the period (hms.web.charts): waits per doctor and collections by method. The charts'
numbers are in the tables too.
"""

from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, render_template, request, url_for

from hms.core.access import page
from hms.errors import HMSError
from hms.reports import service, tables
from hms.reports.schemas import PeriodQuery
from hms.web.charts import bar_chart
from hms.web.forms import clinic_words

bp = Blueprint("reports_page", __name__, url_prefix="/admin", template_folder="templates")

_query = PeriodQuery()


@bp.route("/reports")
@page("reports.read")
def index():
    """The day's (or period's) reports."""
    args = {key: value for key, value in request.args.items() if key in ("date", "from", "to") and value}
    try:
        query = _query.load(args)
        start, end = service.resolve_period(query.get("date"), query.get("start"), query.get("end"))
        daily = service.daily(start, end)
        cash_up = service.cash_up(start, end)
        receivables = service.receivables_report(query.get("date"), query.get("start"), query.get("end"))
    except (ma.ValidationError, HMSError) as error:
        return render_template("reports.html", error=clinic_words(error), args=args, report=None), 422
    link_args = (
        {"date": start.isoformat()} if start == end else {"from": start.isoformat(), "to": end.isoformat()}
    )
    csv_links = {
        name: url_for(endpoint, **link_args, format="csv")
        for name, endpoint in (
            ("daily", "reports.DailyReport"),
            ("cash_up", "reports.CashUpReport"),
            ("receivables", "reports.ReceivablesReport"),
        )
    }
    report = {
        "start": start,
        "end": end,
        "daily_rows": tables.daily_rows(daily),
        "money": tables.money_row(daily["money"]),
        "cash_up_rows": tables.cash_up_rows(cash_up),
        "receivables": receivables,
        "bucket_rows": tables.bucket_rows(receivables),
        "csv": csv_links,
        "waits_chart": bar_chart(
            "chart-waits",
            "Waits per doctor, booking to room (minutes, p50 and p90)",
            [
                (
                    doctor["doctor_name"],
                    [("p50", doctor["wait_p50_minutes"]), ("p90", doctor["wait_p90_minutes"])],
                )
                for doctor in daily["doctors"]
            ],
            unit="min",
        ),
        "collections_chart": bar_chart(
            "chart-collections",
            "Collections by method",
            [
                (tables.METHOD_LABELS.get(line["method"], line["method"]), [("", line["amount"])])
                for line in daily["money"]["collected"]
            ],
        ),
    }
    return render_template("reports.html", error=None, args=args, report=report, tables=tables)
