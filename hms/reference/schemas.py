"""Schemas of the reference resources, generated from the registry and the models.

A field's kind, maximum length and whether it is required come from its column: a
NUMERIC column is Money, a VARCHAR column a trimmed string of at most its length; a
NOT NULL column is required on create, a nullable one may be sent as null.
"""

from __future__ import annotations

from dataclasses import dataclass

import marshmallow as ma
from marshmallow import fields, validates_schema
from sqlalchemy import Numeric, String

from hms.core.fields import Money, StrictSchema, Timestamp, Trimmed, page_schema
from hms.reference.service import Resource


class _UpdateBase(StrictSchema):
    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send at least one field to change.")


@dataclass(frozen=True)
class ResourceSchemas:
    item: type[ma.Schema]
    page: type[ma.Schema]
    create: type[ma.Schema]
    update: type[ma.Schema]


def schemas_for(resource: Resource) -> ResourceSchemas:
    prefix = resource.schema_prefix
    columns = resource.model.__table__.columns
    item_fields: dict[str, fields.Field] = {"id": fields.Integer()}
    create_fields: dict[str, fields.Field] = {}
    update_fields: dict[str, fields.Field] = {}
    for name in resource.fields:
        column = columns[name]
        item_fields[name] = _output_field(column)
        create_fields[name] = _input_field(column, creating=True)
        update_fields[name] = _input_field(column, creating=False)
    item_fields["created_at"] = Timestamp()
    item = type(f"{prefix}Schema", (ma.Schema,), item_fields)
    return ResourceSchemas(
        item=item,
        page=page_schema(item, f"{prefix}Page"),
        create=type(f"{prefix}CreateSchema", (StrictSchema,), create_fields),
        update=type(f"{prefix}UpdateSchema", (_UpdateBase,), update_fields),
    )


def _input_field(column, *, creating: bool) -> fields.Field:
    required = creating and not column.nullable
    if isinstance(column.type, Numeric):
        return Money(required=required)
    if isinstance(column.type, String):
        return Trimmed(column.type.length, required=required, allow_none=column.nullable)
    raise TypeError(f"no input field for column {column.name} of type {column.type}")


def _output_field(column) -> fields.Field:
    if isinstance(column.type, Numeric):
        return Money(allow_none=column.nullable)
    return fields.String(allow_none=column.nullable)
