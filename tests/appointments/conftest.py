"""Fixtures of the appointment tests: a doctor with known fees, patients on demand."""

from __future__ import annotations

import pytest

from tests.appointments.helpers import make_patient


@pytest.fixture
def new_patient(app):
    """new_patient("Asha Kumar") -> a new patient's id."""

    def make(name: str = "Asha Kumar", **fields) -> int:
        return make_patient(app, name, **fields)

    return make


@pytest.fixture
def dr(make_user):
    """A doctor (the account) with fees 500.00 + 100.00."""
    return make_user("doctor", name="Dr Meera Rao", consultation_fee="500.00", hospital_fee="100.00")
