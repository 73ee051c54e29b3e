"""Bills, their items, append-only payments and refunds.

The idempotency records that guard payments live in hms.core.models (shared with
patients and appointments); re-exported here for existing imports."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hms.core.models import IDEMPOTENCY_KEY_MAX, IdempotencyRecord  # noqa: F401 - re-exported
from hms.core.time import utcnow
from hms.core.types import Money, UTCDateTime
from hms.extensions import db

UNPAID = "UNPAID"
PARTIALLY_PAID = "PARTIALLY_PAID"
PAID = "PAID"
VOID = "VOID"
BILL_STATUSES = (UNPAID, PARTIALLY_PAID, PAID, VOID)
PAYMENT = "PAYMENT"
REFUND = "REFUND"
PAYMENT_METHODS = ("CASH", "CARD", "UPI", "INSURANCE", "OTHER")


class Bill(db.Model):
    __tablename__ = "bills"
    __table_args__ = (
        Index("ix_bills_appointment_id", "appointment_id"),
        Index("ix_bills_patient_created", "patient_id", "created_at"),
        Index("ix_bills_status_created", "status", "created_at"),
        # The unfiltered list, newest first.
        Index("ix_bills_created_at", "created_at"),
        # Overdue: due > 0 and due_date before today. created_at second: the receivables'
        # oldest bills of a period (ORDER BY due_date) test it in the index, not the table.
        Index(
            "ix_bills_overdue",
            "due_date",
            "created_at",
            postgresql_where=text("due_amount > 0"),
            sqlite_where=text("due_amount > 0"),
        ),
        Index("ix_bills_status_due_amount", "status", "due_amount"),
        # Receivables (hms.reports): the unpaid bills created in a period, summed by age
        # from the index alone (an Index Only Scan on PostgreSQL).
        Index(
            "ix_bills_unpaid_created",
            "created_at",
            "due_date",
            postgresql_include=["due_amount", "status"],
            postgresql_where=text("due_amount > 0"),
            sqlite_where=text("due_amount > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Assigned by the last statement before COMMIT (hms.billing.ledger), so never NULL
    # once committed; nullable only so the counter row is locked as briefly as possible.
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"))
    status: Mapped[str] = mapped_column(String(16), default=UNPAID)
    total_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    paid_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    due_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    due_date: Mapped[date | None] = mapped_column(Date)
    void_reason: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    items = relationship("BillItem", lazy="raise", order_by="BillItem.id")
    payments = relationship("Payment", lazy="raise", order_by="Payment.id")


class BillItem(db.Model):
    __tablename__ = "bill_items"
    __table_args__ = (
        Index("ix_bill_items_bill_id", "bill_id"),
        # A prescription line is billed at most once, ever (two cashiers clicking at once:
        # the second insert fails). NULL for every other item.
        UniqueConstraint("prescription_item_id", name="uq_bill_items_prescription_item_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    # The prescription line this item bills (hms.prescriptions.service.bill_prescribed).
    prescription_item_id: Mapped[int | None] = mapped_column(ForeignKey("prescription_items.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Payment(db.Model):
    """A payment or a refund. Append-only: never updated, never deleted."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_bill_id", "bill_id"),
        # The reports (hms.reports): the payment rows of a period.
        Index("ix_payments_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"))
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(String(500))
    received_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    received_by = relationship("User", lazy="raise")
