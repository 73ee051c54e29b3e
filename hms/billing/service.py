"""Billing rules: opening bills, adding items, payments, refunds and voids.

Every change runs under a lock on the bill (SELECT ... FOR UPDATE) and recomputes the
totals from the item and payment rows in the same transaction, so concurrent payments can
never take a bill below zero due (a payment or refund reads the rows once under the lock,
sums them and adds its own amount). Payments and refunds are append-only rows.

Reads load a bill with its items and its payments (and who received them) in a fixed
number of statements, whatever the number of rows: a bill is 3, a page of bills 4. A
payment or refund answers from the rows it locked and read (the bill, its items, its
payments with their receivers) plus what it wrote, in prebuilt Core statements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import Select, bindparam, insert, literal_column, or_, select
from sqlalchemy.orm import load_only, selectinload

from hms.appointments.models import Appointment
from hms.auth.models import User
from hms.auth.service import Identity
from hms.billing.changes import record_bills_change
from hms.billing.ledger import (
    LineItem,
    add_line_items,
    lock_bill,
    open_bill,
    recompute_totals,
    row_sums,
    store_totals,
)
from hms.billing.models import (
    PAID,
    PARTIALLY_PAID,
    PAYMENT,
    REFUND,
    UNPAID,
    VOID,
    Bill,
    BillItem,
    Payment,
)
from hms.billing.schemas import BillSchema
from hms.core.fields import MONEY_MAX
from hms.core.idempotency import DEFAULT_TTL, StoredResponse, run_once
from hms.core.pagination import Page, paginate
from hms.core.roles import own_records_only
from hms.core.time import clinic_today, clinic_zone
from hms.core.uow import unit_of_work
from hms.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient
from hms.patients.service import search_statement
from hms.queue.events import record_event
from hms.reference.models import Category, Medicine, TestType

PAYMENT_EVENT = "PAYMENT_RECEIVED"
DUE_DATE_MAX_YEARS = 10
# One instance for every answer: a schema is built (its fields deep-copied) once.
_BILL_SCHEMA = BillSchema()


# ---- reads -----------------------------------------------------------------------------


def _with_details(stmt: Select) -> Select:
    """Items, payments and each payment's receiver: two more statements for any number of bills."""
    return stmt.options(
        selectinload(Bill.items),
        selectinload(Bill.payments).joinedload(Payment.received_by).options(load_only(User.id, User.name)),
    )


def _newest_first(stmt: Select) -> Select:
    return stmt.order_by(Bill.created_at.desc(), Bill.id.desc())


def load_bill(bill_id: int) -> Bill:
    stmt = _with_details(select(Bill).where(Bill.id == bill_id)).execution_options(populate_existing=True)
    bill = db.session.scalar(stmt)
    if bill is None:
        raise NotFound("Bill not found.")
    return bill


def get_bill(bill_id: int) -> Bill:
    return load_bill(bill_id)


def _overdue_condition(today: date):
    # `due_amount > 0` written as a literal so PostgreSQL matches the partial index
    # ix_bills_overdue (due_date WHERE due_amount > 0) under any plan.
    return (Bill.due_amount > literal_column("0"), Bill.due_date < today, Bill.status != VOID)


def list_bills(
    *,
    page: int,
    limit: int,
    status: str | None = None,
    patient_id: int | None = None,
    overdue: bool | None = None,
) -> Page:
    """Newest first; with overdue=true the most overdue first (due_date ascending)."""
    stmt = select(Bill)
    if status is not None:
        stmt = stmt.where(Bill.status == status)  # ix_bills_status_created
    if patient_id is not None:
        stmt = stmt.where(Bill.patient_id == patient_id)  # ix_bills_patient_created
    if overdue:
        stmt = stmt.where(*_overdue_condition(clinic_today())).order_by(Bill.due_date, Bill.id)
    else:
        if overdue is False:
            today = clinic_today()
            stmt = stmt.where(
                or_(
                    Bill.due_amount <= literal_column("0"),
                    Bill.due_date.is_(None),
                    Bill.due_date >= today,
                    Bill.status == VOID,
                )
            )
        stmt = _newest_first(stmt)
    return paginate(_with_details(stmt), page, limit)


