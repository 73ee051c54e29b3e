"""The staff service: the cached doctor fees the appointments domain books with."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from hms.auth.service import Identity
from hms.errors import Conflict, ValidationFailed


def fees(app, doctor_id):
    from hms.staff.service import get_doctor_fees

    with app.app_context():
        return get_doctor_fees(doctor_id)


def admin_identity(user) -> Identity:
    return Identity(user.id, user.username, user.name, user.role, user.active, user.token_epoch)


def test_get_doctor_fees_is_plain_data(app, make_user):
    doc = make_user("doctor", name="Dr. Fee", consultation_fee="450.5", hospital_fee="0", is_available=False)
    assert fees(app, doc.id) == {
        "id": doc.id,
        "name": "Dr. Fee",
        "consultation_fee": "450.50",
        "hospital_fee": "0.00",
        "is_available": False,
        "active": True,
    }


def test_get_doctor_fees_is_none_for_non_doctors(app, make_user):
    clerk = make_user("reception")
    assert fees(app, clerk.id) is None
    assert fees(app, 987654) is None


def test_get_doctor_fees_reports_a_disabled_doctor(app, make_user):
    doc = make_user("doctor", active=False)
    assert fees(app, doc.id)["active"] is False


def test_get_doctor_fees_reads_through_the_cache(app, make_user, count_queries):
    doc = make_user("doctor", consultation_fee="100.00")
    assert fees(app, doc.id)["consultation_fee"] == "100.00"
    with count_queries() as counter:
        for _ in range(25):  # booking many patients with the same doctor
            assert fees(app, doc.id)["consultation_fee"] == "100.00"
    assert counter.count == 0


def test_a_staff_write_refreshes_the_fees_at_once(app, make_user):
    from hms.staff.service import update_staff

    admin = make_user("admin")
    doc = make_user("doctor", consultation_fee="100.00")
    assert fees(app, doc.id)["consultation_fee"] == "100.00"
    with app.app_context():
        update_staff(doc.id, {"consultation_fee": 300, "is_available": False}, admin_identity(admin))
    assert fees(app, doc.id)["consultation_fee"] == "300.00"
    assert fees(app, doc.id)["is_available"] is False


def test_a_change_outside_the_service_waits_for_the_cache(app, make_user):
    """Proves the cache is real: only a service write (which invalidates) is seen at once."""
    from hms.auth.models import User
    from hms.extensions import db
    from hms.staff.service import forget_doctors

    doc = make_user("doctor", consultation_fee="100.00")
    assert fees(app, doc.id)["consultation_fee"] == "100.00"
    with app.app_context():
        db.session.execute(update(User).where(User.id == doc.id).values(consultation_fee=5))
        db.session.commit()
    assert fees(app, doc.id)["consultation_fee"] == "100.00"
    with app.app_context():
        forget_doctors()
    assert fees(app, doc.id)["consultation_fee"] == "5.00"


def test_a_load_that_raced_a_write_is_never_served(app, make_user):
    """A reader that loaded the row before a write's commit stores it under the old tag."""
    from hms.core.cache import cache_set, generation
    from hms.staff.service import DOCTORS_CACHE_NAMESPACE, update_staff

    admin = make_user("admin")
    doc = make_user("doctor", consultation_fee="100.00")
    with app.app_context():
        stale_key, old_tag = f"doctor-profile:{doc.id}", generation(DOCTORS_CACHE_NAMESPACE)
        stale = {
            "id": doc.id,
            "name": doc.name,
            "department": None,
            "specialization": None,
            "consultation_fee": "100.00",
            "hospital_fee": "100.00",
            "is_available": True,
            "active": True,
        }
        update_staff(doc.id, {"consultation_fee": 200}, admin_identity(admin))
        cache_set(stale_key, (old_tag, stale), 300)  # the slow reader stores what it loaded
    assert fees(app, doc.id)["consultation_fee"] == "200.00"


def test_update_staff_rejects_a_caller_disabled_meanwhile(app, make_user):
    """Two admins disabling each other at once: the second finds itself disabled (409)."""
    from hms.errors import Conflict
    from hms.staff.service import update_staff

    first, second = make_user("admin"), make_user("admin")
    with app.app_context():
        update_staff(second.id, {"active": False}, admin_identity(first))
    with app.app_context(), pytest.raises(Conflict):
        # `second` was authenticated before it was disabled.
        update_staff(first.id, {"active": False}, admin_identity(second))
    with app.app_context():
        from hms.auth.models import User
        from hms.extensions import db

        assert db.session.get(User, first.id).active is True


