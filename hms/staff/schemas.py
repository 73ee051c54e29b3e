"""Staff accounts and the public doctor directory: request and response schemas."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from hms.auth.models import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    ROOM_MAX,
    USERNAME_PATTERN,
    USERNAME_RULE,
    normalize_username,
)
from hms.core.fields import (
    MAX_ID,
    Id,
    JsonBoolean,
    Money,
    PageQuery,
    SearchPageQuery,
    StrictSchema,
    Trimmed,
    page_schema,
)
from hms.core.roles import ROLES


class Username(fields.String):
    """Stored trimmed and lower-cased, as sign-in compares it."""

    def _deserialize(self, value, attr, data, **kwargs):
        return normalize_username(super()._deserialize(value, attr, data, **kwargs))


def _password(note: str = "", **kwargs) -> fields.String:
    return fields.String(
        load_only=True,
        validate=validate.Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH),
        metadata={"description": f"At least {PASSWORD_MIN_LENGTH} characters; never returned.{note}"},
        **kwargs,
    )


def _role(**kwargs) -> fields.String:
    return fields.String(validate=validate.OneOf(ROLES), **kwargs)


_DOCTOR_ONLY = "Doctors only: other roles have no fees or specialization."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ROOM_DOC = (
    f'Doctors only: where the doctor sees patients, e.g. "Room 4" (up to {ROOM_MAX} characters, no '
    "control characters; trimmed, blank or null: none). Shown in the queue snapshot."
)


class RoomString(fields.String):
    """A doctor's room: trimmed, at most ROOM_MAX characters, no control characters;
    blank means no room (None)."""

    default_error_messages = {
        "control": "Must not contain control characters.",
        "too_long": f"At most {ROOM_MAX} characters.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if _CONTROL.search(text):
            raise self.make_error("control")
        text = text.strip()
        if len(text) > ROOM_MAX:
            raise self.make_error("too_long")
        return text or None


def _room() -> RoomString:
    return RoomString(allow_none=True, metadata={"description": _ROOM_DOC, "maxLength": ROOM_MAX})


class StaffCreateSchema(StrictSchema):
    username = Username(
        required=True,
        validate=validate.Regexp(USERNAME_PATTERN, error=USERNAME_RULE),
        metadata={"description": "Stored trimmed and lower-cased."},
    )
    password = _password(required=True)
    name = Trimmed(120, required=True)
    role = _role(required=True)
    department_id = Id(allow_none=True)
    specialization_id = Id(allow_none=True, metadata={"description": _DOCTOR_ONLY})
    consultation_fee = Money(metadata={"description": "Doctors only; a doctor's fee defaults to 0.00."})
    hospital_fee = Money(metadata={"description": "Doctors only; a doctor's fee defaults to 0.00."})
    room = _room()


class StaffUpdateSchema(StrictSchema):
    """Admin: any of these. A doctor: only their own `is_available`."""

    name = Trimmed(120)
    role = _role()
    department_id = Id(allow_none=True)
    specialization_id = Id(allow_none=True, metadata={"description": _DOCTOR_ONLY})
    consultation_fee = Money(metadata={"description": "Doctors only."})
    hospital_fee = Money(metadata={"description": "Doctors only."})
    room = _room()
    is_available = JsonBoolean()
    active = JsonBoolean(metadata={"description": "false disables the account and ends its tokens."})
    password = _password(" Changing it ends the account's tokens.")

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send at least one field to change.")


class StaffSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()
    name = fields.String()
    role = fields.String()
    department_id = fields.Integer(allow_none=True)
    specialization_id = fields.Integer(allow_none=True)
    consultation_fee = Money(allow_none=True)
    hospital_fee = Money(allow_none=True)
    room = fields.String(allow_none=True)
    is_available = fields.Boolean()
    active = fields.Boolean()


class StaffQuery(SearchPageQuery):
    """?role= filter, ?q= part of the name or username."""

    role = _role()


StaffPageSchema = page_schema(StaffSchema, "StaffPage")


class DoctorUnitRefSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()


class DoctorSchema(ma.Schema):
    id = fields.Integer(metadata={"description": "The doctor_id used everywhere."})
    name = fields.String()
    department = fields.Nested(DoctorUnitRefSchema, allow_none=True)
    specialization = fields.Nested(DoctorUnitRefSchema, allow_none=True)
    consultation_fee = Money()
    hospital_fee = Money()
    room = fields.String(
        allow_none=True, metadata={"description": 'Where the doctor sees patients ("Room 4").'}
    )
    is_available = fields.Boolean()


def _query_id() -> fields.Integer:
    # Query-string values arrive as text, so the strict JSON Id() does not apply.
    return fields.Integer(validate=validate.Range(min=1, max=MAX_ID))


class DoctorQuery(PageQuery):
    department_id = _query_id()
    specialization_id = _query_id()
    available = fields.Boolean(truthy={"true"}, falsy={"false"}, metadata={"description": "true or false"})


DoctorPageSchema = page_schema(DoctorSchema, "DoctorPage")
