"""Patients. The MRN ("P000001") comes from an atomic counter: unique, never reused."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from hms.core.phones import search_key
from hms.core.text import FOLDED_MAX, fold
from hms.core.time import utcnow
from hms.core.types import UTCDateTime
from hms.extensions import db

GENDERS = ("male", "female", "other", "unknown")


class Patient(db.Model):
    __tablename__ = "patients"
    __table_args__ = (
        # Search (hms.patients.service): exact MRN (unique index); phone prefix with its
        # country code on `phone` (E.164) and without it on `phone_national`, both btree
        # with text_pattern_ops on PostgreSQL so LIKE 'prefix%' can use them; part of the
        # name, accents and case ignored, on `name_folded` (trigram GIN index on
        # PostgreSQL, LIKE '%part%' and similarity use it; a plain btree elsewhere).
        Index(
            "ix_patients_phone_prefix",
            "phone",
            postgresql_ops={"phone": "text_pattern_ops"},
        ),
        Index(
            "ix_patients_phone_national_prefix",
            "phone_national",
            postgresql_ops={"phone_national": "text_pattern_ops"},
        ),
        Index(
            "ix_patients_name_folded_trgm",
            "name_folded",
            postgresql_using="gin",
            postgresql_ops={"name_folded": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # fold(name) (hms.core.text): kept in step with `name` by the validator below.
    name_folded: Mapped[str] = mapped_column(String(FOLDED_MAX))
    gender: Mapped[str] = mapped_column(String(8))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    age: Mapped[int | None]
    # E.164 ("+919845011223"); a number older than E.164 storage that did not parse is
    # kept as its digits. `phone_national` is its national number without leading zeros
    # ("9845011223"), kept in step by the validator below.
    phone: Mapped[str | None] = mapped_column(String(20))
    phone_national: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @validates("name")
    def _fold_name(self, _key: str, name: str) -> str:
        self.name_folded = fold(name)
        return name

    @validates("phone")
    def _phone_key(self, _key: str, phone: str | None) -> str | None:
        self.phone_national = search_key(phone) if phone is not None else None
        return phone
