"""Opening bills and keeping their totals true: shared by booking and by billing.

Nothing here commits: each function runs inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import case, func, select

from hms.billing.models import PAID, PARTIALLY_PAID, REFUND, UNPAID, VOID, Bill, BillItem, Payment
from hms.core.db import next_value
from hms.core.time import clinic_today
from hms.extensions import db

ZERO = Decimal("0.00")


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


def open_bill(
    *,
    patient_id: int,
    created_by_id: int,
    items: list[LineItem],
    appointment_id: int | None = None,
    due_date: date | None = None,
) -> Bill:
    """Add a bill with its items to the session (flushed, not committed)."""
    today = clinic_today()
    bill = Bill(
        number=next_bill_number(today.year),
        patient_id=patient_id,
        appointment_id=appointment_id,
        due_date=due_date or today,
        created_by_id=created_by_id,
        paid_amount=ZERO,
    )
    db.session.add(bill)
    db.session.flush()
    db.session.add_all(
        BillItem(
            bill_id=bill.id,
            category_id=item.category_id,
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            amount=item.amount,
        )
        for item in items
    )
    set_totals(bill, total=sum((item.amount for item in items), ZERO), paid=ZERO)
    db.session.flush()
    return bill


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
