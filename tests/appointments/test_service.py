"""The appointment services without HTTP: status changes. (The queue's internals, such as
waits, masking, the snapshot cache and versions, are tested in tests/queue.)"""

from __future__ import annotations

import pytest

from tests.appointments.helpers import assert_queue_invariants, make_patient


def identity_of(user):
    from hms.auth.service import Identity

    return Identity(user.id, user.username, user.name, user.role, True, 0)


def test_change_status_checks_the_doctor(app, db, make_user):
    from hms.appointments import service
    from hms.errors import Forbidden

    clerk = identity_of(make_user("reception"))
    mine, theirs = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    booked = service.book_appointment(
        {"patient_id": patient_id, "doctor_id": theirs.id, "appointment_type": "NEW"}, clerk
    )
    with pytest.raises(Forbidden):
        service.change_status(booked["id"], "IN_CONSULTATION", None, identity_of(mine))
    moved = service.change_status(booked["id"], "IN_CONSULTATION", None, identity_of(theirs))
    assert (moved["status"], moved["queue_position"]) == ("IN_CONSULTATION", 1)
    # End this context's read transaction: on SQLite it holds the write lock, and the
    # helper reads in a context of its own.
    db.session.rollback()
    assert_queue_invariants(app, theirs.id)


def test_a_failed_change_releases_the_session(app, db, make_user):
    """A refused transition rolls back at once: the next unit of work starts clean."""
    from hms.appointments import service
    from hms.errors import InvalidState

    clerk = identity_of(make_user("reception"))
    doctor = make_user("doctor")
    booked = service.book_appointment(
        {"patient_id": make_patient(app), "doctor_id": doctor.id, "appointment_type": "NEW"}, clerk
    )
    with pytest.raises(InvalidState):
        service.change_status(booked["id"], "COMPLETED", None, clerk)
    assert not db.session().in_transaction()
    assert service.change_status(booked["id"], "CANCELLED", None, clerk)["status"] == "CANCELLED"
