"""The role matrix's small API: unknown actions fail loudly, and the tables stay consistent.

Which route admits which roles is checked against API.md in tests/auth/test_access.py."""

from __future__ import annotations

import pytest

from hms.core import roles
from hms.core.access import allow, page


def test_roles_and_the_object_level_rules_of_api_md():
    assert roles.ROLES == ("admin", "reception", "doctor", "cashier", "display")
    # "own appointments" cells: a doctor changes statuses, prescribes and bills only their own.
    for action in ("appointments.change_status", "prescriptions.write", "bills.write"):
        assert roles.may("doctor", action) and roles.own_records_only("doctor", action)
        assert not roles.own_records_only("admin", action)
    # "masked only": the display, and nobody else, sees the queue as initials.
    assert [role for role in roles.ROLES if roles.sees_masked_queue(role)] == ["display"]
    assert roles.may("display", "queue.read") and not roles.may("display", "patients.read")


@pytest.mark.parametrize(
    "ask",
    [
        lambda: roles.roles_for("bills.paye"),
        lambda: roles.may("admin", "bills.paye"),
        lambda: roles.own_records_only("doctor", "bills.paye"),
        lambda: allow("bills.paye"),
        lambda: page("bills.paye"),
    ],
)
def test_a_misspelt_action_fails_instead_of_reading_as_nobody_or_everybody(ask):
    with pytest.raises(KeyError, match="bills.paye"):
        ask()


def test_allow_needs_an_action():
    with pytest.raises(ValueError):
        allow()


@pytest.mark.parametrize(
    ("table", "value", "message"),
    [
        ("MATRIX", {**roles.MATRIX, "bills.pay": frozenset({"admin", "nurse"})}, "unknown roles"),
        ("OWN_RECORDS_ONLY", {**roles.OWN_RECORDS_ONLY, "bills.pay": frozenset({"doctor"})}, "not granted"),
        ("MASKED_QUEUE", frozenset({"display", "cashier", "nurse"}), "queue.read"),
    ],
)
def test_the_tables_are_checked_against_each_other(monkeypatch, table, value, message):
    roles.check_matrix()
    monkeypatch.setattr(roles, table, value)
    with pytest.raises(ValueError, match=message):
        roles.check_matrix()
