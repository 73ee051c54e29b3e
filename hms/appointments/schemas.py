"""Appointments: request and response schemas."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from hms.appointments.models import APPOINTMENT_TYPES, PRIORITIES, STATUSES
from hms.core.fields import MAX_ID, Id, IsoDate, PageQuery, StrictSchema, Text, page_schema

REASON_MAX = 500
COMPLAINT_MAX = 500


# --- requests ---------------------------------------------------------------------------


class BookingSchema(StrictSchema):
    patient_id = Id(required=True)
    doctor_id = Id(required=True, metadata={"description": "The doctor's staff id."})
    appointment_type = fields.String(required=True, validate=validate.OneOf(APPOINTMENT_TYPES))
    chief_complaint = Text(COMPLAINT_MAX, allow_none=True)
    priority = fields.String(
        load_default="NORMAL",
        validate=validate.OneOf(PRIORITIES),
        metadata={
            "description": "URGENT patients wait ahead of NORMAL ones (first come, first served within each)."
        },
    )
    appointment_date = IsoDate(
        metadata={"description": "YYYY-MM-DD in the clinic's time zone; default today, never in the past."}
    )


class StatusChangeSchema(StrictSchema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = Text(REASON_MAX, allow_none=True, metadata={"description": "Recorded on the event."})


def _query_id() -> fields.Integer:
    """An id in a query string (text, so not strict): 1..2^31-1, else 422."""
    return fields.Integer(validate=validate.Range(min=1, max=MAX_ID))


class AppointmentListQuery(PageQuery):
    doctor_id = _query_id()
    patient_id = _query_id()
    status = fields.String(validate=validate.OneOf(STATUSES))
    date = IsoDate(metadata={"description": "Appointment date, YYYY-MM-DD."})


# --- responses --------------------------------------------------------------------------


class AppointmentSchema(ma.Schema):
    id = fields.Integer()
    patient_id = fields.Integer()
    doctor_id = fields.Integer()
    appointment_date = fields.Date()
    appointment_type = fields.String()
    priority = fields.String()
    status = fields.String()
    token = fields.Integer()
    queue_position = fields.Integer(
        allow_none=True, metadata={"description": "1..K among the active appointments; null otherwise."}
    )
    chief_complaint = fields.String(allow_none=True)
    waiting_since = fields.DateTime()
    entry_time = fields.DateTime(allow_none=True)
    exit_time = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class BookedAppointmentSchema(AppointmentSchema):
    bill_id = fields.Integer(metadata={"description": "The consultation bill opened with the booking."})


class AppointmentPatientSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    name = fields.String()
    age = fields.Integer(allow_none=True)
    gender = fields.String()


class AppointmentDoctorSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    department = fields.String(allow_none=True, metadata={"description": "Department name."})


class AppointmentDetailSchema(AppointmentSchema):
    patient = fields.Nested(AppointmentPatientSchema)
    doctor = fields.Nested(AppointmentDoctorSchema)


class PerformerSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()


class AppointmentEventSchema(ma.Schema):
    id = fields.Integer()
    event_type = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    performed_by = fields.Nested(PerformerSchema)
    performed_at = fields.DateTime()


AppointmentPageSchema = page_schema(AppointmentSchema, "AppointmentPage")
AppointmentEventPageSchema = page_schema(AppointmentEventSchema, "AppointmentEventPage")
