"""The line's lock row: versions and tokens of a doctor's days."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.appointments.helpers import make_patient


def identity_of(user):
    from hms.auth.service import Identity

    return Identity(user.id, user.username, user.name, user.role, True, 0)


def test_a_new_days_version_starts_above_the_doctors_previous_versions(app, db, make_user):
    from hms.appointments.models import QueueDay
    from hms.appointments.service import book_appointment
    from hms.core.time import clinic_today

    clerk = identity_of(make_user("reception"))
    doctor, other = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    db.session.add(QueueDay(doctor_id=doctor.id, queue_date=clinic_today() - timedelta(days=3), version=41))
    db.session.add(QueueDay(doctor_id=other.id, queue_date=clinic_today() - timedelta(days=1), version=500))
    db.session.commit()
    book_appointment({"patient_id": patient_id, "doctor_id": doctor.id, "appointment_type": "NEW"}, clerk)
    row = db.session.scalars(
        select(QueueDay).where(QueueDay.doctor_id == doctor.id, QueueDay.queue_date == clinic_today())
    ).one()
    assert (row.last_token, row.version) == (1, 42)


def test_locking_a_queue_that_is_not_a_doctors_is_not_found(app, db, make_user):
    from hms.appointments.models import QueueDay
    from hms.core.time import clinic_today
    from hms.core.uow import unit_of_work
    from hms.errors import NotFound
    from hms.queue.line import lock_queue

    cashier = make_user("cashier")
    for not_a_doctor in (999_999, cashier.id):
        with pytest.raises(NotFound), unit_of_work():
            lock_queue(not_a_doctor, clinic_today())
    assert db.session.scalars(select(QueueDay)).all() == []  # and no day's row was left behind
