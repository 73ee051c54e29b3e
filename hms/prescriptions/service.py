"""Prescriptions: written by the appointment's own doctor during or after the consultation.

A prescription, its items and the PRESCRIPTION_ADDED event are one transaction. Reads
load a prescription with its items, medicines and instructions in a fixed number of
statements (one for the prescriptions, one for all their items with both joins). Writing
one answers what it wrote (the medicines and instructions read to check them), without
reading it back.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload, load_only, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from hms.appointments.events import add_event
from hms.appointments.models import COMPLETED, IN_CONSULTATION, Appointment
from hms.auth.service import Identity
from hms.core.pagination import Page, paginate
from hms.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from hms.extensions import db
from hms.prescriptions.models import Prescription, PrescriptionItem
from hms.reference.models import Medicine, MedicineInstruction

WRITABLE_STATUSES = (IN_CONSULTATION, COMPLETED)
EVENT = "PRESCRIPTION_ADDED"


def _with_items(stmt: Select) -> Select:
    return stmt.options(
        selectinload(Prescription.items).options(
            joinedload(PrescriptionItem.medicine).options(
                load_only(Medicine.id, Medicine.name, Medicine.strength, Medicine.form)
            ),
            joinedload(PrescriptionItem.instruction).options(
                load_only(MedicineInstruction.id, MedicineInstruction.text)
            ),
        )
    )


def get_prescription(prescription_id: int) -> Prescription:
    stmt = _with_items(select(Prescription).where(Prescription.id == prescription_id))
    prescription = db.session.scalar(stmt.execution_options(populate_existing=True))
    if prescription is None:
        raise NotFound("Prescription not found.")
    return prescription


def appointment_prescriptions(appointment_id: int, *, page: int, limit: int) -> Page:
    """Oldest first (the order they were written in); an empty page when there are none."""
    if db.session.scalar(select(Appointment.id).where(Appointment.id == appointment_id)) is None:
        raise NotFound("Appointment not found.")
    stmt = (
        select(Prescription)
        .where(Prescription.appointment_id == appointment_id)
        .order_by(Prescription.created_at, Prescription.id)
    )
    return paginate(_with_items(stmt), page, limit)


def _unknown(index: int, field: str, what: str) -> ValidationFailed:
    message = f"Unknown {what}."
    return ValidationFailed(message, errors={"json": {"items": {str(index): {field: [message]}}}})


def _references(items: list[dict]) -> tuple[dict, dict]:
    """Every medicine and instruction exists: one query each, whatever the number of items.
    Returns them by id ({id: Medicine}, {id: MedicineInstruction}) with the columns an
    answer shows."""
    medicine_ids = {item["medicine_id"] for item in items}
    instruction_ids = {item["instruction_id"] for item in items if item.get("instruction_id") is not None}
    medicines = {
        medicine.id: medicine
        for medicine in db.session.scalars(
            select(Medicine)
            .where(Medicine.id.in_(medicine_ids))
            .options(load_only(Medicine.id, Medicine.name, Medicine.strength, Medicine.form))
        )
    }
    instructions = (
        {
            instruction.id: instruction
            for instruction in db.session.scalars(
                select(MedicineInstruction)
                .where(MedicineInstruction.id.in_(instruction_ids))
                .options(load_only(MedicineInstruction.id, MedicineInstruction.text))
            )
        }
        if instruction_ids
        else {}
    )
    for index, item in enumerate(items):
        if item["medicine_id"] not in medicines:
            raise _unknown(index, "medicine_id", "medicine")
        instruction_id = item.get("instruction_id")
        if instruction_id is not None and instruction_id not in instructions:
            raise _unknown(index, "instruction_id", "medicine instruction")
    return medicines, instructions


def create_prescription(appointment_id: int, data: dict, identity: Identity) -> Prescription:
    try:
        # FOR SHARE: the appointment cannot change status until this prescription commits.
        appointment = db.session.scalar(
            select(Appointment)
            .where(Appointment.id == appointment_id)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        if appointment is None:
            raise NotFound("Appointment not found.")
        if appointment.doctor_id != identity.id:
            raise Forbidden("Only the appointment's own doctor may prescribe.")
        if appointment.status not in WRITABLE_STATUSES:
            raise InvalidState(
                f"Prescriptions are written while IN_CONSULTATION or COMPLETED, not {appointment.status}."
            )
        medicines, instructions = _references(data["items"])
        prescription = Prescription(
            appointment_id=appointment.id,
            doctor_id=identity.id,
            patient_id=appointment.patient_id,
            notes=data.get("notes"),
        )
        db.session.add(prescription)
        db.session.flush()
        items = [
            PrescriptionItem(
                prescription_id=prescription.id,
                medicine_id=item["medicine_id"],
                instruction_id=item.get("instruction_id"),
                dosage=item["dosage"],
                frequency=item["frequency"],
                duration_days=item["duration_days"],
                quantity=item["quantity"],
            )
            for item in data["items"]
        ]
        db.session.add_all(items)
        count = len(data["items"])
        add_event(
            appointment.id,
            EVENT,
            identity.id,
            description=f"Prescription {prescription.id} ({count} item{'s' if count != 1 else ''})",
        )
        db.session.flush()
        # The answer is what was just written, not read back: its items with their
        # medicine and instruction, detached so that COMMIT does not expire them.
        for item in items:
            set_committed_value(item, "medicine", medicines[item.medicine_id])
            set_committed_value(item, "instruction", instructions.get(item.instruction_id))
        set_committed_value(prescription, "items", items)
        db.session.expunge_all()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return prescription