def appointment_bills(appointment_id: int, *, page: int, limit: int) -> Page:
    if db.session.scalar(select(Appointment.id).where(Appointment.id == appointment_id)) is None:
        raise NotFound("Appointment not found.")
    stmt = _newest_first(select(Bill).where(Bill.appointment_id == appointment_id))
    return paginate(_with_details(stmt), page, limit)


def patient_bills(patient_id: int, *, page: int, limit: int) -> Page:
    if db.session.scalar(select(Patient.id).where(Patient.id == patient_id)) is None:
        raise NotFound("Patient not found.")
    stmt = _newest_first(select(Bill).where(Bill.patient_id == patient_id))
    return paginate(_with_details(stmt), page, limit)


def patient_due_bills(patient_id: int, *, page: int, limit: int) -> Page:
    """One patient's bills with something still due (unpaid or partly paid, not void),
    newest first, with their items and payments: a fixed number of statements."""
    stmt = _newest_first(
        select(Bill).where(
            Bill.patient_id == patient_id, Bill.due_amount > literal_column("0"), Bill.status != VOID
        )
    )
    return paginate(_with_details(stmt), page, limit)


# ---- lines -----------------------------------------------------------------------------


def _unknown(index: int, field: str, what: str) -> ValidationFailed:
    message = f"Unknown {what}."
    return ValidationFailed(message, errors={"json": {"items": {str(index): {field: [message]}}}})


def _ids(lines: list[dict], field: str) -> set[int]:
    return {line[field] for line in lines if line.get(field) is not None}


def _resolve_lines(lines: list[dict]) -> list[LineItem]:
    """Turn validated lines into LineItems: at most one query per catalogue."""
    category_ids = _ids(lines, "category_id")
    test_type_ids = _ids(lines, "test_type_id")
    medicine_ids = _ids(lines, "medicine_id")
    known_categories = (
        set(db.session.scalars(select(Category.id).where(Category.id.in_(category_ids))))
        if category_ids
        else set()
    )
    test_types = (
        {t.id: t for t in db.session.scalars(select(TestType).where(TestType.id.in_(test_type_ids)))}
        if test_type_ids
        else {}
    )
    medicines = (
        {m.id: m for m in db.session.scalars(select(Medicine).where(Medicine.id.in_(medicine_ids)))}
        if medicine_ids
        else {}
    )
    resolved = []
    for index, line in enumerate(lines):
        category_id = line.get("category_id")
        if category_id is not None and category_id not in known_categories:
            raise _unknown(index, "category_id", "category")
        if "test_type_id" in line:
            test_type = test_types.get(line["test_type_id"])
            if test_type is None:
                raise _unknown(index, "test_type_id", "test type")
            description, unit_price = test_type.name, test_type.price
        elif "medicine_id" in line:
            medicine = medicines.get(line["medicine_id"])
            if medicine is None:
                raise _unknown(index, "medicine_id", "medicine")
            parts = (medicine.name, medicine.strength, medicine.form)
            description, unit_price = " ".join(p for p in parts if p)[:200], medicine.unit_price
        else:
            description, unit_price = line["description"].strip(), line["unit_price"]
        item = LineItem(description, line["quantity"], Decimal(unit_price), category_id)
        if item.amount > MONEY_MAX:
            message = "The line's amount (quantity x unit_price) is too large."
            raise ValidationFailed(message, errors={"json": {"items": {str(index): {"quantity": [message]}}}})
        resolved.append(item)
    return resolved


def _check_total(total: Decimal) -> None:
    if total > MONEY_MAX:
        raise ValidationFailed.field("items", f"The bill's total would exceed {MONEY_MAX}.")


def _appointment_for_billing(appointment_id: int, patient_id: int | None, identity: Identity) -> Appointment:
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None:
        raise ValidationFailed.field("appointment_id", "Unknown appointment.")
    if patient_id is not None and appointment.patient_id != patient_id:
        raise ValidationFailed.field("appointment_id", "This appointment belongs to another patient.")
    if own_records_only(identity.role, "bills.write") and appointment.doctor_id != identity.id:
        raise Forbidden("A doctor may only bill their own appointments.")
    return appointment


# ---- bills and items -------------------------------------------------------------------


def create_bill(data: dict, identity: Identity) -> Bill:
    with unit_of_work():
        bill_id = _open_bill(data, identity)
    return load_bill(bill_id)


