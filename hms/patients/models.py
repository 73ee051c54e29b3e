"""Patients. The MRN ("P000001") comes from an atomic counter: unique, never reused."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from hms.core.time import utcnow
from hms.core.types import UTCDateTime
from hms.extensions import db

GENDERS = ("male", "female", "other", "unknown")


class Patient(db.Model):
    __tablename__ = "patients"
    __table_args__ = (
        # Search: exact MRN (unique index), phone prefix (btree with text_pattern_ops on
        # PostgreSQL, so LIKE 'prefix%' can use it), part of the name case-insensitive
        # (trigram GIN index on lower(name), created by the migration on PostgreSQL).
        Index(
            "ix_patients_phone_prefix",
            "phone",
            postgresql_ops={"phone": "text_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    gender: Mapped[str] = mapped_column(String(8))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    age: Mapped[int | None]
    phone: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# Case-insensitive "part of the name" search: a trigram GIN index on lower(name) on
# PostgreSQL (LIKE '%part%' uses it); a plain expression index elsewhere.
Index(
    "ix_patients_name_trgm",
    func.lower(Patient.name).label("name_lower"),
    postgresql_using="gin",
    postgresql_ops={"name_lower": "gin_trgm_ops"},
)
