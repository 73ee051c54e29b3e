"""What the report routes accept (the period, the format) and answer (for OpenAPI)."""

import marshmallow as ma
from marshmallow import fields, validate

from hms.core.fields import MAX_ID, IsoDate, Money, StrictSchema
from hms.reports.service import AGE_BUCKETS, OLDEST_SHOWN, PERIOD_MAX_DAYS

FORMATS = ("json", "csv")
PERIOD_RULES = (
    f"`?date=YYYY-MM-DD` for one clinic day, or `?from=&to=` (both, at most {PERIOD_MAX_DAYS} days); "
    "default today in the clinic's time zone (CLINIC_TIMEZONE). Timestamps are counted in the clinic day "
    "they fall on locally. `?format=csv` answers text/csv with one header row (the JSON field names) and "
    "money as plain decimals, as a download."
)


# ---- input --------------------------------------------------------------------------------


class PeriodQuery(StrictSchema):
    date = IsoDate(metadata={"description": "One clinic day, YYYY-MM-DD."})
    start = IsoDate(data_key="from", metadata={"description": "First day, YYYY-MM-DD (with to)."})
    end = IsoDate(data_key="to", metadata={"description": "Last day, YYYY-MM-DD (with from)."})
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(FORMATS, error="Use format=json or format=csv."),
        metadata={"description": "json (default) or csv."},
    )


class CashUpQuery(PeriodQuery):
    cashier_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "One member of staff. A cashier gets their own only (another id is 403)."},
    )


# ---- output -------------------------------------------------------------------------------


class _Period(ma.Schema):
    start = fields.Date(data_key="from", attribute="from")
    end = fields.Date(data_key="to", attribute="to")


class _Minutes(ma.Schema):
    booked = fields.Integer()
    completed = fields.Integer()
    cancelled = fields.Integer()
    no_show = fields.Integer()
    still_waiting = fields.Integer(metadata={"description": "WAITING or IN_CONSULTATION now."})
    wait_p50_minutes = fields.Float(allow_none=True, metadata={"description": "Booking → room."})
    wait_p90_minutes = fields.Float(allow_none=True)
    consultation_p50_minutes = fields.Float(allow_none=True, metadata={"description": "Room → exit."})
    consultation_p90_minutes = fields.Float(allow_none=True)


class DoctorDaySchema(_Minutes):
    doctor_id = fields.Integer()
    doctor_name = fields.String()


class MethodAmountSchema(ma.Schema):
    method = fields.String()
    amount = Money()


class DayMoneySchema(ma.Schema):
    billed = Money(metadata={"description": "Bills created in the period, not VOID."})
    collected = fields.List(
        fields.Nested(MethodAmountSchema), metadata={"description": "Payments by method."}
    )
    collected_total = Money()
    refunded = Money()
    net = Money(metadata={"description": "collected_total − refunded."})
    outstanding = Money(metadata={"description": "Still due on the period's bills."})


class DailyReportSchema(_Period):
    doctors = fields.List(fields.Nested(DoctorDaySchema))
    totals = fields.Nested(_Minutes)
    money = fields.Nested(DayMoneySchema)


class _Drawer(ma.Schema):
    payments = Money()
    refunds = Money()
    net = Money(metadata={"description": "payments − refunds: what the drawer should hold."})
    payment_count = fields.Integer()
    refund_count = fields.Integer()


class CashUpMethodSchema(_Drawer):
    method = fields.String()


class CashierSchema(_Drawer):
    cashier_id = fields.Integer()
    cashier_name = fields.String(allow_none=True)
    methods = fields.List(fields.Nested(CashUpMethodSchema))


class CashUpTotalsSchema(_Drawer):
    methods = fields.List(fields.Nested(CashUpMethodSchema))


class CashUpReportSchema(_Period):
    cashier_id = fields.Integer(allow_none=True)
    cashiers = fields.List(fields.Nested(CashierSchema))
    totals = fields.Nested(CashUpTotalsSchema)


class AgeBucketSchema(ma.Schema):
    bucket = fields.String(metadata={"description": ", ".join(key for key, _, _ in AGE_BUCKETS)})
    bills = fields.Integer()
    due_amount = Money()


class OldBillSchema(ma.Schema):
    bill_id = fields.Integer()
    number = fields.String()
    patient_id = fields.Integer()
    mrn = fields.String()
    patient_name = fields.String()
    created_on = fields.Date()
    due_date = fields.Date(allow_none=True)
    days_past_due = fields.Integer()
    total_amount = Money()
    due_amount = Money()


class ReceivablesReportSchema(_Period):
    as_of = fields.Date()
    buckets = fields.List(fields.Nested(AgeBucketSchema))
    total_bills = fields.Integer()
    total_due = Money()
    oldest = fields.List(
        fields.Nested(OldBillSchema),
        metadata={"description": f"The {OLDEST_SHOWN} most overdue bills, oldest due date first."},
    )
