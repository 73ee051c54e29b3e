"""Marshmallow fields and base schemas shared by every domain."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import marshmallow as ma
from marshmallow import fields, validate

from hms.core.models import IDEMPOTENCY_KEY_MAX

MAX_ID = 2**31 - 1
MONEY_MAX = Decimal("9999999999.99")  # NUMERIC(12,2)
TWO_PLACES = Decimal("0.01")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Money(fields.Field):
    """Money: a string with two places out; a string or number with <= 2 places in.

    Floats are read through their shortest repr (150.1 -> "150.1"), so a JSON number
    never picks up binary noise; NaN, infinities, negatives and a third decimal are
    rejected with 422.
    """

    default_error_messages = {
        "invalid": 'Must be a decimal amount with at most two decimals, e.g. "150.00".',
        "negative": "Must not be negative.",
        "too_large": "Must be at most 9999999999.99.",
        "places": "At most two decimal places.",
    }

    def __init__(self, *, allow_zero: bool = True, **kwargs):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return str(Decimal(value).quantize(TWO_PLACES, rounding=ROUND_HALF_UP))

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.make_error("invalid")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.make_error("invalid")
            value = repr(value)
        text = str(value).strip()
        # Plain decimal notation only: "1e3", "0x10", "1_000" and " 12 . 5" are malformed.
        if len(text) > 20 or not _DECIMAL_TEXT.fullmatch(text):
            raise self.make_error("invalid")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not amount.is_finite():
            raise self.make_error("invalid")
        if amount < 0:
            raise self.make_error("negative")
        if amount != amount.quantize(TWO_PLACES):
            raise self.make_error("places")
        if amount > MONEY_MAX:
            raise self.make_error("too_large")
        if not self.allow_zero and amount == 0:
            raise ma.ValidationError("Must be greater than zero.")
        return amount.quantize(TWO_PLACES)


class StrictInteger(fields.Integer):
    """A JSON integer only: strings, floats and booleans (True is an int in Python) are 422."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def Id(**kwargs) -> fields.Integer:  # noqa: N802 - reads like a field class
    """An integer id that fits the database's INTEGER (larger ones are 422, not 500)."""
    return StrictInteger(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


def Text(max_length: int = 200, **kwargs) -> fields.String:  # noqa: N802
    """A bounded string: a huge one is 422, never a storage error."""
    min_length = 0 if kwargs.get("allow_none") or not kwargs.get("required") else 1
    return fields.String(validate=validate.Length(min=min_length, max=max_length), **kwargs)


class TrimmedString(fields.String):
    """A string without surrounding whitespace; blank after trimming is 422."""

    default_error_messages = {"blank": "Must not be blank."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise self.make_error("blank")
        return text


def Trimmed(max_length: int = 200, **kwargs) -> TrimmedString:  # noqa: N802
    """A bounded, trimmed, non-blank string (a name, a label)."""
    return TrimmedString(validate=validate.Length(max=max_length), **kwargs)


class JsonBoolean(fields.Boolean):
    """A JSON true/false only: "yes", 1 or "true" in a body are 422, never guessed."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class IsoDate(fields.Date):
    """A calendar date written exactly YYYY-MM-DD (API.md). Python's date.fromisoformat
    also reads 2026-W49-4 and 20261203, which would be taken for a date nobody typed."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Timestamp(fields.DateTime):
    """An ISO 8601 timestamp out; a value that is already a string (a cached, dumped
    row) is passed through, so cached dicts can be dumped by the same schema."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)


class StrictSchema(ma.Schema):
    """Unknown fields are an error (422), so a typo is never silently ignored."""

    class Meta:
        unknown = ma.RAISE


class NoQuery(StrictSchema):
    """A route that takes no query parameters: any one is 422, as a typo is elsewhere."""


class PageQuery(StrictSchema):
    """?page=&limit= (1..100, default 20). Subclasses add their filters."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class SearchPageQuery(PageQuery):
    q = fields.String(validate=validate.Length(max=100))  # empty = no filter


class IdempotencyHeaderSchema(ma.Schema):
    """The Idempotency-Key header (other headers are ignored): POST /api/patients,
    POST /api/appointments, payments and refunds (hms.core.idempotency)."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX),
        metadata={
            "description": f"Up to {IDEMPOTENCY_KEY_MAX} characters, no control characters (400). Makes a "
            "retry safe: the same key from the same account with the same body answers the first result "
            "(with Idempotent-Replayed: true) and creates nothing new; with another body, 422. Kept 24 h."
        },
    )


class PageMeta(ma.Schema):
    page = fields.Integer()
    limit = fields.Integer()
    total = fields.Integer()


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """The list envelope {"data": [...], "meta": {...}} for one item schema."""
    return ma.Schema.from_dict(
        {"data": fields.List(fields.Nested(item_schema)), "meta": fields.Nested(PageMeta)},
        name=name,
    )
