"""Tables of the shared machinery in hms.core (any domain may use them).

The counters table lives in hms.core.db; this module holds the idempotency records
(hms.core.idempotency), shared by every POST that takes an Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hms.core.time import utcnow
from hms.core.types import UTCDateTime
from hms.extensions import db

IDEMPOTENCY_KEY_MAX = 255  # characters (API.md)


class IdempotencyRecord(db.Model):
    """An Idempotency-Key seen from one account: the request's fingerprint and the answer."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),
        Index("ix_idempotency_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
