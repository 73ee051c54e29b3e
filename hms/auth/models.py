"""Staff accounts. A doctor is a staff member with role `doctor`; its id is the doctor_id."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from hms.core import roles
from hms.core.time import utcnow
from hms.core.types import Money, UTCDateTime
from hms.extensions import db

# One rule for usernames and passwords wherever an account is made (the API, the CLI).
# A username is stored trimmed and lower-cased, as sign-in compares it.
USERNAME_PATTERN = re.compile(r"^[a-z0-9._-]{3,64}$")
USERNAME_RULE = "3 to 64 characters among a-z, 0-9, '.', '_', '-'."
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256
ROOM_MAX = 40


def normalize_username(username: str) -> str:
    return username.strip().lower()


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_role_name", "role", "name"),
        Index("ix_users_department_id", "department_id"),
        Index("ix_users_specialization_id", "specialization_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    specialization_id: Mapped[int | None] = mapped_column(ForeignKey("specializations.id"))
    consultation_fee: Mapped[Decimal | None] = mapped_column(Money)
    hospital_fee: Mapped[Decimal | None] = mapped_column(Money)
    # Doctors: where they see patients ("Room 4"), shown in the queue and on the ticket.
    room: Mapped[str | None] = mapped_column(String(ROOM_MAX))
    is_available: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped when the password changes or the account is disabled: every token and
    # session carries the epoch it was issued under, and stops working once it differs.
    token_epoch: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    department = relationship("Department", lazy="raise")
    specialization = relationship("Specialization", lazy="raise")

    @validates("role")
    def _known_role(self, _key: str, role: str) -> str:
        # Checked here, not by a CHECK constraint, so that adding a role needs no migration.
        if role not in roles.ROLES:
            raise ValueError(f"unknown role {role!r}")
        return role

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username} {self.role}>"
