"""The snapshot route sends the cached JSON bytes as they are: they must be exactly what
the schema documents, and a hit must come from one cache round trip that is never stale."""

from tests.appointments.helpers import book_ok, set_status


def test_snapshot_body_is_what_the_schema_would_dump(app, reception, display, dr, new_patient):
    from hms.queue.schemas import QueueSnapshotSchema

    first = book_ok(reception, new_patient("Asha Kumar"), dr.id)
    book_ok(reception, new_patient("Ravi Das"), dr.id)
    set_status(reception, first["id"], "IN_CONSULTATION")
    for client in (reception, display):
        body = client.get(f"/api/queue/{dr.id}").get_json()
        assert body == QueueSnapshotSchema().dump(body)
        assert body["waiting_count"] == 1 and body["in_consultation"]["token"] == 1


def test_cached_snapshot_is_replaced_by_the_next_write(app, reception, dr, new_patient, count_queries):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)
    before = reception.get(f"/api/queue/{dr.id}").get_json()
    with count_queries() as counter:
        again = reception.get(f"/api/queue/{dr.id}").get_json()
    assert again == before
    assert counter.count == 0  # served from the cache
    book_ok(reception, new_patient("Ravi Das"), dr.id)
    after = reception.get(f"/api/queue/{dr.id}").get_json()
    assert after["version"] > before["version"]
    assert [e["token"] for e in after["entries"]] == [1, 2]


def _count_cache_reads(monkeypatch):
    from hms.extensions import cache

    reads = []
    get, get_many = cache.get, cache.get_many

    def counted_get(key):
        reads.append((key,))
        return get(key)

    def counted_get_many(*keys):
        reads.append(keys)
        return get_many(*keys)

    monkeypatch.setattr(cache, "get", counted_get)
    monkeypatch.setattr(cache, "get_many", counted_get_many)
    return reads


def test_a_cached_snapshot_and_the_callers_identity_are_one_cache_round_trip(
    app, reception, display, dr, new_patient, monkeypatch
):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)
    staff_view = reception.get(f"/api/queue/{dr.id}").get_json()
    display.get(f"/api/queue/{dr.id}")  # warm: the identities and both forms are cached
    reads = _count_cache_reads(monkeypatch)
    assert reception.get(f"/api/queue/{dr.id}").get_json() == staff_view
    assert len(reads) == 1
    assert reads[0][0].startswith("identity:") and any(k.startswith("queue:") for k in reads[0])
    # The queue package asks for today's snapshot before the role is known (its
    # blueprint's url_value_preprocessor): one cached value holds both forms, so the
    # display's masked form rides along with its identity too: one round trip (the old
    # cache held one form per key, and the display paid a second read).
    reads.clear()
    masked = display.get(f"/api/queue/{dr.id}").get_json()
    assert "name" not in masked["entries"][0]["patient"]
    assert len(reads) == 1 and reads[0][0].startswith("identity:")
    # Another date is not read along either, and is still answered.
    reads.clear()
    assert reception.get(f"/api/queue/{dr.id}?date=2020-01-01").status_code == 200
    assert not any(k.startswith("queue:") for k in reads[0])


def test_a_renamed_patient_shows_at_once_in_the_queues_they_are_in(app, reception, display, dr, new_patient):
    waiting = new_patient("Asha Kumar")
    elsewhere = new_patient("Ravi Das")
    book_ok(reception, waiting, dr.id)
    before = reception.get(f"/api/queue/{dr.id}").get_json()  # cached now
    masked_before = display.get(f"/api/queue/{dr.id}").get_json()
    assert masked_before["entries"][0]["patient"]["initials"] == "A.K."
    from hms.realtime.broker import QueueBroker

    broker = QueueBroker.get(app)
    mailbox = broker.subscribe(dr.id, "masked")

    assert reception.patch(f"/api/patients/{waiting}", json={"name": "Bina Sen"}).status_code == 200
    wakeup = mailbox.wait(1.0)  # the open streams are told
    broker.unsubscribe(mailbox)
    assert wakeup is not None and max(wakeup.changes.values()) > before["version"]
    after = reception.get(f"/api/queue/{dr.id}").get_json()
    assert after["entries"][0]["patient"]["name"] == "Bina Sen"
    assert after["version"] > before["version"]  # streams and clients see a change
    assert display.get(f"/api/queue/{dr.id}").get_json()["entries"][0]["patient"]["initials"] == "B.S."

    # Other fields, and patients in no queue, leave the queues alone.
    assert reception.patch(f"/api/patients/{waiting}", json={"phone": "9876543210"}).status_code == 200
    assert reception.patch(f"/api/patients/{elsewhere}", json={"name": "Ravi Dass"}).status_code == 200
    assert reception.get(f"/api/queue/{dr.id}").get_json()["version"] == after["version"]


