"""The appointment event log: one row per thing that happened, written in the same
transaction as the change it records."""

from __future__ import annotations

from sqlalchemy import insert

from hms.appointments.models import AppointmentEvent
from hms.extensions import db

_INSERT_EVENT = insert(AppointmentEvent.__table__)


def add_event(
    appointment_id: int,
    event_type: str,
    performed_by_id: int,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    description: str | None = None,
) -> AppointmentEvent:
    event = AppointmentEvent(
        appointment_id=appointment_id,
        event_type=event_type,
        from_status=from_status,
        to_status=to_status,
        description=description,
        performed_by_id=performed_by_id,
    )
    db.session.add(event)
    return event


def record_event(
    appointment_id: int,
    event_type: str,
    performed_by_id: int,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    description: str | None = None,
) -> None:
    """Like `add_event`, as one prebuilt INSERT run at once on the session's connection
    (no ORM object to flush): for the hot paths (booking, payments)."""
    db.session.connection().execute(
        _INSERT_EVENT,
        {
            "appointment_id": appointment_id,
            "event_type": event_type,
            "from_status": from_status,
            "to_status": to_status,
            "description": description,
            "performed_by_id": performed_by_id,
        },
    )
