"""Prescriptions written during a consultation, and their items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hms.core.time import utcnow
from hms.core.types import UTCDateTime
from hms.extensions import db


class Prescription(db.Model):
    __tablename__ = "prescriptions"
    __table_args__ = (Index("ix_prescriptions_appointment_id", "appointment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items = relationship("PrescriptionItem", lazy="raise", order_by="PrescriptionItem.id")


class PrescriptionItem(db.Model):
    __tablename__ = "prescription_items"
    __table_args__ = (Index("ix_prescription_items_prescription_id", "prescription_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id"))
    medicine_id: Mapped[int] = mapped_column(ForeignKey("medicines.id"))
    instruction_id: Mapped[int | None] = mapped_column(ForeignKey("medicine_instructions.id"))
    dosage: Mapped[str] = mapped_column(String(60))
    frequency: Mapped[str] = mapped_column(String(60))
    duration_days: Mapped[int]
    quantity: Mapped[int]

    medicine = relationship("Medicine", lazy="raise")
    instruction = relationship("MedicineInstruction", lazy="raise")