def test_a_renamed_doctor_shows_at_once_in_their_queues(app, reception, admin, dr, new_patient):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)
    before = reception.get(f"/api/queue/{dr.id}").get_json()  # cached now
    assert admin.patch(f"/api/staff/{dr.id}", json={"name": "Dr Meera Rao-Iyer"}).status_code == 200
    after = reception.get(f"/api/queue/{dr.id}").get_json()
    assert after["doctor"]["name"] == "Dr Meera Rao-Iyer" and after["version"] > before["version"]
    assert admin.patch(f"/api/staff/{dr.id}", json={"is_available": False}).status_code == 200
    assert reception.get(f"/api/queue/{dr.id}").get_json()["version"] == after["version"]


def test_a_doctors_new_room_shows_at_once_in_their_queues(app, reception, admin, display, dr, new_patient):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)
    before = reception.get(f"/api/queue/{dr.id}").get_json()  # cached now
    display.get(f"/api/queue/{dr.id}")  # the masked form too
    assert before["doctor"] == {"id": dr.id, "name": "Dr Meera Rao", "room": None}
    assert admin.patch(f"/api/staff/{dr.id}", json={"room": "Room 4"}).status_code == 200
    after = reception.get(f"/api/queue/{dr.id}").get_json()
    assert after["doctor"] == {"id": dr.id, "name": "Dr Meera Rao", "room": "Room 4"}
    assert after["version"] > before["version"]
    assert display.get(f"/api/queue/{dr.id}").get_json()["doctor"]["room"] == "Room 4"
    assert admin.patch(f"/api/staff/{dr.id}", json={"room": None}).status_code == 200
    assert reception.get(f"/api/queue/{dr.id}").get_json()["doctor"]["room"] is None


def test_next_reads_nothing_but_the_callers_identity(app, reception, dr, new_patient, monkeypatch):
    for name in ("Asha Kumar", "Ravi Das", "Bina Sen"):
        book_ok(reception, new_patient(name), dr.id)
    assert reception.post(f"/api/queue/{dr.id}/next").status_code == 200  # warms the caches
    reads = _count_cache_reads(monkeypatch)
    assert reception.post(f"/api/queue/{dr.id}/next").status_code == 200
    # The doctor's profile used to ride along with the identity; next no longer needs it
    # (the snapshot it answers joins users for the doctor's name, under the queue lock):
    # one cache round trip in all, the identity's.
    assert len(reads) == 1 and len(reads[0]) == 1 and reads[0][0].startswith("identity:")


def test_a_booking_reads_its_doctor_in_one_round_trip_of_its_own(
    app, reception, dr, new_patient, monkeypatch
):
    book_ok(reception, new_patient("Asha Kumar"), dr.id)  # warms the caches
    reads = _count_cache_reads(monkeypatch)
    book_ok(reception, new_patient("Ravi Das"), dr.id)
    # Auth no longer reads other domains' keys along with the identity (no guessing from
    # the request body): the identity, then the doctor's profile (with its generation),
    # two round trips, and nothing else.
    assert len(reads) == 2
    assert reads[0] == (reads[0][0],) and reads[0][0].startswith("identity:")
    assert f"doctor-profile:{dr.id}" in reads[1]
    # A body that names no doctor reads no profile and is still answered as before.
    reads.clear()
    assert reception.post("/api/appointments", json={"doctor_id": "1"}).status_code == 422
    assert reception.post("/api/appointments", data="{", content_type="application/json").status_code == 400
    assert all(not any(k.startswith("doctor-profile:") for k in keys) for keys in reads)


def test_far_dates_are_read_without_storing_a_key_each(app, reception, make_user):
    from datetime import date, timedelta

    from hms.core.time import clinic_today
    from tests.conftest import cache_key_count

    doctor_id = make_user("doctor", name="Meera Rao").id
    assert reception.get(f"/api/queue/{doctor_id}").status_code == 200  # today: cached
    before = cache_key_count(app)
    with app.app_context():
        today = clinic_today()
    for n in range(40):
        day = (today - timedelta(days=30 + n)).isoformat()
        res = reception.get(f"/api/queue/{doctor_id}?date={day}")
        assert res.status_code == 200 and res.get_json()["date"] == day
    assert cache_key_count(app) - before <= 2
    assert isinstance(today, date)
