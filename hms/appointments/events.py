"""The appointment event log: one row per thing that happened, written in the same
transaction as the change it records."""

from __future__ import annotations

from hms.appointments.models import AppointmentEvent
from hms.extensions import db


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
