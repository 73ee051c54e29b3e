"""The queue's operations without HTTP."""

from __future__ import annotations

import pytest

from tests.appointments.helpers import assert_queue_invariants, make_patient


def identity_of(user):
    from hms.auth.service import Identity

    return Identity(user.id, user.username, user.name, user.role, True, 0)


def test_call_next_checks_the_doctor(app, db, make_user):
    from hms.appointments.service import book_appointment
    from hms.errors import Forbidden
    from hms.queue.service import call_next

    clerk = identity_of(make_user("reception"))
    mine, theirs = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    booked = book_appointment(
        {"patient_id": patient_id, "doctor_id": theirs.id, "appointment_type": "NEW"}, clerk
    )
    with pytest.raises(Forbidden):
        call_next(theirs.id, identity_of(mine))
    snap = call_next(theirs.id, identity_of(theirs)).data()
    assert snap["in_consultation"]["appointment_id"] == booked["id"]
    # End this context's read transaction: on SQLite it holds the write lock, and the
    # helper reads in a context of its own.
    db.session.rollback()
    assert_queue_invariants(app, theirs.id)


def test_call_next_with_nobody_waiting_changes_nothing(app, db, make_user):
    from hms.appointments.models import QueueDay
    from hms.appointments.service import book_appointment
    from hms.core.time import clinic_today
    from hms.errors import Conflict
    from hms.queue.service import call_next, get_snapshot

    clerk = identity_of(make_user("reception"))
    doctor = make_user("doctor")
    book_appointment(
        {"patient_id": make_patient(app), "doctor_id": doctor.id, "appointment_type": "NEW"}, clerk
    )
    in_room = call_next(doctor.id, clerk).data()
    with pytest.raises(Conflict):
        call_next(doctor.id, clerk)  # the one in the room stays: nobody to call in after them
    assert not db.session().in_transaction()
    assert get_snapshot(doctor.id, clinic_today()).data() == in_room
    assert db.session.get(QueueDay, (doctor.id, clinic_today())).version == in_room["version"]
