"""Prescription schemas: what the prescription routes accept and answer."""

import marshmallow as ma
from marshmallow import fields, validate

from hms.core.fields import Id, StrictInteger, StrictSchema, page_schema

MAX_ITEMS = 50


class PrescriptionItemInSchema(StrictSchema):
    medicine_id = Id(required=True)
    instruction_id = Id(allow_none=True)
    dosage = fields.String(required=True, validate=validate.Length(min=1, max=60))
    frequency = fields.String(required=True, validate=validate.Length(min=1, max=60))
    duration_days = StrictInteger(required=True, validate=validate.Range(min=1, max=365))
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=10_000))


class PrescriptionCreateSchema(StrictSchema):
    notes = fields.String(allow_none=True, validate=validate.Length(max=2000))
    items = fields.List(
        fields.Nested(PrescriptionItemInSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_ITEMS),
    )


class PrescribedMedicineSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    strength = fields.String(allow_none=True)
    form = fields.String(allow_none=True)


class PrescribedInstructionSchema(ma.Schema):
    id = fields.Integer()
    text = fields.String()


class PrescriptionItemSchema(ma.Schema):
    id = fields.Integer()
    medicine = fields.Nested(PrescribedMedicineSchema)
    instruction = fields.Nested(PrescribedInstructionSchema, allow_none=True)
    dosage = fields.String()
    frequency = fields.String()
    duration_days = fields.Integer()
    quantity = fields.Integer()


class PrescriptionSchema(ma.Schema):
    id = fields.Integer()
    appointment_id = fields.Integer()
    doctor_id = fields.Integer()
    patient_id = fields.Integer()
    notes = fields.String(allow_none=True)
    created_at = fields.DateTime()
    items = fields.List(fields.Nested(PrescriptionItemSchema))


PrescriptionPageSchema = page_schema(PrescriptionSchema, "PrescriptionPage")
