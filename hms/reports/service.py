"""The day-end reports: the clinic's day per doctor, the cash-up, the receivables.

Read-only. Every figure comes from the rows themselves: visit counts and minutes from
the appointments (entry_time, exit_time), money from the append-only payment rows and the
bills, so a report can never disagree with the bills. Each report is a fixed number of
statements whatever the number of rows (aggregates in SQL; only the minute values of the
visits that reached the room are fetched, for the percentiles, which are computed here
the same way on every backend).

Periods are clinic days (CLINIC_TIMEZONE): a payment at 23:30 local time belongs to that
local day, whatever its UTC date. A period is at most PERIOD_MAX_DAYS days.

These functions are the only place the report queries live: bench/ runs EXPLAIN on them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, literal_column, or_, select

from hms.appointments.models import (
    CANCELLED,
    COMPLETED,
    IN_CONSULTATION,
    NO_SHOW,
    WAITING,
    Appointment,
)
from hms.auth.models import User
from hms.billing.models import PAYMENT, PAYMENT_METHODS, REFUND, VOID, Bill, Payment
from hms.core.roles import own_records_only
from hms.core.time import clinic_today, clinic_zone
from hms.errors import Forbidden, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient

PERIOD_MAX_DAYS = 366
OLDEST_SHOWN = 20
ZERO = Decimal("0.00")
CENTS = Decimal("0.01")
# Receivables age buckets, in days past the due date: (key, first day, last day).
AGE_BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("not_due", None, -1),
    ("days_0_30", 0, 30),
    ("days_31_60", 31, 60),
    ("days_61_90", 61, 90),
    ("over_90", 91, None),
)

_appointments = Appointment.__table__
_bills = Bill.__table__
_payments = Payment.__table__


# ---- periods ------------------------------------------------------------------------------


def resolve_period(day: date | None, start: date | None, end: date | None) -> tuple[date, date]:
    """`?date=` or `?from=&to=` (both), default today: the first and last clinic day."""
    if day is not None and (start is not None or end is not None):
        raise _query_error("date", "Give either date, or from and to, not both.")
    if day is not None:
        return day, day
    if start is None and end is None:
        today = clinic_today()
        return today, today
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise _query_error(missing, "Give both from and to (YYYY-MM-DD), or date alone.")
    check_period(start, end)
    return start, end


def check_period(start: date, end: date) -> None:
    if end < start:
        raise _query_error("to", "Must not be before from.")
    if (end - start).days + 1 > PERIOD_MAX_DAYS:
        raise _query_error("to", f"A report covers at most {PERIOD_MAX_DAYS} days.")


def _query_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors={"query": {field: [message]}})


def day_start(day: date) -> datetime:
    """The UTC instant the clinic day `day` begins (local midnight)."""
    return datetime.combine(day, time(), tzinfo=clinic_zone()).astimezone(UTC)


def _instants(start: date, end: date) -> tuple[datetime, datetime]:
    """[first instant, instant after the last) of the clinic days start..end, in UTC."""
    return day_start(start), day_start(end + timedelta(days=1))


# ---- the day per doctor --------------------------------------------------------------------

_STATUS_COUNTS = {
    "completed": (COMPLETED,),
    "cancelled": (CANCELLED,),
    "no_show": (NO_SHOW,),
    "still_waiting": (WAITING, IN_CONSULTATION),
}


def daily(start: date, end: date) -> dict:
    """Per doctor: visits by outcome, wait and consultation minutes (p50, p90); then the
    period's money. Four statements.

    - booked: every appointment dated in the period; completed, cancelled, no_show, and
      still_waiting (WAITING or IN_CONSULTATION when the report runs) add up to it.
    - wait minutes: booking → room, i.e. created_at → entry_time, counted from the start of
      the appointment's clinic day when it was booked ahead; for every visit that entered
      the room. A patient sent back and called again counts until their last entry.
    - consultation minutes: entry_time → exit_time of the COMPLETED visits.
    - money: billed (bills created in the period, not VOID), collected by method (PAYMENT
      rows in the period), refunded (REFUND rows), net = collected − refunded, and
      outstanding (what is still due on the period's bills).
    """
    check_period(start, end)
    in_period = _appointments.c.appointment_date.between(start, end)  # ix_appointments_date_created
    counts = db.session.execute(
        select(
            _appointments.c.doctor_id,
            User.name,
            _appointments.c.status,
            func.count().label("visits"),
        )
        .join(User, User.id == _appointments.c.doctor_id)
        .where(in_period)
        .group_by(_appointments.c.doctor_id, User.name, _appointments.c.status)
    ).all()
    times = db.session.execute(
        select(
            _appointments.c.doctor_id,
            _appointments.c.appointment_date,
            _appointments.c.status,
            _appointments.c.created_at,
            _appointments.c.entry_time,
            _appointments.c.exit_time,
        ).where(in_period, _appointments.c.entry_time.is_not(None))
    ).all()

    doctors: dict[int, dict] = {}
    for doctor_id, name, status, visits in counts:
        row = doctors.setdefault(doctor_id, _visit_row(doctor_id, name))
        row["booked"] += visits
        for key, statuses in _STATUS_COUNTS.items():
            if status in statuses:
                row[key] += visits
    waits: dict[int, list[float]] = {}
    consultations: dict[int, list[float]] = {}
    day_starts: dict[date, datetime] = {}
    for doctor_id, day, status, created_at, entry_time, exit_time in times:
        if day not in day_starts:
            day_starts[day] = day_start(day)
        waited_from = max(created_at, day_starts[day])
        waits.setdefault(doctor_id, []).append(_minutes(entry_time - waited_from))
        if status == COMPLETED and exit_time is not None:
            consultations.setdefault(doctor_id, []).append(_minutes(exit_time - entry_time))

    rows = sorted(doctors.values(), key=lambda row: (row["doctor_name"], row["doctor_id"]))
    for row in rows:
        _add_minutes(row, waits.get(row["doctor_id"], []), consultations.get(row["doctor_id"], []))
    totals = _visit_row(None, None)
    for row in rows:
        for key in ("booked", *_STATUS_COUNTS):
            totals[key] += row[key]
    _add_minutes(
        totals,
        [m for values in waits.values() for m in values],
        [m for values in consultations.values() for m in values],
    )
    return {"from": start, "to": end, "doctors": rows, "totals": totals, "money": _money_of(start, end)}


def _visit_row(doctor_id: int | None, name: str | None) -> dict:
    return {"doctor_id": doctor_id, "doctor_name": name, "booked": 0, **dict.fromkeys(_STATUS_COUNTS, 0)}


def _add_minutes(row: dict, waits: list[float], consultations: list[float]) -> None:
    row["wait_p50_minutes"] = percentile(waits, 50)
    row["wait_p90_minutes"] = percentile(waits, 90)
    row["consultation_p50_minutes"] = percentile(consultations, 50)
    row["consultation_p90_minutes"] = percentile(consultations, 90)


def _minutes(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0) / 60


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile by linear interpolation (PostgreSQL's percentile_cont), one
    decimal; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 1)


def _money_of(start: date, end: date) -> dict:
    first, after = _instants(start, end)
    billed, outstanding = db.session.execute(
        select(
            func.coalesce(func.sum(_bills.c.total_amount), 0),
            func.coalesce(func.sum(_bills.c.due_amount), 0),
        ).where(  # ix_bills_created_at
            _bills.c.created_at >= first, _bills.c.created_at < after, _bills.c.status != VOID
        )
    ).one()
    collected = dict.fromkeys(PAYMENT_METHODS, ZERO)
    refunded = ZERO
    for kind, method, amount, _ in _payment_sums(first, after, _payments.c.kind, _payments.c.method):
        if kind == PAYMENT:
            collected[method] = collected.get(method, ZERO) + _cents(amount)
        elif kind == REFUND:
            refunded += _cents(amount)
    collected_total = sum(collected.values(), ZERO)
    return {
        "billed": _cents(billed),
        "collected": [{"method": method, "amount": amount} for method, amount in collected.items()],
        "collected_total": collected_total,
        "refunded": refunded,
        "net": collected_total - refunded,
        "outstanding": _cents(outstanding),
    }


def _payment_sums(first: datetime, after: datetime, *keys, where=()) -> list:
    """Σ amount of the payment rows in [first, after), grouped by `keys` (ix_payments_created_at)."""
    return db.session.execute(
        select(*keys, func.sum(_payments.c.amount), func.count())
        .where(_payments.c.created_at >= first, _payments.c.created_at < after, *where)
        .group_by(*keys)
    ).all()


def _cents(value) -> Decimal:
    return Decimal(value or 0).quantize(CENTS)


# ---- the cash-up ----------------------------------------------------------------------------


def cash_up(start: date, end: date, cashier_id: int | None = None) -> dict:
    """Per member of staff who took money (the payment rows' received_by) and method:
    payments, refunds and net, what the drawer should hold; with totals. One statement
    (and one for the name of a cashier who took nothing)."""
    check_period(start, end)
    first, after = _instants(start, end)
    where = () if cashier_id is None else (_payments.c.received_by_id == cashier_id,)
    keyed = (_payments.c.received_by_id, _payments.c.method, _payments.c.kind)
    sums = _payment_sums(first, after, *keyed, where=where)
    names = _staff_names({row[0] for row in sums} | ({cashier_id} if cashier_id is not None else set()))

    cashiers: dict[int, dict] = {}
    for staff_id, method, kind, amount, count in sums:
        cashier = cashiers.setdefault(staff_id, _cashier_row(staff_id, names.get(staff_id)))
        line = cashier["methods"].setdefault(method, _method_row(method))
        if kind == PAYMENT:
            line["payments"] += _cents(amount)
            line["payment_count"] += count
        elif kind == REFUND:
            line["refunds"] += _cents(amount)
            line["refund_count"] += count
    if cashier_id is not None and cashier_id not in cashiers:
        cashiers[cashier_id] = _cashier_row(cashier_id, names.get(cashier_id))

    totals = _method_totals()
    rows = []
    for cashier in sorted(cashiers.values(), key=lambda c: (c["cashier_name"] or "", c["cashier_id"])):
        methods = [cashier["methods"][m] for m in _ordered_methods(cashier["methods"])]
        for line in methods:
            line["net"] = line["payments"] - line["refunds"]
            total = totals["methods"].setdefault(line["method"], _method_row(line["method"]))
            for key in ("payments", "refunds", "payment_count", "refund_count"):
                total[key] += line[key]
                cashier[key] += line[key]
        cashier["net"] = cashier["payments"] - cashier["refunds"]
        cashier["methods"] = methods
        rows.append(cashier)
    methods = [totals["methods"][m] for m in _ordered_methods(totals["methods"])]
    for line in methods:
        line["net"] = line["payments"] - line["refunds"]
        for key in ("payments", "refunds", "payment_count", "refund_count"):
            totals[key] += line[key]
    totals["methods"] = methods
    totals["net"] = totals["payments"] - totals["refunds"]
    return {"from": start, "to": end, "cashier_id": cashier_id, "cashiers": rows, "totals": totals}


def _staff_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())


def _ordered_methods(methods: dict) -> list[str]:
    known = [m for m in PAYMENT_METHODS if m in methods]
    return known + sorted(m for m in methods if m not in PAYMENT_METHODS)


def _method_row(method: str) -> dict:
    return {
        "method": method,
        "payments": ZERO,
        "refunds": ZERO,
        "net": ZERO,
        "payment_count": 0,
        "refund_count": 0,
    }


def _method_totals() -> dict:
    return {
        "payments": ZERO,
        "refunds": ZERO,
        "net": ZERO,
        "payment_count": 0,
        "refund_count": 0,
        "methods": {},
    }


def _cashier_row(staff_id: int, name: str | None) -> dict:
    return {"cashier_id": staff_id, "cashier_name": name, **_method_totals()}


def cash_up_scope(identity, cashier_id: int | None) -> int | None:
    """The cashier whose cash-up `identity` may read: a cashier only their own (another
    cashier's id is 403), an admin anyone's or everyone's (None)."""
    if own_records_only(identity.role, "reports.cash_up"):
        if cashier_id is not None and cashier_id != identity.id:
            raise Forbidden("A cashier sees only their own cash-up.")
        return identity.id
    return cashier_id


# ---- receivables --------------------------------------------------------------------------


def receivables(as_of: date, start: date | None = None, end: date | None = None) -> dict:
    """What is still due, by days past the due date on `as_of`: not yet due, 0–30, 31–60,
    61–90, over 90; with totals and the OLDEST_SHOWN most overdue bills. Two statements.

    Only bills created by `as_of` (and, with start/end, created in those clinic days), not
    VOID, with something due. Amounts are what is due now. Every bill gets a due date
    (it defaults to its day); one without ages from the clinic day it was created.
    """
    if (start is None) != (end is None):
        raise _query_error("from" if start is None else "to", "Give both from and to, or neither.")
    if start is not None:
        check_period(start, end)
    last = as_of if end is None else min(end, as_of)
    where = [
        # literal 0, as in hms.billing.service: PostgreSQL then matches the partial indexes
        _bills.c.due_amount > literal_column("0"),
        _bills.c.status != VOID,
        _bills.c.created_at < day_start(last + timedelta(days=1)),
    ]
    if start is not None:
        where.append(_bills.c.created_at >= day_start(start))
    ages = select(_age_bucket(as_of).label("bucket"), _bills.c.due_amount).where(*where).subquery()
    sums = db.session.execute(
        select(ages.c.bucket, func.count(), func.sum(ages.c.due_amount)).group_by(ages.c.bucket)
    ).all()
    found = {bucket: (count, _cents(amount)) for bucket, count, amount in sums}
    buckets = [
        {"bucket": key, "bills": found.get(key, (0, ZERO))[0], "due_amount": found.get(key, (0, ZERO))[1]}
        for key, _, _ in AGE_BUCKETS
    ]
    oldest = db.session.execute(
        select(
            _bills.c.id,
            _bills.c.number,
            _bills.c.patient_id,
            Patient.mrn,
            Patient.name,
            _bills.c.created_at,
            _bills.c.due_date,
            _bills.c.total_amount,
            _bills.c.due_amount,
        )
        .join(Patient, Patient.id == _bills.c.patient_id)
        .where(*where)
        .order_by(_bills.c.due_date.asc().nulls_last(), _bills.c.id)
        .limit(OLDEST_SHOWN)
    ).all()
    zone = clinic_zone()
    oldest_bills = []
    for row in oldest:
        aged_from = row.due_date or row.created_at.astimezone(zone).date()
        oldest_bills.append(
            {
                "bill_id": row.id,
                "number": row.number,
                "patient_id": row.patient_id,
                "mrn": row.mrn,
                "patient_name": row.name,
                "created_on": row.created_at.astimezone(zone).date(),
                "due_date": row.due_date,
                "days_past_due": (as_of - aged_from).days,
                "total_amount": _cents(row.total_amount),
                "due_amount": _cents(row.due_amount),
            }
        )
    return {
        "as_of": as_of,
        "from": start,
        "to": end,
        "buckets": buckets,
        "total_bills": sum(b["bills"] for b in buckets),
        "total_due": sum((b["due_amount"] for b in buckets), ZERO),
        "oldest": oldest_bills,
    }


def receivables_report(day: date | None, start: date | None, end: date | None) -> dict:
    """The receivables of `?date=` (aged on that day: every bill created by then), of
    `?from=&to=` (aged on `to`: the bills created in those days), or of today."""
    first, last = resolve_period(day, start, end)
    if start is not None:
        return receivables(last, first, last)
    return receivables(last)


def _age_bucket(as_of: date):
    """CASE: the AGE_BUCKETS key of a bill on `as_of`. The boundaries are computed here, so
    the SQL is the same on every backend (no date arithmetic in SQL)."""
    whens = []
    for key, _, last_day in AGE_BUCKETS[:-1]:
        # days past due <= last_day  <=>  aging date >= as_of - last_day
        earliest = as_of - timedelta(days=last_day)
        whens.append(
            (
                or_(
                    _bills.c.due_date >= earliest,
                    and_(_bills.c.due_date.is_(None), _bills.c.created_at >= day_start(earliest)),
                ),
                key,
            )
        )
    return case(*whens, else_=AGE_BUCKETS[-1][0])
