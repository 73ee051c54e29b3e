"""Clinic time: 'today' is today in CLINIC_TIMEZONE; stored timestamps are UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from hms.core.settings import setting


def utcnow() -> datetime:
    return datetime.now(UTC)


def clinic_zone() -> ZoneInfo:
    return ZoneInfo(setting("CLINIC_TIMEZONE"))


def clinic_today() -> date:
    return datetime.now(clinic_zone()).date()
