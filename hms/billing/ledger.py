"""Opening bills and keeping their totals true: shared by booking and by billing.

Nothing here commits: each function runs inside the caller's transaction.

Bill numbers are gapless per year, so they come from one counter row per year, and
that row stays locked until the transaction that took a number ends. Every booking
in the clinic opens a bill, so taking the number early would serialize whole booking
transactions behind one row (measured: bookings across 50 doctors queued on it).
Instead a bill is inserted without a number and numbered by one statement just before
COMMIT (a session `before_commit` hook), so the counter row is held for that statement
and the commit only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import case, event, func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hms.billing.models import PAID, PARTIALLY_PAID, REFUND, UNPAID, VOID, Bill, BillItem, Payment
from hms.core.db import next_value
from hms.core.time import clinic_today
from hms.core.types import utc_now
from hms.extensions import db

ZERO = Decimal("0.00")
_UNNUMBERED = "hms_unnumbered_bills"
_NUMBER_BILL_POSTGRES = text(
    "WITH counter AS ("
    " INSERT INTO counters (name, value) VALUES (:counter, 1)"
    " ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value)"
    " UPDATE bills SET number = :prefix || CASE WHEN counter.value < 1000000"
    " THEN lpad(counter.value::text, 6, '0') ELSE counter.value::text END"
    " FROM counter WHERE bills.id = :bill_id RETURNING bills.number"
)


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: int
    unit_price: Decimal
    category_id: int | None = None

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"))


def next_bill_number(year: int) -> str:
    """B-YYYY-NNNNNN, sequential per year, from an atomic counter row (never max+1)."""
    return f"B-{year}-{next_value(f'bill:{year}'):06d}"


def _number_bill(session: Session, bill: Bill) -> None:
    year = clinic_today().year
    if session.get_bind().dialect.name == "postgresql":
        number = session.execute(
            _NUMBER_BILL_POSTGRES, {"counter": f"bill:{year}", "prefix": f"B-{year}-", "bill_id": bill.id}
        ).scalar_one()
    else:  # SQLite: BEGIN IMMEDIATE already serializes writers
        number = next_bill_number(year)
        session.execute(update(Bill).where(Bill.id == bill.id).values(number=number))
    set_committed_value(bill, "number", number)


@event.listens_for(Session, "before_commit")
def _number_new_bills(session: Session) -> None:
    """Give the bills opened in this transaction their numbers, as its last statements."""
    bills = session.info.pop(_UNNUMBERED, None)
    if bills:
        session.flush()
        for bill in bills:
            _number_bill(session, bill)


@event.listens_for(Session, "after_rollback")
def _forget_unnumbered(session: Session) -> None:
    session.info.pop(_UNNUMBERED, None)


def open_bill(
    *,
    patient_id: int,
    created_by_id: int,
    items: list[LineItem],
    appointment_id: int | None = None,
    due_date: date | None = None,
) -> Bill:
    """Add a bill with its items and totals to the session (flushed, not committed).

    The bill gets its number at COMMIT (see the module docstring); until then
    `bill.number` is None.
    """
    today = clinic_today()
    bill = Bill(
        patient_id=patient_id,
        appointment_id=appointment_id,
        due_date=due_date or today,
        created_by_id=created_by_id,
        created_at=utc_now(),
        status=UNPAID,
    )
    set_totals(bill, total=sum((item.amount for item in items), ZERO), paid=ZERO)
    db.session.add(bill)
    db.session.flush()
    add_line_items(bill.id, items)
    db.session.info.setdefault(_UNNUMBERED, []).append(bill)
    return bill


def add_line_items(bill_id: int, items: list[LineItem]) -> None:
    """Add the items' rows to a bill (the caller recomputes or sets the totals)."""
    db.session.add_all(
        BillItem(
            bill_id=bill_id,
            category_id=item.category_id,
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            amount=item.amount,
        )
        for item in items
    )


def bill_status(total: Decimal, paid: Decimal, current: str) -> str:
    """The status that follows from the amounts (VOID stays VOID)."""
    if current == VOID:
        return VOID
    if paid <= ZERO:
        return UNPAID
    if paid >= total:
        return PAID
    return PARTIALLY_PAID


def set_totals(bill: Bill, *, total: Decimal, paid: Decimal) -> None:
    """total = sum of items, paid = payments - refunds, due = total - paid, status from them."""
    if paid > total or paid < ZERO:
        raise ValueError("paid must be within 0..total")  # callers check first; a bug otherwise
    bill.total_amount = total
    bill.paid_amount = paid
    bill.due_amount = total - paid
    bill.status = bill_status(total, paid, bill.status or UNPAID)


def _money(value) -> Decimal:
    """A SUM() result as Decimal with two places (SQLite may hand back an int or a float)."""
    return Decimal(str(value if value is not None else 0)).quantize(Decimal("0.01"))


def lock_bill(bill_id: int) -> Bill | None:
    """Load a bill for change, locked until the caller's transaction ends.

    PostgreSQL: SELECT ... FOR UPDATE serializes every payment, refund, void and item
    change of one bill. SQLite: the dialect drops FOR UPDATE; its BEGIN IMMEDIATE already
    holds the database write lock for the whole transaction.
    """
    stmt = select(Bill).where(Bill.id == bill_id).with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(stmt)


def ledger_sums(bill_id: int) -> tuple[Decimal, Decimal]:
    """(total, paid) from the rows themselves, in one statement: never the stored copies."""
    items = (
        select(func.coalesce(func.sum(BillItem.amount), 0))
        .where(BillItem.bill_id == bill_id)
        .scalar_subquery()
    )
    net_paid = (
        select(
            func.coalesce(func.sum(case((Payment.kind == REFUND, -Payment.amount), else_=Payment.amount)), 0)
        )
        .where(Payment.bill_id == bill_id)
        .scalar_subquery()
    )
    total, paid = db.session.execute(select(items, net_paid)).one()
    return _money(total), _money(paid)


def recompute_totals(bill: Bill) -> tuple[Decimal, Decimal]:
    """Set total, paid, due and status of a (locked) bill from its rows; return (total, paid)."""
    db.session.flush()
    total, paid = ledger_sums(bill.id)
    set_totals(bill, total=total, paid=paid)
    return total, paid
