"""The snapshot value without HTTP: its two forms, masking, the cache and its invalidation."""

from __future__ import annotations

import pytest

from hms.queue.snapshot import build_snapshot, initials
from tests.appointments.helpers import make_patient


def identity_of(user):
    from hms.auth.service import Identity

    return Identity(user.id, user.username, user.name, user.role, True, 0)


def book(doctor_id: int, patient_id: int, clerk, **extra) -> dict:
    from hms.appointments.service import book_appointment

    return book_appointment(
        {"patient_id": patient_id, "doctor_id": doctor_id, "appointment_type": "NEW", **extra}, clerk
    )


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
    assert initials(name) == expected


def test_the_masked_form_leaves_no_patient_identity(app, db, make_user):
    from hms.appointments.service import change_status
    from hms.core.time import clinic_today

    clerk = identity_of(make_user("reception"))
    doctor = make_user("doctor", name="Dr X")
    patient_ids = [make_patient(app, "Asha Kumar"), make_patient(app, "Ravi Das")]
    first = book(doctor.id, patient_ids[0], clerk)
    book(doctor.id, patient_ids[1], clerk)
    change_status(first["id"], "IN_CONSULTATION", None, clerk)
    snapshot = build_snapshot(doctor.id, clinic_today())
    masked, full = snapshot.data(masked=True), snapshot.data()
    assert [entry["patient"] for entry in masked["entries"]] == [{"initials": "A.K."}, {"initials": "R.D."}]
    assert masked["in_consultation"] == masked["entries"][0]
    text = snapshot.masked.decode()
    for patient in full["entries"]:
        assert patient["patient"]["name"] not in text and patient["patient"]["mrn"] not in text
    # Everything else is the same in both forms; the full form keeps the identity.
    for entry in full["entries"] + [full["in_consultation"]]:
        entry["patient"] = {"initials": initials(entry["patient"]["name"])}
    assert full == masked
    assert snapshot.data()["entries"][0]["patient"]["name"] == "Asha Kumar"
    assert snapshot.form(masked=True) is snapshot.masked and snapshot.form(masked=False) is snapshot.full


# --- the snapshot and its cache -----------------------------------------------------------


def test_the_snapshot_is_cached_and_invalidated_by_every_write(app, db, make_user):
    from hms.appointments.models import Appointment
    from hms.appointments.service import change_status
    from hms.core.time import clinic_today
    from hms.queue.service import get_snapshot

    reception, doctor = make_user("reception"), make_user("doctor")
    clerk = identity_of(reception)
    day = clinic_today()
    patients = [make_patient(app, f"Patient {n}") for n in range(3)]
    assert get_snapshot(doctor.id, day).data()["entries"] == []

    booked = [book(doctor.id, p, clerk) for p in patients]
    snap = get_snapshot(doctor.id, day).data()
    assert [e["token"] for e in snap["entries"]] == [1, 2, 3]
    assert get_snapshot(doctor.id, day).data(masked=True)["entries"][0]["patient"] == {"initials": "P.0."}

    # A change made behind the service's back is not seen: the snapshot IS cached...
    row = db.session.get(Appointment, booked[2]["id"])
    row.chief_complaint = "edited directly"
    row.status = "CANCELLED"
    db.session.commit()
    assert len(get_snapshot(doctor.id, day).data()["entries"]) == 3
    # ...and a service write invalidates both forms at once.
    row.status = "WAITING"
    db.session.commit()
    change_status(booked[0]["id"], "CANCELLED", "gone home", clerk)
    fresh = get_snapshot(doctor.id, day).data()
    assert [(e["token"], e["queue_position"]) for e in fresh["entries"]] == [(2, 1), (3, 2)]
    masked = get_snapshot(doctor.id, day).data(masked=True)
    assert [e["token"] for e in masked["entries"]] == [2, 3]
    assert masked["version"] == fresh["version"] == snap["version"] + 1


def test_snapshot_of_unknown_doctor_is_not_found(app, db, make_user):
    from hms.core.time import clinic_today
    from hms.errors import NotFound
    from hms.queue.service import get_snapshot

    admin = make_user("admin")
    for not_a_doctor in (999_999, admin.id):
        with pytest.raises(NotFound):
            get_snapshot(not_a_doctor, clinic_today())
        with pytest.raises(NotFound):
            build_snapshot(not_a_doctor, clinic_today())
