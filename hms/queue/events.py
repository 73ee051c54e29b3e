"""The appointment event log: one row per thing that happened, written in the same
transaction as the change it records."""

from __future__ import annotations

from sqlalchemy import insert

from hms.appointments.models import AppointmentEvent
from hms.extensions import db

_INSERT_EVENT = insert(AppointmentEvent.__table__)


def event_row(
    appointment_id: int,
    event_type: str,
    performed_by_id: int,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    description: str | None = None,
) -> dict:
    """One event's row, for `record_events`."""
    return {
        "appointment_id": appointment_id,
        "event_type": event_type,
        "from_status": from_status,
        "to_status": to_status,
        "description": description,
        "performed_by_id": performed_by_id,
    }


def record_events(rows: list[dict]) -> None:
    """Insert event rows (`event_row`) with one prebuilt INSERT, run at once on the
    session's connection (no ORM objects to flush); several rows are one statement."""
    db.session.connection().execute(_INSERT_EVENT, rows)


def record_event(appointment_id: int, event_type: str, performed_by_id: int, **fields) -> None:
    """One event: `record_events([event_row(...)])`."""
    record_events([event_row(appointment_id, event_type, performed_by_id, **fields)])
