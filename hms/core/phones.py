"""Phone numbers in E.164 (`+919845011223`), parsed with the `phonenumbers` library.

A number typed with a leading "+" (or an international prefix such as "00") carries its
own country code; one typed without takes the clinic's (CLINIC_COUNTRY_CODE, default
"91"): "98450 11223", "098450 11223" and "+91 98450-11223" are all `+919845011223`.

A number is accepted when its length is possible for its country and type
(`is_possible_number_with_reason` == IS_POSSIBLE), not only when it lies in a range the
library's metadata knows as allocated (`is_valid_number`): that metadata lags behind
new ranges, and a receptionist must never be unable to register a real number. A typo
that drops or adds a digit is still caught by the length.

Each number also has a `national` form: its national significant number without
leading zeros (`9845011223`), the key of the "prefix without the country code" search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

_DIGITS = re.compile(r"\D")


class PhoneError(ValueError):
    """The text is no possible phone number; str(error) says why, for a 422."""


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str  # "+919845011223"
    national: str  # "9845011223": national significant number, leading zeros dropped


@lru_cache(maxsize=32)
def region_of(country_code: str) -> str:
    """The main region (ISO 3166 code) of a country calling code: "91" -> "IN".
    RuntimeError for a code no country uses (a configuration mistake)."""
    digits = country_code.strip().lstrip("+")
    region = phonenumbers.region_code_for_country_code(int(digits)) if digits.isdigit() else "ZZ"
    if region == "ZZ":
        raise RuntimeError(
            f"CLINIC_COUNTRY_CODE {country_code!r} is no country calling code (e.g. 91, 1, 44)."
        )
    return region


_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "of a length no number there has",
    ValidationResult.INVALID_COUNTRY_CODE: "of an unknown country code",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number only: add the area code",
}


def parse_phone(text: str, country_code: str) -> Phone:
    """`text` as a Phone; PhoneError (with a message for the receptionist) if it is not a
    possible number. A number without "+" takes `country_code` (digits, e.g. "91")."""
    try:
        number = phonenumbers.parse(text.strip(), region_of(country_code))
    except NumberParseException:
        raise PhoneError("Not a phone number.") from None
    result = phonenumbers.is_possible_number_with_reason(number)
    if result != ValidationResult.IS_POSSIBLE:
        reason = _REASONS.get(result, "not a possible number")
        code = number.country_code
        raise PhoneError(f"Not a possible phone number for country code +{code}: {reason}.")
    return Phone(
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        national_key(phonenumbers.national_significant_number(number)),
    )


def national_key(digits: str) -> str:
    """The prefix-search key of a national number: digits only, leading zeros dropped
    (so a trunk "0" typed in a search, "098450", matches as "98450")."""
    return _DIGITS.sub("", digits).lstrip("0")


def search_key(stored: str) -> str:
    """The national key of a stored phone: from its E.164 form, or, for an old number
    that never parsed (kept as its digits), its digits without leading zeros."""
    if stored.startswith("+"):
        try:
            number = phonenumbers.parse(stored, None)
        except NumberParseException:
            return national_key(stored)
        return national_key(phonenumbers.national_significant_number(number))
    return national_key(stored)
