"""Reading a request's input, once, with limits: the JSON body, the query string, forms.

Every JSON body is decoded by `decode_json` (it is `HMSRequest.get_json`'s decoder, and
the arguments parser of hms.core.blueprint reads bodies through `get_json`), and every
query string and form is checked by `reject_unreadable_query_and_form` before the view,
after authentication (401 still comes first). No field is left to find out:

- JSON that cannot be decoded within the limits is 400: invalid UTF-8 or syntax, more
  than MAX_JSON_DEPTH nested arrays and objects (Python's decoder would recurse into a
  RecursionError), an integer too long for int() (over 4,300 digits, a ValueError), or
  NaN and Infinity (not JSON).
- A NUL or an unpaired surrogate in any JSON string or key is 422: PostgreSQL cannot
  store the one and UTF-8 cannot encode the other.
- A query string or form with a NUL, or a query string whose percent-escapes are not
  UTF-8 (which is how a surrogate would arrive), is 422.

Cheap on purpose, as it runs on every write: a NUL or a surrogate can only be written in
JSON as a \\u0000 or \\udXXX escape (raw control characters are invalid JSON, raw
surrogates invalid UTF-8), so a body without one needs no scan for them; and a body with
at most MAX_JSON_DEPTH brackets cannot be too deep. The usual body costs one json.loads
and five substring searches; a large one (a bill of many lines) a walk over its brackets
in a few C-speed passes; nothing walks the decoded value unless it is being rejected.
MAX_CONTENT_LENGTH bounds the size (413).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, Request, request

from hms.errors import http_error

MAX_JSON_DEPTH = 32
TEXT_MESSAGE = "Must not contain NUL characters or unpaired surrogates."
QUERY_MESSAGE = "Must not contain NUL characters; percent-escapes must be UTF-8."
FORM_MESSAGE = "Must not contain NUL characters."
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# The depth walk works on a body's bytes, at C speed: it keeps brackets (every opening one
# as "(", every closing one as ")") and quotes, and drops everything else.
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKET_OR_QUOTE = bytes(code for code in range(256) if code not in b'[]{}"')
# A \u escape that may write a NUL or half a surrogate pair; the second, the low half that
# must follow a high one.
_NUL_OR_SURROGATE_ESCAPE = re.compile(r"\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_LOW_SURROGATE_ESCAPE = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class UnreadableInput(ValueError):
    """Input refused before any schema sees it. A ValueError, as Request.get_json expects."""

    def __init__(self, status: int, errors: list | dict):
        super().__init__(errors)
        self.status = status
        self.errors = errors


def _reject_constant(name: str):
    raise UnreadableInput(400, [f"{name} is not a JSON number."])


# Built once: json.loads with keyword arguments would build a decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _too_deep(body: bytes) -> bool:
    """More than MAX_JSON_DEPTH nested arrays and objects (or unbalanced brackets)?"""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    if b"\\" in body:
        # Without escaped backslashes, then escaped quotes, every string is between two quotes.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(_BRACKETS, _NOT_BRACKET_OR_QUOTE)
    brackets = skeleton.replace(b'""', b"")  # the strings, when none holds a bracket
    if b'"' in brackets:  # some string does: keep what is outside the strings
        brackets = b"".join(skeleton.split(b'"')[::2])
    for _ in range(MAX_JSON_DEPTH):  # each pass takes away the innermost level
        shorter = brackets.replace(b"()", b"")
        if not shorter:
            return False
        if len(shorter) == len(brackets):  # unbalanced: not JSON anyway
            return True
        brackets = shorter
    return True


def _has_bad_escape(text: str) -> bool:
    """Does this (valid JSON) text write a NUL or an unpaired surrogate?

    Substring checks at C speed first: most bodies, even with escapes (é is \\u00e9), have
    no \\u0000 or \\udXXX and stop there. Then each candidate escape: skipped when its
    backslash is itself escaped (an odd run of backslashes before it), bad when it is a
    NUL or a surrogate half that is not a high one followed by a low one."""
    if "\\u0000" not in text and "\\ud" not in text and "\\uD" not in text:
        return False
    low_half_at = -1
    for match in _NUL_OR_SURROGATE_ESCAPE.finditer(text):
        start = match.start()
        if start == low_half_at:
            continue
        backslashes = 0
        while start - backslashes > 0 and text[start - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes % 2:
            continue  # "\\\\u0000" is a backslash and the text u0000
        unit = int(match.group(1), 16)
        if unit == 0 or unit >= 0xDC00 or not _LOW_SURROGATE_ESCAPE.match(text, match.end()):
            return True
        low_half_at = match.end()
    return False


def _bad_text_errors(value: Any) -> dict:
    """Marshmallow-shaped errors naming the first string or key with a NUL or a surrogate."""

    def find(node: Any, path: tuple) -> tuple | None:
        if isinstance(node, str):
            return path if _BAD_CHARACTER.search(node) else None
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in items:
            if isinstance(key, str) and _BAD_CHARACTER.search(key):
                return (*path, "_schema")  # the key itself: named by its parent
            found = find(item, (*path, key))
            if found is not None:
                return found
        return None

    path = find(value, ()) or ("_schema",)
    errors: Any = [TEXT_MESSAGE]
    for key in reversed(path):
        errors = {key: errors}
    return errors


def decode_json(data: bytes | str) -> Any:
    """Decode a request body within the limits; raise UnreadableInput (or another ValueError)."""
    if isinstance(data, bytes):
        text = data.decode("utf-8")
    else:
        text, data = data, data.encode("utf-8", "surrogatepass")
    if _too_deep(data):
        raise UnreadableInput(400, [f"Nested deeper than {MAX_JSON_DEPTH} arrays and objects."])
    try:
        value = _DECODER.decode(text)
    except (json.JSONDecodeError, UnreadableInput):
        raise
    except (ValueError, RecursionError):
        # int() refuses more than sys.get_int_max_str_digits() digits; the depth check makes
        # RecursionError unreachable, kept as a backstop.
        raise UnreadableInput(400, ["A number has too many digits."]) from None
    if _has_bad_escape(text):
        raise UnreadableInput(422, _bad_text_errors(value))
    return value


class _BodyJSON:
    """`HMSRequest.json_module`: get_json decodes with `decode_json`."""

    loads = staticmethod(decode_json)
    dumps = staticmethod(json.dumps)


class HMSRequest(Request):
    """Flask's request, decoding JSON bodies with limits and answering API.md's error body."""

    @property
    def json_module(self) -> type[_BodyJSON]:
        return _BodyJSON

    @json_module.setter
    def json_module(self, provider) -> None:
        """Flask hands every request the app's JSON provider; a body keeps decode_json."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            return super().on_json_loading_failed(e)  # not JSON at all: 415
        if isinstance(e, UnreadableInput):
            message = (
                "Invalid input: see errors." if e.status == 422 else "Malformed request body: see errors."
            )
            raise http_error(e.status, message, {"json": e.errors})
        raise http_error(400, "Malformed request body: see errors.", {"json": ["Invalid JSON body."]})


