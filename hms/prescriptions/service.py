"""Prescriptions: written by the appointment's own doctor during or after the consultation.

A prescription, its items and the PRESCRIPTION_ADDED event are one transaction. Reads
load a prescription with its items, medicines and instructions in a fixed number of
statements (one for the prescriptions, one for all their items with both joins). Writing
one runs prebuilt Core statements and answers what it wrote (the medicines and
instructions read to check them), without reading it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, bindparam, insert, select
from sqlalchemy.orm import joinedload, load_only, selectinload

from hms.appointments.models import COMPLETED, IN_CONSULTATION, Appointment
from hms.auth.service import Identity
from hms.billing import service as billing
from hms.billing.ledger import LineItem
from hms.billing.models import Bill, BillItem
from hms.core.pagination import Page, paginate
from hms.core.roles import own_records_only
from hms.core.uow import unit_of_work
from hms.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed
from hms.extensions import db
from hms.prescriptions.models import Prescription, PrescriptionItem
from hms.queue.events import record_event
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


def patient_prescriptions(patient_id: int, *, page: int, limit: int) -> Page:
    """One patient's prescriptions, newest first (the doctor's screen): a fixed number of
    statements whatever the page size (count, page, items with their joins)."""
    stmt = (
        select(Prescription)
        .where(Prescription.patient_id == patient_id)
        .order_by(Prescription.created_at.desc(), Prescription.id.desc())
    )
    return paginate(_with_items(stmt), page, limit)


def _unknown(index: int, field: str, what: str) -> ValidationFailed:
    message = f"Unknown {what}."
    return ValidationFailed(message, errors={"json": {"items": {str(index): {field: [message]}}}})


# Prebuilt statements of the write (a prescription per consultation: a hot path).
_appointments = Appointment.__table__
_medicines = Medicine.__table__
_instructions = MedicineInstruction.__table__
_prescriptions = Prescription.__table__
_items = PrescriptionItem.__table__
# FOR SHARE: the appointment cannot change status until this prescription commits.
_APPOINTMENT_FOR_SHARE = (
    select(_appointments.c.id, _appointments.c.doctor_id, _appointments.c.patient_id, _appointments.c.status)
    .where(_appointments.c.id == bindparam("appointment_id"))
    .with_for_update(read=True)
)
_MEDICINES = select(_medicines.c.id, _medicines.c.name, _medicines.c.strength, _medicines.c.form).where(
    _medicines.c.id.in_(bindparam("ids", expanding=True))
)
_INSTRUCTIONS = select(_instructions.c.id, _instructions.c.text).where(
    _instructions.c.id.in_(bindparam("ids", expanding=True))
)
_INSERT_PRESCRIPTION = insert(_prescriptions).returning(_prescriptions.c.id, _prescriptions.c.created_at)
_INSERT_ITEMS = insert(_items).returning(_items.c.id, sort_by_parameter_order=True)
_ITEM_FIELDS = ("medicine_id", "instruction_id", "dosage", "frequency", "duration_days", "quantity")


# What a new prescription answers, built from what was written and read: PrescriptionSchema
# dumps these rows (it reads attributes).


@dataclass(slots=True, frozen=True)
class PrescribedMedicine:
    id: int
    name: str
    strength: str | None
    form: str | None


@dataclass(slots=True, frozen=True)
class PrescribedInstruction:
    id: int
    text: str


@dataclass(slots=True, frozen=True)
class WrittenItem:
    id: int
    medicine: PrescribedMedicine
    instruction: PrescribedInstruction | None
    dosage: str
    frequency: str
    duration_days: int
    quantity: int


@dataclass(slots=True, frozen=True)
class WrittenPrescription:
    id: int
    appointment_id: int
    doctor_id: int
    patient_id: int
    notes: str | None
    created_at: datetime
    items: list[WrittenItem]


def _references(
    items: list[dict],
) -> tuple[dict[int, PrescribedMedicine], dict[int, PrescribedInstruction]]:
    """Every medicine and instruction exists: one query each, whatever the number of items.
    Returns them by id with the columns an answer shows."""
    connection = db.session.connection()
    medicine_ids = sorted({item["medicine_id"] for item in items})
    instruction_ids = sorted(
        {item["instruction_id"] for item in items if item.get("instruction_id") is not None}
    )
    medicines = {
        row.id: PrescribedMedicine(row.id, row.name, row.strength, row.form)
        for row in connection.execute(_MEDICINES, {"ids": medicine_ids})
    }
    instructions = (
        {
            row.id: PrescribedInstruction(row.id, row.text)
            for row in connection.execute(_INSTRUCTIONS, {"ids": instruction_ids})
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


def create_prescription(appointment_id: int, data: dict, identity: Identity) -> WrittenPrescription:
    """Write the prescription, its items and the event (one unit of work) and answer what
    was written, with each item's medicine and instruction (not read back)."""
    with unit_of_work():
        connection = db.session.connection()
        appointment = connection.execute(
            _APPOINTMENT_FOR_SHARE, {"appointment_id": appointment_id}
        ).one_or_none()
        if appointment is None:
            raise NotFound("Appointment not found.")
        if own_records_only(identity.role, "prescriptions.write") and appointment.doctor_id != identity.id:
            raise Forbidden("Only the appointment's own doctor may prescribe.")
        if appointment.status not in WRITABLE_STATUSES:
            raise InvalidState(
                f"Prescriptions are written while IN_CONSULTATION or COMPLETED, not {appointment.status}."
            )
        medicines, instructions = _references(data["items"])
        prescription_id, created_at = connection.execute(
            _INSERT_PRESCRIPTION,
            {
                "appointment_id": appointment.id,
                "doctor_id": identity.id,
                "patient_id": appointment.patient_id,
                "notes": data.get("notes"),
            },
        ).one()
        rows = [
            {"prescription_id": prescription_id, **{name: item.get(name) for name in _ITEM_FIELDS}}
            for item in data["items"]
        ]
        item_ids = connection.execute(_INSERT_ITEMS, rows).scalars().all()
        count = len(rows)
        record_event(
            appointment.id,
            EVENT,
            identity.id,
            description=f"Prescription {prescription_id} ({count} item{'s' if count != 1 else ''})",
        )
    return WrittenPrescription(
        id=prescription_id,
        appointment_id=appointment.id,
        doctor_id=identity.id,
        patient_id=appointment.patient_id,
        notes=data.get("notes"),
        created_at=created_at,
        items=[
            WrittenItem(
                id=item_id,
                medicine=medicines[row["medicine_id"]],
                instruction=instructions.get(row["instruction_id"]),
                dosage=row["dosage"],
                frequency=row["frequency"],
                duration_days=row["duration_days"],
                quantity=row["quantity"],
            )
            for item_id, row in zip(item_ids, rows, strict=True)
        ],
    )


