"""TEMPORARY stand-in for `hms.appointments.service.book_appointment_once` (wp-data adds
it), so the reception pages run before that merge. Deleted at the merge."""

from __future__ import annotations

from hms.appointments import service as appointments
from hms.core.idempotency import StoredResponse

_done: dict = {}


def book_appointment_once(data, identity, key):
    if ("b", identity.id, key) in _done:
        return StoredResponse(201, _done["b", identity.id, key], True)
    body = appointments.book_appointment(data, identity)
    _done["b", identity.id, key] = body
    return StoredResponse(201, body, False)


if not hasattr(appointments, "book_appointment_once"):
    appointments.book_appointment_once = book_appointment_once