def _open_bill(data: dict, identity: Identity) -> int:
    patient_id = data["patient_id"]
    if db.session.scalar(select(Patient.id).where(Patient.id == patient_id)) is None:
        raise ValidationFailed.field("patient_id", "Unknown patient.")
    appointment_id = data.get("appointment_id")
    if appointment_id is None and own_records_only(identity.role, "bills.write"):
        raise ValidationFailed.field(
            "appointment_id", "Required for doctors: they bill their own appointments."
        )
    if appointment_id is not None:
        _appointment_for_billing(appointment_id, patient_id, identity)
    due_date = data.get("due_date")
    if due_date is not None:
        _check_due_date(due_date, clinic_today())
    lines = _resolve_lines(data["items"])
    _check_total(sum((line.amount for line in lines), Decimal("0")))
    bill_id = open_bill(
        patient_id=patient_id,
        created_by_id=identity.id,
        items=lines,
        appointment_id=appointment_id,
        due_date=due_date,
    )
    return bill_id


def _check_due_date(due_date: date, today: date) -> None:
    """Today up to DUE_DATE_MAX_YEARS ahead (a date years out is a typo, not a plan)."""
    if due_date < today:
        raise ValidationFailed.field("due_date", "Must not be before today.")
    try:
        latest = today.replace(year=today.year + DUE_DATE_MAX_YEARS)
    except ValueError:  # 29 February
        latest = today.replace(year=today.year + DUE_DATE_MAX_YEARS, day=28)
    if due_date > latest:
        raise ValidationFailed.field("due_date", f"At most {DUE_DATE_MAX_YEARS} years ahead.")


def _locked(bill_id: int) -> Bill:
    bill = lock_bill(bill_id)
    if bill is None:
        raise NotFound("Bill not found.")
    return bill


def add_items(bill_id: int, data: dict, identity: Identity) -> Bill:
    with unit_of_work():
        bill = lock_for_items(bill_id, identity)
        append_items(bill, _resolve_lines(data["items"]))
    return load_bill(bill_id)


def lock_for_items(bill_id: int, identity: Identity) -> Bill:
    """Inside a unit of work: the bill, locked, its totals recomputed, refused if items
    may not be added to it (PAID or VOID: 409; a doctor's not own: 403)."""
    bill = _locked(bill_id)
    if own_records_only(identity.role, "bills.write"):
        if bill.appointment_id is None:
            raise Forbidden("A doctor may only bill their own appointments.")
        _appointment_for_billing(bill.appointment_id, None, identity)
    recompute_totals(bill)
    if bill.status in (PAID, VOID):
        raise Conflict(f"Items cannot be added to a {bill.status} bill.")
    return bill


def append_items(bill: Bill, lines: list[LineItem]) -> None:
    """Inside a unit of work, on a bill from `lock_for_items`: add the lines and
    recompute its totals (422 if the total would be too large)."""
    _check_total(bill.total_amount + sum((line.amount for line in lines), Decimal("0")))
    add_line_items(bill.id, lines)
    recompute_totals(bill)


def void_bill(bill_id: int, data: dict, identity: Identity) -> Bill:
    with unit_of_work():
        bill = _locked(bill_id)
        _, paid = recompute_totals(bill)
        if bill.status == VOID:
            raise Conflict("The bill is already void.")
        if paid != 0:
            raise Conflict("A bill with money paid cannot be voided: refund first.")
        bill.status = VOID
        bill.void_reason = data["reason"]
        record_bills_change()
    return load_bill(bill_id)


# ---- payments and refunds --------------------------------------------------------------


# Payments and refunds run prebuilt Core statements on plain rows (a hot path: one
# payment per visit). The bill is locked and read with its items and payments, the
# totals are summed from those rows under the lock, and the answer is built from them.
# The rows name their columns here, not from the response schema: renaming a field of
# the answer changes no query. BillSchema dumps them (it reads attributes).


@dataclass(slots=True, frozen=True)
class StaffRef:
    id: int
    name: str


@dataclass(slots=True, frozen=True)
class BillItemRow:
    id: int
    category_id: int | None
    description: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(slots=True, frozen=True)
