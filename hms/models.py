"""Every model, imported in one place for the migrations and create_all()."""

from hms.appointments.models import Appointment, AppointmentEvent, QueueDay
from hms.auth.models import User
from hms.billing.models import Bill, BillItem, Payment
from hms.core.db import Counter
from hms.core.models import IdempotencyRecord
from hms.patients.models import Patient
from hms.prescriptions.models import Prescription, PrescriptionItem
from hms.reference.models import (
    Category,
    Department,
    Medicine,
    MedicineInstruction,
    Specialization,
    TestType,
)

__all__ = [
    "Appointment",
    "AppointmentEvent",
    "Bill",
    "BillItem",
    "Category",
    "Counter",
    "Department",
    "IdempotencyRecord",
    "Medicine",
    "MedicineInstruction",
    "Patient",
    "Payment",
    "Prescription",
    "PrescriptionItem",
    "QueueDay",
    "Specialization",
    "TestType",
    "User",
]
