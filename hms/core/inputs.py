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

# What the depth walk keeps of a body: brackets and quotes (non-ASCII text is kept too,
# but only inside strings, which the walk then drops).
_SKELETON = str.maketrans(dict.fromkeys(chr(code) for code in range(128) if chr(code) not in '[]{}"'))
_INNERMOST = re.compile(r"\[\]|\{\}")
# A \u escape at the start of a run of backslashes of even length (an escaped backslash
# followed by "u0000" is text, not an escape). A valid surrogate pair is matched whole, so
# its low half is never taken for a lone one; group 1 is a NUL or an unpaired surrogate.
_BAD_ESCAPE = re.compile(
    r"(?<!\\)(?:\\\\)*\\u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|(0000|[dD][89a-fA-F][0-9a-fA-F]{2}))"
)
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


def _too_deep(text: str) -> bool:
    """More than MAX_JSON_DEPTH nested arrays and objects (or unbalanced brackets)?"""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    if "\\" in text:
        # Without escaped backslashes, then escaped quotes, every string is between two quotes.
        text = text.replace("\\\\", "").replace('\\"', "")
    brackets = "".join(text.translate(_SKELETON).split('"')[::2])  # those outside the strings
    for _ in range(MAX_JSON_DEPTH):
        brackets, removed = _INNERMOST.subn("", brackets)
        if not brackets:
            return False
        if not removed:  # unbalanced: not JSON anyway
            return True
    return True


def _may_hold_bad_escape(text: str) -> bool:
    """Substring checks at C speed: most bodies, even with escapes (é is \\u00e9), skip the scan."""
    return "\\u0000" in text or "\\ud" in text or "\\uD" in text


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
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if _too_deep(text):
        raise UnreadableInput(400, [f"Nested deeper than {MAX_JSON_DEPTH} arrays and objects."])
    try:
        value = _DECODER.decode(text)
    except (json.JSONDecodeError, UnreadableInput):
        raise
    except (ValueError, RecursionError):
        # int() refuses more than sys.get_int_max_str_digits() digits; the depth check makes
        # RecursionError unreachable, kept as a backstop.
        raise UnreadableInput(400, ["A number has too many digits."]) from None
    if _may_hold_bad_escape(text) and any(match.group(1) for match in _BAD_ESCAPE.finditer(text)):
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
    raw = request.query_string
    if raw:
        errors = _query_errors(raw)
        if errors:
            raise http_error(422, "Invalid input: see errors.", {"query": errors})
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
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