# --- billing the prescribed medicines ---------------------------------------------------

ALREADY_BILLED = "The prescribed medicines are already on a bill."


@dataclass(frozen=True, slots=True)
class UnbilledLine:
    """A prescription line not billed yet, priced from the medicines catalogue."""

    prescription_item_id: int
    medicine: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"))


def unbilled_lines(appointment_id: int | None) -> list[UnbilledLine]:
    """The appointment's prescription lines no bill item names yet, oldest first: one
    statement, whatever the number of prescriptions and lines."""
    if appointment_id is None:
        return []
    stmt = (
        select(
            PrescriptionItem.id,
            PrescriptionItem.quantity,
            Medicine.name,
            Medicine.strength,
            Medicine.form,
            Medicine.unit_price,
        )
        .join(Prescription, Prescription.id == PrescriptionItem.prescription_id)
        .join(Medicine, Medicine.id == PrescriptionItem.medicine_id)
        .outerjoin(BillItem, BillItem.prescription_item_id == PrescriptionItem.id)
        .where(Prescription.appointment_id == appointment_id, BillItem.id.is_(None))
        .order_by(PrescriptionItem.id)
    )
    return [
        UnbilledLine(
            row.id,
            " ".join(part for part in (row.name, row.strength, row.form) if part)[:200],
            row.quantity,
            row.unit_price,
        )
        for row in db.session.execute(stmt)
    ]


def bill_prescribed(bill_id: int, identity: Identity) -> Bill:
    """Add the prescription lines of the bill's appointment not billed yet to the bill,
    at the catalogue's unit price x quantity, in one transaction.

    The bill is locked first, so two cashiers on the same bill run one after the other
    and the second finds nothing left (409); on two bills of one appointment, the unique
    bill_items.prescription_item_id makes the later commit fail (409). A PAID or VOID
    bill takes no items (409); a bill without an appointment has no prescriptions (409)."""
    with unit_of_work(conflict=ALREADY_BILLED):
        bill = billing.lock_for_items(bill_id, identity)
        if bill.appointment_id is None:
            raise Conflict("This bill is not for a visit: it has no prescribed medicines.")
        lines = unbilled_lines(bill.appointment_id)
        if not lines:
            raise Conflict(ALREADY_BILLED)
        billing.append_items(
            bill,
            [
                LineItem(
                    line.medicine,
                    line.quantity,
                    line.unit_price,
                    prescription_item_id=line.prescription_item_id,
                )
                for line in lines
            ],
        )
    return billing.load_bill(bill_id)
