"""Reference data: departments, specializations, test types, medicines,
medicine instructions and bill-item categories."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from hms.core.text import fold
from hms.core.time import utcnow
from hms.core.types import Money, UTCDateTime
from hms.extensions import db

SEARCH_FOLDED_MAX = 481  # two folded names and a newline


class Department(db.Model):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Specialization(db.Model):
    __tablename__ = "specializations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TestType(db.Model):
    __tablename__ = "test_types"
    __test__ = False  # not a pytest test class

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    price: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Medicine(db.Model):
    __tablename__ = "medicines"
    __table_args__ = (
        UniqueConstraint("name", "form", "strength", name="uq_medicines_name_form_strength"),
        # ?q= matches part of the brand or the generic name, accents and case ignored:
        # LIKE '%part%' on the folded text, trigram GIN index on PostgreSQL.
        Index(
            "ix_medicines_search_trgm",
            "search_folded",
            postgresql_using="gin",
            postgresql_ops={"search_folded": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), index=True)
    generic_name: Mapped[str | None] = mapped_column(String(120))
    form: Mapped[str | None] = mapped_column(String(40))
    strength: Mapped[str | None] = mapped_column(String(40))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # fold(name) + "\n" + fold(generic_name): what ?q= searches (a folded query never
    # holds a newline, so a match never spans both names). Kept in step below.
    search_folded: Mapped[str] = mapped_column(String(SEARCH_FOLDED_MAX))

    @validates("name", "generic_name")
    def _fold_names(self, key: str, value: str | None) -> str | None:
        names = {"name": self.name, "generic_name": self.generic_name, key: value}
        self.search_folded = medicine_search_text(names["name"], names["generic_name"])
        return value


def medicine_search_text(name: str | None, generic_name: str | None) -> str:
    return fold(name or "") + "\n" + fold(generic_name or "")


class MedicineInstruction(db.Model):
    __tablename__ = "medicine_instructions"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Category(db.Model):
    """A bill-item category (consultation, hospital fee, lab, pharmacy, ...)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