def _query_errors(raw: bytes) -> dict | None:
    decoded = unquote_to_bytes(raw) if b"%" in raw else raw
    if b"\x00" not in decoded:
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return None
    errors = {}
    for part in raw.split(b"&"):
        name, _, value = part.partition(b"=")
        name_bytes, value_bytes = unquote_to_bytes(name), unquote_to_bytes(value)
        try:
            name_bytes.decode("utf-8"), value_bytes.decode("utf-8")
            clean = b"\x00" not in name_bytes + value_bytes
        except UnicodeDecodeError:
            clean = False
        if not clean:
            label = name_bytes.decode("utf-8", "replace").replace("\x00", "\ufffd") or "_schema"
            errors[label] = [QUERY_MESSAGE]
    return errors or {"_schema": [QUERY_MESSAGE]}


def reject_unreadable_query_and_form() -> None:
    """Before each view (after authentication): 422 for a query string or form it cannot use."""
    if request.routing_exception is not None:
        return  # 404/405 answer as usual
    environ = request.environ
    # Read from the WSGI environ: request.query_string and request.mimetype would build
    # (and parse) on every request what only a request with a query or a form needs.
    if environ.get("QUERY_STRING"):
        errors = _query_errors(request.query_string)
        if errors:
            raise http_error(422, "Invalid input: see errors.", {"query": errors})
    content_type = environ.get("CONTENT_TYPE")
    if content_type and content_type.lower().startswith(_FORM_TYPES):
        errors = {
            (name.replace("\x00", "\ufffd") or "_schema"): [FORM_MESSAGE]
            for name, value in request.form.items(multi=True)
            if "\x00" in name or "\x00" in value
        }
        if errors:
            raise http_error(422, "Invalid input: see errors.", {"form": errors})


def init_inputs(app: Flask) -> None:
    """Use HMSRequest and check queries and forms; call after the access hook is registered."""
    app.request_class = HMSRequest
    app.before_request(reject_unreadable_query_and_form)
