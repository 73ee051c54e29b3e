"""What every page form shares: the CSRF token, the idempotency key, errors in the
clinic's words.

- `csrf_token()` is the session's token (made on first use); every form that changes
  something posts it back as `csrf_token` and the view checks it with `csrf_ok()`.
  A cross-site form cannot know it (and the session cookie is SameSite=Lax besides).
- `form_key()` draws a new idempotency key each time a form is rendered (a hidden
  `idempotency_key` input). A double click, a resubmit or a retry after a timeout posts
  the same key again, and the service answers the first result instead of creating a
  second patient or booking. `posted_key()` reads it back (None if missing or malformed).
- `clinic_words(error)` turns a service error (hms.errors, with per-field messages) or a
  marshmallow ValidationError into one sentence a receptionist can act on: the field's
  label, then what to do. The table below is small on purpose: a message it does not
  know is shown as the service wrote it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping

import marshmallow as ma
from flask import request, session

from hms.errors import HMSError

FORM_EXPIRED = "This form has expired; please try again."
IDEMPOTENCY_FIELD = "idempotency_key"
_KEY = re.compile(r"[A-Za-z0-9_-]{16,255}")


def csrf_token() -> str:
    """The session's CSRF token, for the forms of the pages (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    """The form posted the session's own CSRF token (a cross-site form cannot know it)."""
    expected, sent = session.get("csrf"), request.form.get("csrf_token", "")
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), sent.encode())


def form_key() -> str:
    """A fresh idempotency key for one rendered form."""
    return secrets.token_urlsafe(24)


def posted_key() -> str | None:
    """The form's idempotency key as posted, or None if it is missing or malformed."""
    key = request.form.get(IDEMPOTENCY_FIELD, "")
    return key if _KEY.fullmatch(key) else None


# --- errors in the clinic's words ------------------------------------------------------

# The labels the screens show for the services' field names.
FIELD_LABELS: dict[str, str] = {
    "name": "Name",
    "gender": "Gender",
    "date_of_birth": "Date of birth",
    "age": "Age",
    "phone": "Phone",
    "address": "Address",
    "patient_id": "Patient",
    "doctor_id": "Doctor",
    "appointment_type": "Type",
    "chief_complaint": "Chief complaint",
    "priority": "Priority",
    "appointment_date": "Date",
    "status": "Status",
    "reason": "Reason",
    "amount": "Amount",
    "method": "Method",
    "reference": "Reference",
}

# Service or marshmallow message (a prefix of it, case-insensitive) -> what to tell staff.
CLINIC_WORDS: tuple[tuple[str, str], ...] = (
    ("Not a valid date", "Use the date format YYYY-MM-DD"),
    ("Not a valid integer", "Enter a whole number"),
    ("Not a valid number", "Enter a number"),
    ("Missing data for required field", "Fill this in"),
    ("Field may not be null", "Fill this in"),
    ("Must not be blank", "Fill this in"),
    ("Must be one of", "Pick one of the choices"),
    ("Must be greater than or equal to 0 and less than or equal to 150", "Enter an age from 0 to 150"),
    ("Must not be in the future", "A date of birth cannot be in the future"),
    ("Must not be before 1900-01-01", "Use a date of birth after 1900"),
    ("Does not agree with date_of_birth", "The age does not match the date of birth; fill in one of them"),
    ("3 to 20 characters", "Use 3 to 20 digits; spaces, +, - and brackets are fine"),
    ("3 to 30 characters", "Use digits; spaces, +, -, brackets, dots and slashes are fine"),
    ("Not a phone number", "Check the phone number"),
    ("Not a possible phone number", "Check the phone number: it has too few or too many digits"),
    ('"+" is only allowed at the start', "Put + only at the start of the number"),
    ("At least 3 digits", "Use at least 3 digits"),
    ("Not a valid phone number", "Check the phone number"),
    ("No patient with this id", "Find the patient again: this one was not found"),
    ("No active doctor with this id", "Pick a doctor from the list"),
    ("Must not be in the past", "Pick today or a later date"),
    ("Must not contain control characters", "Remove the special characters"),
    ("Longer than maximum length", "This is too long"),
    ("More than the due amount (0.00)", "This bill is already paid"),
    (
        "An appointment cannot go from NO_SHOW to CANCELLED",
        "This patient is marked no-show: recall them first",
    ),
    (
        "An appointment cannot go from",
        "This patient's visit has already moved on; the list is now up to date",
    ),
    ("Nobody is waiting in this queue", "Nobody is waiting"),
)


def _words(message: str) -> str:
    lowered = message.lower()
    for prefix, words in CLINIC_WORDS:
        if lowered.startswith(prefix.lower()):
            return words
    return message.rstrip(".")


def _flatten(messages, field: str | None = None):
    """(field, message) pairs from marshmallow's nested {field: [message]} shape."""
    if isinstance(messages, str):
        yield field, messages
    elif isinstance(messages, Mapping):
        for key, value in messages.items():
            # flask-smorest nests field errors under the location ("json", "form").
            inner = field if key in ("json", "form", "query", "_schema") else key
            yield from _flatten(value, inner)
    elif isinstance(messages, list | tuple):
        for value in messages:
            yield from _flatten(value, field)


def field_words(error: HMSError | ma.ValidationError) -> dict[str, str]:
    """{field: what to do} for the errors tied to a field (the first message of each)."""
    messages = error.messages if isinstance(error, ma.ValidationError) else (error.errors or {})
    words: dict[str, str] = {}
    for field, message in _flatten(messages):
        if field is not None and field not in words:
            words[field] = _words(message)
    return words


def clinic_words(error: HMSError | ma.ValidationError) -> str:
    """One sentence for staff: each field's label and what to do, or the error's message."""
    fields = field_words(error)
    if fields:
        return (
            "; ".join(
                f"{FIELD_LABELS.get(field, field.replace('_', ' ').capitalize())}: {words}"
                for field, words in fields.items()
            )
            + "."
        )
    message = error.message if isinstance(error, HMSError) else str(error.messages)
    return _words(message) + "."
