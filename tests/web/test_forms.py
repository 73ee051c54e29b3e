"""hms.web.forms: errors in the clinic's words, idempotency keys, CSRF."""

from __future__ import annotations

import marshmallow as ma
import pytest

from hms.errors import Conflict, InvalidState, ValidationFailed
from hms.web.forms import clinic_words, field_words, form_key


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            ValidationFailed.field("date_of_birth", "Not a valid date."),
            "Date of birth: Use the date format YYYY-MM-DD.",
        ),
        (ma.ValidationError({"name": ["Missing data for required field."]}), "Name: Fill this in."),
        (ma.ValidationError({"age": ["Not a valid integer."]}), "Age: Enter a whole number."),
        (
            ValidationFailed.field("phone", "Not a possible phone number for country code +91: too short."),
            "Phone: Check the phone number: it has too few or too many digits.",
        ),
        (Conflict("More than the due amount (0.00)."), "This bill is already paid."),
        (
            InvalidState("An appointment cannot go from COMPLETED to CANCELLED."),
            "This patient's visit has already moved on; the list is now up to date.",
        ),
        (
            Conflict("Dr. Meera Rao is not available for appointments."),
            "Dr. Meera Rao is not available for appointments.",
        ),
    ],
)
def test_clinic_words(error, words):
    assert clinic_words(error) == words


def test_field_words_keep_one_message_per_field_under_the_location():
    error = ma.ValidationError(
        {"form": {"age": ["Not a valid integer.", "other"], "gender": ["Must be one of: male."]}}
    )
    assert field_words(error) == {"age": "Enter a whole number", "gender": "Pick one of the choices"}


def test_each_rendered_form_draws_its_own_key():
    keys = {form_key() for _ in range(100)}
    assert len(keys) == 100 and all(len(key) >= 24 for key in keys)
