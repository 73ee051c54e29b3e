"""Opening bills and keeping their totals true: shared by booking and by billing.

Nothing here commits: each function runs inside the caller's transaction.

Bill numbers are gapless per year, so they come from one counter row per year, and
that row stays locked until the transaction that took a number ends. Every booking
in the clinic opens a bill, so taking the number early would serialize whole booking
transactions behind one row (measured: bookings across 50 doctors queued on it).
Instead a bill is inserted without a number and numbered by one statement just before
COMMIT (billing's before-commit step of the unit of work, hms.core.uow), so the counter
row is held for that statement and the commit only.

Opening a bill is two prebuilt Core statements (the bill, then its items in one
multi-row INSERT), not ORM objects: it runs in every booking, and the ORM's unit of
work cost more CPU than the statements themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, case, func, insert, select, text, update

from hms.billing.changes import record_bills_change
from hms.billing.models import PAID, PARTIALLY_PAID, REFUND, UNPAID, VOID, Bill, BillItem, Payment
from hms.core.db import next_value
from hms.core.time import clinic_today, utcnow
from hms.core.uow import UnitOfWork, current_unit_of_work
from hms.extensions import db

ZERO = Decimal("0.00")
_UNNUMBERED = "billing.unnumbered_bills"
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
    prescription_item_id: int | None = None  # the prescription line it bills, if any

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"))


def next_bill_number(year: int) -> str:
    """B-YYYY-NNNNNN, sequential per year, from an atomic counter row (never max+1)."""
    return f"B-{year}-{next_value(f'bill:{year}'):06d}"


def _number_bill(bill_id: int, year: int) -> None:
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            _NUMBER_BILL_POSTGRES, {"counter": f"bill:{year}", "prefix": f"B-{year}-", "bill_id": bill_id}
        ).scalar_one()
    else:  # SQLite: BEGIN IMMEDIATE already serializes writers
        connection.execute(_SET_NUMBER, {"bill_id": bill_id, "number": next_bill_number(year)})


def _number_new_bills(uow: UnitOfWork) -> None:
    """Before COMMIT: give the bills opened in this unit of work their numbers, as its
    last statements."""
    db.session.flush()
    year = clinic_today().year
    for bill_id in uow.state.get(_UNNUMBERED, ()):
        _number_bill(bill_id, year)


_INSERT_BILL = insert(Bill.__table__).returning(Bill.__table__.c.id)
_INSERT_ITEMS = insert(BillItem.__table__)
_SET_NUMBER = (
    update(Bill.__table__)
    .where(Bill.__table__.c.id == bindparam("bill_id"))
    .values(number=bindparam("number"))
)


def open_bill(
    *,
    patient_id: int,
    created_by_id: int,
    items: list[LineItem],
    appointment_id: int | None = None,
    due_date: date | None = None,
) -> int:
    """Insert a bill with its items and totals (not committed); return its id.

    Runs inside a unit of work: the bill gets its number at its COMMIT (see the module
    docstring); until then it has none.
    """
    total = sum((item.amount for item in items), ZERO)
    connection = db.session.connection()
    bill_id = connection.execute(
        _INSERT_BILL,
        {
            "patient_id": patient_id,
            "appointment_id": appointment_id,
            "due_date": due_date or clinic_today(),
            "created_by_id": created_by_id,
            "created_at": utcnow(),
            "status": bill_status(total, ZERO, UNPAID),
            "total_amount": total,
            "paid_amount": ZERO,
            "due_amount": total,
        },
    ).scalar_one()
    add_line_items(bill_id, items)
    uow = current_unit_of_work()
    uow.collect(_UNNUMBERED, bill_id)
    uow.before_commit(_number_new_bills, key=_UNNUMBERED)
    record_bills_change()
    return bill_id


def add_line_items(bill_id: int, items: list[LineItem]) -> None:
    """Insert the items' rows of a bill, in one statement (the caller recomputes or sets
    the totals)."""
    if not items:
        return
    record_bills_change()
    db.session.connection().execute(
        _INSERT_ITEMS,
        [
            {
                "bill_id": bill_id,
                "category_id": item.category_id,
                "description": item.description,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
                "amount": item.amount,
                "prescription_item_id": item.prescription_item_id,
            }
            for item in items
        ],
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


def set_totals(bill, *, total: Decimal, paid: Decimal) -> None:
    """total = sum of items, paid = payments - refunds, due = total - paid, status from them
    (`bill`: a Bill, or any object with those attributes)."""
    if paid > total or paid < ZERO:
        raise ValueError("paid must be within 0..total")  # callers check first; a bug otherwise
    bill.total_amount = total
    bill.paid_amount = paid
    bill.due_amount = total - paid
    bill.status = bill_status(total, paid, bill.status or UNPAID)


_UPDATE_TOTALS = (
    update(Bill.__table__)
    .where(Bill.__table__.c.id == bindparam("bill_id"))
    .values(
        total_amount=bindparam("total"),
        paid_amount=bindparam("paid"),
        due_amount=bindparam("due"),
        status=bindparam("new_status"),
    )
)


def store_totals(bill, *, total: Decimal, paid: Decimal) -> None:
    """`set_totals`, then written at once by one prebuilt UPDATE, for payments and
    refunds. `bill`: the locked bill's row (billing.service.LockedBill: id, status),
    updated in place for the answer."""
    set_totals(bill, total=total, paid=paid)
    record_bills_change()
    db.session.connection().execute(
        _UPDATE_TOTALS,
        {
            "bill_id": bill.id,
            "total": bill.total_amount,
            "paid": bill.paid_amount,
            "due": bill.due_amount,
            "new_status": bill.status,
        },
    )


def money(value) -> Decimal:
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


def row_sums(items, payments) -> tuple[Decimal, Decimal]:
    """(total, paid) of rows already read under the bill's lock: `ledger_sums`' rule
    (items add up to the total, refunds count against paid) without a statement."""
    total = sum((item.amount for item in items), ZERO)
    paid = sum((-p.amount if p.kind == REFUND else p.amount for p in payments), ZERO)
    return total, paid


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
    return money(total), money(paid)


def recompute_totals(bill: Bill) -> tuple[Decimal, Decimal]:
    """Set total, paid, due and status of a (locked) bill from its rows; return (total, paid)."""
    db.session.flush()
    total, paid = ledger_sums(bill.id)
    set_totals(bill, total=total, paid=paid)
    return total, paid
