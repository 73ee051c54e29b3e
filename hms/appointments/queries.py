"""Reading appointments: lists, one appointment with its patient and doctor, its events.

Each read runs a fixed number of statements whatever the page size: list items are
the appointment's own columns (no joins), one appointment is one joined statement,
events are one page statement joined with the performer plus the count.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload, load_only

from hms.appointments.models import Appointment, AppointmentEvent
from hms.auth.models import User
from hms.core.pagination import Page, paginate
from hms.errors import NotFound
from hms.extensions import db
from hms.patients.models import Patient
from hms.patients.service import age_of
from hms.queue.line import APPOINTMENT_COLUMNS
from hms.reference.models import Department

# Newest first: latest appointment date, then latest booking. The index
# ix_appointments_date_created (appointment_date, created_at) serves this order.
NEWEST_FIRST = (Appointment.appointment_date.desc(), Appointment.created_at.desc(), Appointment.id.desc())


def appointment_dict(appointment: Appointment) -> dict:
    """The basic appointment fields (what lists and status changes answer)."""
    return {name: getattr(appointment, name) for name in APPOINTMENT_COLUMNS}


def list_appointments(
    *,
    page: int,
    limit: int,
    doctor_id: int | None = None,
    patient_id: int | None = None,
    status: str | None = None,
    appointment_date: date | None = None,
) -> Page:
    """Filtered appointments, newest first: two statements (count and page)."""
    stmt = _newest_first()
    if doctor_id is not None:
        stmt = stmt.where(Appointment.doctor_id == doctor_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if status is not None:
        stmt = stmt.where(Appointment.status == status)
    if appointment_date is not None:
        stmt = stmt.where(Appointment.appointment_date == appointment_date)
    return paginate(stmt, page, limit)


def list_patient_appointments(patient_id: int, page: int, limit: int) -> Page:
    """One patient's appointments, newest first; 404 for an unknown patient."""
    if db.session.scalar(select(Patient.id).where(Patient.id == patient_id)) is None:
        raise NotFound(f"Patient {patient_id} not found.")
    return paginate(_newest_first().where(Appointment.patient_id == patient_id), page, limit)


def _newest_first() -> Select:
    return select(Appointment).order_by(*NEWEST_FIRST)


def get_appointment(appointment_id: int) -> dict:
    """The appointment with patient {id, mrn, name, age, gender} and doctor {id, name,
    department}: one statement."""
    row = db.session.execute(
        select(Appointment, Patient, User.name.label("doctor_name"), Department.name.label("department"))
        .join(Patient, Patient.id == Appointment.patient_id)
        .join(User, User.id == Appointment.doctor_id)
        .outerjoin(Department, Department.id == User.department_id)
        .where(Appointment.id == appointment_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"Appointment {appointment_id} not found.")
    appointment, patient = row.Appointment, row.Patient
    return {
        **appointment_dict(appointment),
        "patient": {
            "id": patient.id,
            "mrn": patient.mrn,
            "name": patient.name,
            "age": age_of(patient),
            "gender": patient.gender,
        },
        "doctor": {"id": appointment.doctor_id, "name": row.doctor_name, "department": row.department},
    }


def list_events(appointment_id: int, page: int, limit: int) -> Page:
    """The appointment's events, oldest first, each with its performer: 3 statements."""
    if db.session.scalar(select(Appointment.id).where(Appointment.id == appointment_id)) is None:
        raise NotFound(f"Appointment {appointment_id} not found.")
    stmt = (
        select(AppointmentEvent)
        .options(joinedload(AppointmentEvent.performed_by).options(load_only(User.id, User.name)))
        .where(AppointmentEvent.appointment_id == appointment_id)
        .order_by(AppointmentEvent.performed_at, AppointmentEvent.id)
    )
    return paginate(stmt, page, limit)