class PaymentRow:
    id: int
    kind: str
    amount: Decimal
    method: str
    reference: str | None
    reason: str | None
    created_at: datetime
    received_by: StaffRef


@dataclass(slots=True)
class LockedBill:
    """A bill's row read under its lock, with its items and payments. Mutable: the
    payment's own row is appended and `store_totals` sets the amounts and status."""

    id: int
    number: str | None
    patient_id: int
    appointment_id: int | None
    status: str
    total_amount: Decimal
    paid_amount: Decimal
    due_amount: Decimal
    due_date: date | None
    void_reason: str | None
    created_at: datetime
    items: list[BillItemRow]
    payments: list[PaymentRow]


_bills, _bill_items, _payments, _users = Bill.__table__, BillItem.__table__, Payment.__table__, User.__table__
_BILL_FOR_UPDATE = (
    select(
        _bills.c.id,
        _bills.c.number,
        _bills.c.patient_id,
        _bills.c.appointment_id,
        _bills.c.status,
        _bills.c.total_amount,
        _bills.c.paid_amount,
        _bills.c.due_amount,
        _bills.c.due_date,
        _bills.c.void_reason,
        _bills.c.created_at,
    )
    .where(_bills.c.id == bindparam("bill_id"))
    .with_for_update()
)
_BILL_ITEMS = (
    select(
        _bill_items.c.id,
        _bill_items.c.category_id,
        _bill_items.c.description,
        _bill_items.c.quantity,
        _bill_items.c.unit_price,
        _bill_items.c.amount,
    )
    .where(_bill_items.c.bill_id == bindparam("bill_id"))
    .order_by(_bill_items.c.id)
)
_BILL_PAYMENTS = (
    select(
        _payments.c.id,
        _payments.c.kind,
        _payments.c.amount,
        _payments.c.method,
        _payments.c.reference,
        _payments.c.reason,
        _payments.c.created_at,
        _users.c.id.label("receiver_id"),
        _users.c.name.label("receiver_name"),
    )
    .select_from(_payments.join(_users, _users.c.id == _payments.c.received_by_id))
    .where(_payments.c.bill_id == bindparam("bill_id"))
    .order_by(_payments.c.id)
)
_INSERT_PAYMENT = insert(_payments).returning(_payments.c.id, _payments.c.created_at)


def _lock_with_rows(bill_id: int) -> LockedBill:
    """The bill (locked until the transaction ends: SELECT ... FOR UPDATE serializes every
    payment, refund, void and item change of one bill) with its items and payments."""
    connection = db.session.connection()
    row = connection.execute(_BILL_FOR_UPDATE, {"bill_id": bill_id}).one_or_none()
    if row is None:
        raise NotFound("Bill not found.")
    items = [BillItemRow(**item._mapping) for item in connection.execute(_BILL_ITEMS, {"bill_id": bill_id})]
    payments = [
        PaymentRow(
            id=payment.id,
            kind=payment.kind,
            amount=payment.amount,
            method=payment.method,
            reference=payment.reference,
            reason=payment.reason,
            created_at=payment.created_at,
            received_by=StaffRef(payment.receiver_id, payment.receiver_name),
        )
        for payment in connection.execute(_BILL_PAYMENTS, {"bill_id": bill_id})
    ]
    return LockedBill(**row._mapping, items=items, payments=payments)


def _record_payment(bill: LockedBill, data: dict, identity: Identity) -> None:
    total, paid = row_sums(bill.items, bill.payments)
    if bill.status == VOID:
        raise Conflict("A void bill takes no payments.")
    due = total - paid
    if data["amount"] > due:
        raise ValidationFailed.field("amount", f"More than the due amount ({due}).")
    _insert_payment(bill, data, identity, PAYMENT)
    # The rows were summed under the bill's lock: with this one added, paid grows by it.
    store_totals(bill, total=total, paid=paid + data["amount"])
    if bill.appointment_id is not None:
        record_event(
            bill.appointment_id,
            PAYMENT_EVENT,
            identity.id,
            description=f"{data['amount']} ({data['method']}) on bill {bill.number}",
        )


def _record_refund(bill: LockedBill, data: dict, identity: Identity) -> None:
    total, paid = row_sums(bill.items, bill.payments)
    if bill.status == VOID:
        raise Conflict("A void bill has nothing to refund.")
    if data["amount"] > paid:
        raise ValidationFailed.field("amount", f"More than what was paid ({paid}).")
    _insert_payment(bill, data, identity, REFUND)
    store_totals(bill, total=total, paid=paid - data["amount"])


