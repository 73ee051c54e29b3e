"""Login and identity schemas."""

import marshmallow as ma
from marshmallow import fields, validate

from hms.core.fields import StrictSchema


class LoginSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256))


class UserPublicSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()
    name = fields.String()
    role = fields.String()


class TokenSchema(ma.Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    user = fields.Nested(UserPublicSchema)