def test_a_write_is_seen_by_the_next_read_in_the_same_context(app, make_user):
    """No per-request memo can hide a staff write from a later read of the same request
    (a request that needs the profile twice passes it along instead)."""
    from hms.staff.service import get_doctor_fees, update_staff

    admin = make_user("admin")
    doc = make_user("doctor", consultation_fee="100.00")
    with app.app_context():
        assert get_doctor_fees(doc.id)["consultation_fee"] == "100.00"
        update_staff(doc.id, {"consultation_fee": 300}, admin_identity(admin))
        assert get_doctor_fees(doc.id)["consultation_fee"] == "300.00"


def test_a_renamed_doctors_queues_are_announced_with_the_new_profile(app, make_user, monkeypatch):
    """The queue change runs after the commit and after the doctors' cache is refreshed:
    a stream event built then shows the new name, never the cached old one."""
    from hms.core.time import clinic_today
    from hms.core.uow import unit_of_work
    from hms.queue import changes
    from hms.queue.line import lock_queue
    from hms.staff.service import get_doctor_fees, update_staff

    admin = make_user("admin")
    doc = make_user("doctor", name="Dr Old")
    announced = []
    monkeypatch.setattr(changes, "publish", lambda change: announced.append(get_doctor_fees(doc.id)["name"]))
    with app.app_context():
        with unit_of_work():
            lock_queue(doc.id, clinic_today())  # the doctor has a queue today
        assert get_doctor_fees(doc.id)["name"] == "Dr Old"  # cached
        announced.clear()
        update_staff(doc.id, {"name": "Dr New"}, admin_identity(admin))
    assert announced == ["Dr New"]


# --- create_staff_once: the admin's console adds one account per rendered form ----------


def _create_once(app, admin_user, key, **fields):
    from hms.staff.service import create_staff_once

    data = {"username": "asha", "password": "front-desk-1", "name": "Asha Rao", "role": "reception", **fields}
    with app.app_context():
        return create_staff_once(data, admin_identity(admin_user), key)


def _accounts(app, username):
    from sqlalchemy import func, select

    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).where(User.username == username))


def test_create_staff_once_replays_the_first_answer(app, make_user):
    admin_user = make_user("admin")
    first = _create_once(app, admin_user, "key-0123456789abcdef")
    again = _create_once(app, admin_user, "key-0123456789abcdef")
    assert first.status == 201 and not first.replayed
    assert again.replayed and again.body == first.body
    assert first.body == {"id": first.body["id"], "username": "asha", "name": "Asha Rao", "role": "reception"}
    assert _accounts(app, "asha") == 1


def test_create_staff_once_keeps_no_password_in_the_key_record(app, make_user):
    from sqlalchemy import select

    from hms.core.idempotency import fingerprint
    from hms.core.models import IdempotencyRecord
    from hms.extensions import db

    admin_user = make_user("admin")
    _create_once(app, admin_user, "key-0123456789abcdef")
    with app.app_context():
        record = db.session.scalar(select(IdempotencyRecord))
        assert "front-desk-1" not in (record.response_body or "")
        without = {"username": "asha", "name": "Asha Rao", "role": "reception"}
        assert record.fingerprint == fingerprint("staff.create", None, without)


def test_create_staff_once_with_another_body_under_the_key_is_refused(app, make_user):
    admin_user = make_user("admin")
    _create_once(app, admin_user, "key-0123456789abcdef")
    with pytest.raises(ValidationFailed):
        _create_once(app, admin_user, "key-0123456789abcdef", username="someone-else")
    assert _accounts(app, "someone-else") == 0


def test_create_staff_once_a_taken_username_records_nothing(app, make_user):
    admin_user = make_user("admin")
    make_user("reception", username="asha")
    with pytest.raises(Conflict):
        _create_once(app, admin_user, "key-0123456789abcdef")
    # The refusal stored nothing: the key may be used again with a free username.
    assert _create_once(app, admin_user, "key-0123456789abcdef", username="asha2").status == 201