def _insert_payment(bill: LockedBill, data: dict, identity: Identity, kind: str) -> None:
    """Insert the row and add it to the bill's payments (for the answer)."""
    values = {
        "bill_id": bill.id,
        "kind": kind,
        "amount": data["amount"],
        "method": data["method"],
        "reference": data.get("reference"),
        "reason": data.get("reason") if kind == REFUND else None,
        "received_by_id": identity.id,
    }
    payment_id, created_at = db.session.connection().execute(_INSERT_PAYMENT, values).one()
    bill.payments.append(
        PaymentRow(
            id=payment_id,
            kind=kind,
            amount=values["amount"],
            method=values["method"],
            reference=values["reference"],
            reason=values["reason"],
            created_at=created_at,
            received_by=StaffRef(identity.id, identity.name),
        )
    )


def _move_money(
    operation: str,
    work: Callable[[LockedBill, dict, Identity], None],
    bill_id: int,
    data: dict,
    identity: Identity,
    idempotency_key: str | None,
    idempotency_ttl: timedelta,
) -> StoredResponse:
    def move(_uow) -> dict:
        bill = _lock_with_rows(bill_id)
        work(bill, data, identity)
        return _BILL_SCHEMA.dump(bill)

    return run_once(
        operation,
        bill_id,
        data,
        user_id=identity.id,
        key=idempotency_key,
        work=move,
        ttl=idempotency_ttl,
    )


def take_payment(
    bill_id: int,
    data: dict,
    identity: Identity,
    idempotency_key: str | None = None,
    *,
    idempotency_ttl: timedelta = DEFAULT_TTL,
) -> StoredResponse:
    """Record a payment of at most the due amount; the answer is the bill (JSON body).

    `idempotency_ttl`: how long the answer stays replayable under `idempotency_key`."""
    return _move_money("payment", _record_payment, bill_id, data, identity, idempotency_key, idempotency_ttl)


def refund(
    bill_id: int,
    data: dict,
    identity: Identity,
    idempotency_key: str | None = None,
    *,
    idempotency_ttl: timedelta = DEFAULT_TTL,
) -> StoredResponse:
    """Record a refund of at most what was paid; the answer is the bill (JSON body)."""
    return _move_money("refund", _record_refund, bill_id, data, identity, idempotency_key, idempotency_ttl)


# ---- the cashier's till ----------------------------------------------------------------

TO_COLLECT = (UNPAID, PARTIALLY_PAID)
_BILL_NUMBER = re.compile(r"B-\d{4}-\d{1,12}", re.IGNORECASE)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The clinic's day `day` (CLINIC_TIMEZONE) as [start, end) instants in UTC."""
    zone = clinic_zone()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def bills_to_collect(q: str = "", *, limit: int) -> list:
    """The till's list, newest first, at most `limit` rows, with each bill's patient (one
    statement, whatever the number of bills).

    Without `q`: today's UNPAID and PARTIALLY_PAID bills (opened today in the clinic's
    time zone). With `q`: a bill number (B-YYYY-N...) finds that bill; anything else is a
    patient search (MRN, phone or name, as reception's Find patient) and finds that
    patient's bills of any day and status, so an older due or a paid bill's receipt can
    be found too."""
    stmt = select(
        Bill.id,
        Bill.number,
        Bill.status,
        Bill.total_amount,
        Bill.paid_amount,
        Bill.due_amount,
        Bill.created_at,
        Patient.name.label("patient_name"),
        Patient.mrn.label("patient_mrn"),
    ).join(Patient, Patient.id == Bill.patient_id)
    q = q.strip()
    if not q:
        start, end = day_bounds(clinic_today())
        stmt = stmt.where(Bill.status.in_(TO_COLLECT), Bill.created_at >= start, Bill.created_at < end)
    elif _BILL_NUMBER.fullmatch(q):
        stmt = stmt.where(Bill.number == q.upper())
    else:
        stmt = stmt.where(search_statement(q).whereclause)
    return list(db.session.execute(_newest_first(stmt).limit(limit)))
