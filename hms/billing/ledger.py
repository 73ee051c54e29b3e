"""Opening bills and keeping their totals true: shared by booking and by billing.

Nothing here commits: each function runs inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from hms.billing.models import PAID, PARTIALLY_PAID, UNPAID, VOID, Bill, BillItem
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
