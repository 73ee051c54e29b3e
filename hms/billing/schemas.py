"""Bill, item and payment schemas: what the billing routes accept and answer."""

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from hms.billing.models import BILL_STATUSES, PAYMENT_METHODS
from hms.core.fields import (
    MAX_ID,
    Id,
    IdempotencyHeaderSchema,  # noqa: F401 - re-exported for the billing routes
    IsoDate,
    Money,
    PageQuery,
    StrictInteger,
    StrictSchema,
    Text,
    page_schema,
)

MAX_QUANTITY = 10_000
MAX_ITEMS_PER_REQUEST = 100


# ---- input -------------------------------------------------------------------------


class BillLineInSchema(StrictSchema):
    """One line: a free line (description + unit_price), a lab test or a medicine."""

    category_id = Id(allow_none=True)
    description = fields.String(validate=validate.Length(min=1, max=200))
    unit_price = Money()
    test_type_id = Id(metadata={"description": "Price and name from the test-type catalogue."})
    medicine_id = Id(metadata={"description": "Price and name from the medicine catalogue."})
    quantity = StrictInteger(
        load_default=1,
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": "1..10000, default 1."},
    )

    @validates_schema
    def _one_source(self, data, **kwargs):
        catalogue = [name for name in ("test_type_id", "medicine_id") if name in data]
        free = [name for name in ("description", "unit_price") if name in data]
        if len(catalogue) > 1 or (catalogue and free):
            raise ma.ValidationError(
                "Give description and unit_price, or test_type_id, or medicine_id: one of them."
            )
        if not catalogue:
            errors = {
                name: ["Required for a line without test_type_id or medicine_id."]
                for name in ("description", "unit_price")
                if name not in data
            }
            if "description" in data and not data["description"].strip():
                errors["description"] = ["Must not be blank."]
            if errors:
                raise ma.ValidationError(errors)


class BillCreateSchema(StrictSchema):
    patient_id = Id(required=True)
    appointment_id = Id(allow_none=True, metadata={"description": "Required for doctors (own only)."})
    due_date = IsoDate(
        allow_none=True,
        metadata={"description": "YYYY-MM-DD, today up to 10 years ahead; default today."},
    )
    items = fields.List(
        fields.Nested(BillLineInSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_ITEMS_PER_REQUEST),
    )


class BillItemsAddSchema(StrictSchema):
    items = fields.List(
        fields.Nested(BillLineInSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_ITEMS_PER_REQUEST),
    )


class PaymentInSchema(StrictSchema):
    amount = Money(required=True, allow_zero=False, metadata={"description": "> 0, at most the due amount."})
    method = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    reference = Text(120, allow_none=True)


class RefundInSchema(StrictSchema):
    amount = Money(required=True, allow_zero=False, metadata={"description": "> 0, at most what was paid."})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    method = fields.String(
        load_default="OTHER",
        validate=validate.OneOf(PAYMENT_METHODS),
        metadata={"description": "How the money went back; default OTHER."},
    )
    reference = Text(120, allow_none=True)


class VoidInSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class BillListQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(BILL_STATUSES))
    patient_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    overdue = fields.Boolean(
        metadata={
            "description": "true: due > 0, due_date before today, not VOID (most overdue first); false: all others."
        }
    )


# ---- output ------------------------------------------------------------------------


class BillStaffRefSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()


class BillItemSchema(ma.Schema):
    id = fields.Integer()
    category_id = fields.Integer(allow_none=True)
    description = fields.String()
    quantity = fields.Integer()
    unit_price = Money()
    amount = Money()


class BillPaymentSchema(ma.Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "PAYMENT or REFUND"})
    amount = Money()
    method = fields.String()
    reference = fields.String(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "Refunds only."})
    received_by = fields.Nested(BillStaffRefSchema)
    created_at = fields.DateTime()


class BillSchema(ma.Schema):
    id = fields.Integer()
    number = fields.String()
    patient_id = fields.Integer()
    appointment_id = fields.Integer(allow_none=True)
    status = fields.String()
    total_amount = Money()
    paid_amount = Money()
    due_amount = Money()
    due_date = fields.Date(allow_none=True)
    void_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    items = fields.List(fields.Nested(BillItemSchema))
    payments = fields.List(fields.Nested(BillPaymentSchema))


BillPageSchema = page_schema(BillSchema, "BillPage")
