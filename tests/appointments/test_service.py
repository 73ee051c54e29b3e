"""The appointment services without HTTP: waits, masking, the snapshot cache, versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from tests.appointments.helpers import assert_queue_invariants, make_patient

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def identity_of(user):
    from hms.auth.service import Identity

    return Identity(user.id, user.username, user.name, user.role, True, 0)


def entry(status: str, entry_time=None):
    return SimpleNamespace(status=status, entry_time=entry_time)


# --- estimated waits ---------------------------------------------------------------------


def test_waits_with_someone_in_the_room():
    from hms.appointments.queue import estimate_waits

    entries = [entry("IN_CONSULTATION", NOW - timedelta(minutes=4)), entry("WAITING"), entry("WAITING")]
    # avg 12: the room has 12 - 4 = 8 minutes left; then 12 per patient ahead.
    assert estimate_waits(entries, 12.0, NOW) == [0, 8, 20]


def test_waits_when_the_room_overruns_or_is_empty():
    from hms.appointments.queue import estimate_waits

    overrun = [entry("IN_CONSULTATION", NOW - timedelta(minutes=30)), entry("WAITING"), entry("WAITING")]
    assert estimate_waits(overrun, 10.0, NOW) == [0, 0, 10]
    empty_room = [entry("WAITING"), entry("WAITING"), entry("WAITING")]
    assert estimate_waits(empty_room, 7.5, NOW) == [0, 8, 15]  # 7.5 rounds half to even -> 8
    # The room is not always the head of the line: only WAITING patients ahead count.
    mixed = [entry("WAITING"), entry("IN_CONSULTATION", NOW - timedelta(minutes=1)), entry("WAITING")]
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
    from hms.appointments.queue import average_consultation_minutes

    doctor, other, newcomer = make_user("doctor"), make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    # 5 old ones of 60 minutes, then 20 recent ones of 6 minutes: only the recent count.
    completed(app, doctor.id, patient_id, [60] * 5 + [6] * 20)
    completed(app, other.id, patient_id, [90] * 3)
    assert average_consultation_minutes(newcomer.id) == 10.0  # no history: the default
    assert average_consultation_minutes(doctor.id) == pytest.approx(6.0)
    assert average_consultation_minutes(other.id) == pytest.approx(90.0)


def test_average_is_clamped(app, db, make_user):
    from hms.appointments.queue import average_consultation_minutes

    quick, slow = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    completed(app, quick.id, patient_id, [0.1, 0.2])
    completed(app, slow.id, patient_id, [600])
    assert average_consultation_minutes(quick.id) == 1.0
    assert average_consultation_minutes(slow.id) == 120.0


# --- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Asha Kumar", "A.K."),
        ("asha kumar", "A.K."),
        ("Ravi Shankar Das", "R.D."),
        ("Madonna", "M."),
        ("  O'Brien   smith ", "O.S."),
        ("", "?"),
        ("- -", "?"),
    ],
)
def test_initials(name, expected):
    from hms.appointments.queue import initials

    assert initials(name) == expected


def test_mask_snapshot_leaves_no_patient_identity():
    from hms.appointments.queue import mask_snapshot

    patient = {"id": 7, "mrn": "P000007", "name": "Asha Kumar"}
    snapshot = {
        "doctor": {"id": 1, "name": "Dr X"},
        "entries": [{"status": "IN_CONSULTATION", "patient": patient, "token": 3}],
        "in_consultation": {"status": "IN_CONSULTATION", "patient": patient, "token": 3},
    }
    masked = mask_snapshot(snapshot)
    assert masked["entries"][0] == {"status": "IN_CONSULTATION", "patient": {"initials": "A.K."}, "token": 3}
    assert masked["in_consultation"] == masked["entries"][0]
    assert snapshot["entries"][0]["patient"] == patient  # the cached original is not touched


# --- the snapshot and its cache -----------------------------------------------------------


def test_queue_snapshot_is_cached_and_invalidated_by_every_write(app, db, make_user):
    from hms.appointments import service
    from hms.core.time import clinic_today

    reception, doctor = make_user("reception"), make_user("doctor")
    clerk = identity_of(reception)
    day = clinic_today()
    patients = [make_patient(app, f"Patient {n}") for n in range(3)]
    assert service.queue_snapshot(doctor.id, day, masked=False)["entries"] == []

    booked = [
        service.book_appointment({"patient_id": p, "doctor_id": doctor.id, "appointment_type": "NEW"}, clerk)
        for p in patients
    ]
    snap = service.queue_snapshot(doctor.id, day, masked=False)
    assert [e["token"] for e in snap["entries"]] == [1, 2, 3]
    assert service.queue_snapshot(doctor.id, day, masked=True)["entries"][0]["patient"] == {
        "initials": "P.0."
    }

    # A change made behind the service's back is not seen: the snapshot IS cached...
    from hms.appointments.models import Appointment

    row = db.session.get(Appointment, booked[2]["id"])
    row.chief_complaint = "edited directly"
    row.status = "CANCELLED"
    db.session.commit()
    assert len(service.queue_snapshot(doctor.id, day, masked=False)["entries"]) == 3
    # ...and a service write invalidates both forms at once.
    row.status = "WAITING"
    db.session.commit()
    service.change_status(booked[0]["id"], "CANCELLED", "gone home", clerk)
    fresh = service.queue_snapshot(doctor.id, day, masked=False)
    assert [(e["token"], e["queue_position"]) for e in fresh["entries"]] == [(2, 1), (3, 2)]
    masked = service.queue_snapshot(doctor.id, day, masked=True)
    assert [e["token"] for e in masked["entries"]] == [2, 3]
    assert masked["version"] == fresh["version"] == snap["version"] + 1


def test_snapshot_of_unknown_doctor_is_not_found(app, db, make_user):
    from hms.appointments.service import queue_snapshot
    from hms.core.time import clinic_today
    from hms.errors import NotFound

    admin = make_user("admin")
    with pytest.raises(NotFound):
        queue_snapshot(999_999, clinic_today(), masked=True)
    with pytest.raises(NotFound):
        queue_snapshot(admin.id, clinic_today(), masked=False)


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


def test_call_next_and_change_status_check_the_doctor(app, db, make_user):
    from hms.appointments import service
    from hms.errors import Forbidden

    clerk = identity_of(make_user("reception"))
    mine, theirs = make_user("doctor"), make_user("doctor")
    patient_id = make_patient(app)
    booked = service.book_appointment(
        {"patient_id": patient_id, "doctor_id": theirs.id, "appointment_type": "NEW"}, clerk
    )
    with pytest.raises(Forbidden):
        service.call_next(theirs.id, identity_of(mine))
    with pytest.raises(Forbidden):
        service.change_status(booked["id"], "IN_CONSULTATION", None, identity_of(mine))
    snap = service.call_next(theirs.id, identity_of(theirs)).data
    assert snap["in_consultation"]["appointment_id"] == booked["id"]
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
