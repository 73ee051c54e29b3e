"""Estimated waits: the formula on its own, and the recent consultation lengths it uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest

from hms.queue.snapshot import average_consultation_minutes, estimate_waits
from tests.appointments.helpers import make_patient

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Entry(NamedTuple):
    """What estimate_waits reads of an active entry."""

    status: str
    entry_time: datetime | None = None


def test_waits_with_someone_in_the_room():
    entries = [Entry("IN_CONSULTATION", NOW - timedelta(minutes=4)), Entry("WAITING"), Entry("WAITING")]
    # avg 12: the room has 12 - 4 = 8 minutes left; then 12 per patient ahead.
    assert estimate_waits(entries, 12.0, NOW) == [0, 8, 20]


def test_waits_when_the_room_overruns_or_is_empty():
    overrun = [Entry("IN_CONSULTATION", NOW - timedelta(minutes=30)), Entry("WAITING"), Entry("WAITING")]
    assert estimate_waits(overrun, 10.0, NOW) == [0, 0, 10]
    empty_room = [Entry("WAITING"), Entry("WAITING"), Entry("WAITING")]
    assert estimate_waits(empty_room, 7.5, NOW) == [0, 8, 15]  # 7.5 rounds half to even -> 8
    # The room is not always the head of the line: only WAITING patients ahead count.
    mixed = [Entry("WAITING"), Entry("IN_CONSULTATION", NOW - timedelta(minutes=1)), Entry("WAITING")]
    assert estimate_waits(mixed, 10.0, NOW) == [9, 0, 19]
    assert estimate_waits([], 10.0, NOW) == []


def completed(app, doctor_id: int, patient_id: int, minutes_list: list[float], *, offset_days: int = 1):
    """Completed appointments (on a past date) lasting the given minutes, oldest first."""
    from hms.appointments.models import Appointment
    from hms.extensions import db

    with app.app_context():
        day = (NOW - timedelta(days=offset_days)).date()
        start = NOW - timedelta(days=offset_days)
        for token, minutes in enumerate(minutes_list, start=1):
            entered = start + timedelta(hours=token)
            db.session.add(
                Appointment(
                    patient_id=patient_id,
                    doctor_id=doctor_id,
                    appointment_date=day,
                    appointment_type="NEW",
                    status="COMPLETED",
                    token=token,
                    created_by_id=doctor_id,
                    entry_time=entered,
                    exit_time=entered + timedelta(minutes=minutes),
                )
            )
        db.session.commit()


def test_average_uses_the_last_20_completed_consultations(app, db, make_user):
    doctor, other, newcomer = make_user("doctor"), make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    # 5 old ones of 60 minutes, then 20 recent ones of 6 minutes: only the recent count.
    completed(app, doctor.id, patient_id, [60] * 5 + [6] * 20)
    completed(app, other.id, patient_id, [90] * 3)
    assert average_consultation_minutes(newcomer.id) == 10.0  # no history: the default
    assert average_consultation_minutes(doctor.id) == pytest.approx(6.0)
    assert average_consultation_minutes(other.id) == pytest.approx(90.0)


def test_average_is_clamped(app, db, make_user):
    quick, slow = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    completed(app, quick.id, patient_id, [0.1, 0.2])
    completed(app, slow.id, patient_id, [600])
    assert average_consultation_minutes(quick.id) == 1.0
    assert average_consultation_minutes(slow.id) == 120.0
