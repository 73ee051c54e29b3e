"""The flask-smorest Blueprint every API module uses, and its arguments parser.

`arguments()` given a schema class instantiates it once, at decoration: webargs would
otherwise build a new schema instance for every request it parses (measured: about 5%
of a small request's CPU). Schemas here keep no per-request state, so one instance
serves every request.

The parser reads JSON bodies through the request's `get_json` (hms.core.inputs: decoded
once, with limits, and shared with any earlier reader of the same body), makes unknown
query parameters follow each schema's Meta.unknown (RAISE for ours, so `?stauts=WAITING`
is a 422, not an unfiltered list; webargs would drop them silently), and refuses a
header it reads that carries control characters (400).
"""

from __future__ import annotations

import re

import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from hms.errors import http_error

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ArgumentsParser(FlaskParser):
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def load_json(self, req, schema):
        if not is_json_request(req) or not req.get_data(cache=True):
            return core.missing
        return req.get_json()

    def load_headers(self, req, schema):
        errors = {}
        for field in schema.fields.values():
            name = field.data_key or field.name
            value = req.headers.get(name)
            if value and _CONTROL.search(value):
                errors[name] = ["Must not contain control characters."]
        if errors:
            raise http_error(400, "Malformed request header: see errors.", {"headers": errors})
        return super().load_headers(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ArgumentsParser()

    def arguments(self, schema, *args, **kwargs):
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)
