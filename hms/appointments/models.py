"""Appointments, their event log, and the per-doctor, per-day queue counter row."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hms.core.time import utcnow
from hms.core.types import UTCDateTime
from hms.extensions import db

WAITING = "WAITING"
IN_CONSULTATION = "IN_CONSULTATION"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
NO_SHOW = "NO_SHOW"
STATUSES = (WAITING, IN_CONSULTATION, COMPLETED, CANCELLED, NO_SHOW)
ACTIVE_STATUSES = (WAITING, IN_CONSULTATION)
# The same, as a literal SQL condition for the prebuilt statements of the hot paths: an
# IN of bound values is an "expanding" parameter that SQLAlchemy re-renders into the SQL
# text on every execution (measured: about 55 us per statement); the literal costs
# nothing per execution, and the planner sees the values.
ACTIVE_STATUS_SQL = "appointments.status IN ({})".format(
    ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
)
APPOINTMENT_TYPES = ("NEW", "FOLLOW_UP")
# Triage: URGENT patients wait ahead of NORMAL ones; first come, first served within each.
NORMAL = "NORMAL"
URGENT = "URGENT"
PRIORITIES = (NORMAL, URGENT)

EVENT_TYPES = (
    "CREATED",
    "ENTERED_ROOM",
    "CONSULTATION_COMPLETED",
    "APPOINTMENT_CANCELLED",
    "NO_SHOW",
    "RETURNED_TO_QUEUE",
    "PRESCRIPTION_ADDED",
    "PAYMENT_RECEIVED",
)


class QueueDay(db.Model):
    """One row per doctor and date: the token counter and the queue version.

    Every change to that doctor's queue on that date starts by updating this row
    (UPDATE ... RETURNING), which hands out tokens without gaps or duplicates and
    serializes the re-numbering of positions: never count-or-max-plus-one.
    """

    __tablename__ = "queue_days"

    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    queue_date: Mapped[date] = mapped_column(Date, primary_key=True)
    last_token: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=0)


class Appointment(db.Model):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("doctor_id", "appointment_date", "token", name="uq_appointments_doctor_date_token"),
        # The queue snapshot and the list filter by doctor, date and status.
        Index(
            "ix_appointments_doctor_date_status", "doctor_id", "appointment_date", "status", "queue_position"
        ),
        Index("ix_appointments_status_date", "status", "appointment_date"),
        Index("ix_appointments_patient_created", "patient_id", "created_at"),
        Index("ix_appointments_date_created", "appointment_date", "created_at"),
        # Recent consultation lengths per doctor, for estimated waits.
        Index(
            "ix_appointments_doctor_completed_exit",
            "doctor_id",
            "exit_time",
            postgresql_where=text("status = 'COMPLETED'"),
            sqlite_where=text("status = 'COMPLETED'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    appointment_date: Mapped[date] = mapped_column(Date)
    appointment_type: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8), default=NORMAL, server_default=NORMAL)
    status: Mapped[str] = mapped_column(String(16), default=WAITING)
    token: Mapped[int]
    # 1..K among the active (WAITING, IN_CONSULTATION) appointments; NULL otherwise.
    queue_position: Mapped[int | None]
    chief_complaint: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the patient (re)joined the line: booking, back from the room, late arrival.
    waiting_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    entry_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    patient = relationship("Patient", lazy="raise")
    doctor = relationship("User", foreign_keys=[doctor_id], lazy="raise")


class AppointmentEvent(db.Model):
    __tablename__ = "appointment_events"
    __table_args__ = (
        Index("ix_appointment_events_appointment_time", "appointment_id", "performed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"))
    event_type: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    performed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    performed_by = relationship("User", lazy="raise")
