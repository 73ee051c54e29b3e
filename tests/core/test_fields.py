"""The shared Money field: strings with two places out, strict decimals in."""

from decimal import Decimal

import pytest
from marshmallow import ValidationError

from hms.core.fields import Money


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("150", "150.00"),
        ("150.5", "150.50"),
        (150.25, "150.25"),
        (10, "10.00"),
        (" 12.5 ", "12.50"),
        ("0", "0.00"),
    ],
)
def test_money_accepts_plain_decimals(raw, expected):
    assert Money().deserialize(raw) == Decimal(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "1e3",
        "0x10",
        "1_000",
        "-1",
        "-0.01",
        "1.005",
        1.005,
        "abc",
        "",
        "NaN",
        float("nan"),
        float("inf"),
        True,
        None,
        [],
        {},
        "10000000000.00",
        1e16,
    ],
)
def test_money_rejects_malformed_negative_and_three_places(raw):
    with pytest.raises(ValidationError):
        Money(allow_none=False).deserialize(raw)


def test_money_can_refuse_zero():
    with pytest.raises(ValidationError):
        Money(allow_zero=False).deserialize("0.00")


def test_money_serializes_two_places():
    assert Money()._serialize(Decimal("5"), "x", None) == "5.00"
    assert Money()._serialize(None, "x", None) is None
