"""Patient request and response schemas.

Input is checked here for shape (types, lengths, character sets, the gender list);
the rules that need "today" or the stored row (date of birth not in the future, age
agreeing with the date of birth) live in the service.
"""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields, validate, validates

from hms.core.fields import IsoDate, SearchPageQuery, StrictSchema, page_schema
from hms.patients.models import GENDERS
from hms.patients.service import age_of

NAME_MAX = 120
ADDRESS_MAX = 300
PHONE_MAX = 30  # characters typed; stored in E.164 (at most 16)
PHONE_PATTERN = re.compile(r"^[0-9 +()\-./]{3,30}$")
# PostgreSQL rejects NUL in text and the others are never meant in a name or address.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PHONE_RULES = (
    'Digits, spaces and + ( ) - . / (3 to 30 characters, "+" only first). Stored in E.164 '
    '("+919845011223"): a number without "+" takes the clinic\'s country code '
    "(CLINIC_COUNTRY_CODE); one that is not a possible number for its country is 422."
)


def _check_phone(value: str) -> None:
    if not PHONE_PATTERN.fullmatch(value):
        raise ma.ValidationError("3 to 30 characters: digits, spaces, +, -, (, ), . and / only.")
    if "+" in value.strip()[1:]:
        raise ma.ValidationError('"+" is only allowed at the start.')
    if len(re.sub(r"\D", "", value)) < 3:
        raise ma.ValidationError("At least 3 digits.")


def _no_control_characters(value: str) -> None:
    if _CONTROL.search(value):
        raise ma.ValidationError("Must not contain control characters.")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


def _name(**kwargs) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=NAME_MAX), _not_blank, _no_control_characters], **kwargs
    )


class PatientWriteFields(StrictSchema):
    """The editable fields, shared by create and update."""

    gender = fields.String(validate=validate.OneOf(GENDERS))
    date_of_birth = IsoDate(allow_none=True, metadata={"description": "YYYY-MM-DD, 1900-01-01 .. today"})
    age = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=0, max=150),
        metadata={"description": "Years. Derived from date_of_birth when omitted; must agree with it."},
    )
    phone = fields.String(
        allow_none=True,
        validate=_check_phone,
        metadata={"description": PHONE_RULES},
    )
    address = fields.String(
        allow_none=True, validate=[validate.Length(max=ADDRESS_MAX), _no_control_characters]
    )

    @ma.post_load
    def clean(self, data: dict, **kwargs) -> dict:
        if "name" in data:
            data["name"] = data["name"].strip()
        if data.get("phone") is not None:
            data["phone"] = data["phone"].strip()  # to E.164 in the service (CLINIC_COUNTRY_CODE)
        if data.get("address") is not None:
            data["address"] = data["address"].strip() or None
        return data


class PatientCreateSchema(PatientWriteFields):
    name = _name(required=True)
    gender = fields.String(required=True, validate=validate.OneOf(GENDERS))


class PatientUpdateSchema(PatientWriteFields):
    """Any subset of the editable fields. The MRN is the system's: sending it is a 422."""

    name = _name()
    mrn = fields.Raw(load_only=True, metadata={"description": "Not editable: sending it is rejected."})

    @validates("mrn")
    def reject_mrn(self, value, **kwargs) -> None:
        raise ma.ValidationError("The MRN is assigned by the system and cannot be changed.")

    @ma.validates_schema
    def not_empty(self, data: dict, **kwargs) -> None:
        if not data:
            raise ma.ValidationError("Send at least one field to change.")


class PatientSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    name = fields.String()
    gender = fields.String()
    date_of_birth = fields.Date(allow_none=True)
    age = fields.Method(
        "current_age",
        metadata={
            "type": "integer",
            "nullable": True,
            "description": "Today's age when date_of_birth is known, else as recorded.",
        },
    )
    phone = fields.String(allow_none=True, metadata={"description": 'E.164, e.g. "+919845011223".'})
    address = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def current_age(self, patient) -> int | None:
        return age_of(patient)


PatientPageSchema = page_schema(PatientSchema, "PatientPage")


class PatientSearchQuery(SearchPageQuery):
    """?q= an MRN ("P000012", any case), a phone prefix, or part of the name."""

    q = fields.String(validate=[validate.Length(min=1, max=100), _no_control_characters])


class DuplicatesQuery(StrictSchema):
    """What reception typed so far; every field optional (none: no duplicates)."""

    name = fields.String(validate=[validate.Length(max=NAME_MAX), _no_control_characters])
    phone = fields.String(
        validate=[validate.Length(max=PHONE_MAX), _no_control_characters],
        metadata={
            "description": "As typed; compared in E.164 (or by its digits if it is no possible number)."
        },
    )
    date_of_birth = IsoDate(metadata={"description": "YYYY-MM-DD; gives the birth year (wins over age)."})
    age = fields.Integer(
        validate=validate.Range(min=0, max=150),
        metadata={"description": "Years; gives the birth year to within one."},
    )


DUPLICATE_REASONS = ("same_phone", "similar_name_same_birth_year", "same_name")


class DuplicateSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    name = fields.String()
    gender = fields.String()
    age = fields.Integer(allow_none=True)
    phone = fields.String(allow_none=True)
    date_of_birth = fields.String(allow_none=True, metadata={"format": "date"})
    reason = fields.String(
        metadata={
            "enum": list(DUPLICATE_REASONS),
            "description": "same_phone (same number), similar_name_same_birth_year (a similar name, "
            "accents and case ignored, born the same year, to within one when known from an age), "
            "same_name (the same name, any birth year).",
        }
    )


class DuplicatesSchema(ma.Schema):
    data = fields.List(fields.Nested(DuplicateSchema))
