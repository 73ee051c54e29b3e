"""TEMPORARY stand-ins for functions other branches add (wp-data, wp-ticket), so the
reception pages run before those merges. Deleted at the merge; nothing else uses it."""

from __future__ import annotations

import types
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, or_, select

from hms.appointments import service as appointments
from hms.core.time import clinic_today, clinic_zone
from hms.extensions import db
from hms.patients import service as patients
from hms.patients.models import Patient

_done: dict = {}


@dataclass
class StoredResponse:
    status: int
    body: dict
    replayed: bool


def find_duplicates(*, name=None, phone=None, date_of_birth=None, age=None, limit=10):
    conds = []
    if phone:
        conds.append(Patient.phone == phone)
    if name:
        conds.append(func.lower(Patient.name) == name.strip().lower())
    if not conds:
        return []
    rows = db.session.scalars(select(Patient).where(or_(*conds)).limit(limit))
    return [
        {
            "id": p.id,
            "mrn": p.mrn,
            "name": p.name,
            "gender": p.gender,
            "age": patients.age_of(p),
            "phone": p.phone,
            "date_of_birth": p.date_of_birth,
            "reason": "same_phone" if phone and p.phone == phone else "similar_name_same_birth_year",
        }
        for p in rows
    ]


def register_patient_once(data, identity, key):
    if (identity.id, key) in _done:
        return StoredResponse(201, _done[identity.id, key], True)
    p = patients.register_patient(data)
    body = {"id": p.id, "mrn": p.mrn, "name": p.name}
    _done[identity.id, key] = body
    return StoredResponse(201, body, False)


def book_appointment_once(data, identity, key):
    if ("b", identity.id, key) in _done:
        return StoredResponse(201, _done["b", identity.id, key], True)
    body = appointments.book_appointment(data, identity)
    _done["b", identity.id, key] = body
    return StoredResponse(201, body, False)


def ticket_link(appointment_id):
    end = datetime.combine(clinic_today() + timedelta(days=1), time(), clinic_zone())
    return f"/t/fake-{appointment_id}", end


for _name, _fn in (("find_duplicates", find_duplicates), ("register_patient_once", register_patient_once)):
    if not hasattr(patients, _name):
        setattr(patients, _name, _fn)
if not hasattr(appointments, "book_appointment_once"):
    appointments.book_appointment_once = book_appointment_once
tickets = types.SimpleNamespace(ticket_link=ticket_link)
