"""QueueChanged: published through the app's broker after the commit, and only then; a
watched change carries the events of the snapshot it read under the queue lock."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest
import redis

from hms.queue.changes import QueueChanged, publish, record_change
from hms.realtime.broker import QueueBroker, RedisBroker
from tests.queue.stream_helpers import booking, make_patient

DAY = date(2026, 11, 28)


def subscribed(app, topic: int):
    """A mailbox on the app's broker, past the Redis subscriber's first-connection recheck."""
    broker = QueueBroker.get(app)
    subscription = broker.subscribe(topic, "full")
    if isinstance(broker, RedisBroker):
        assert broker.connected.wait(5)
        subscription.wait(1)  # the first-connection recheck
    return broker, subscription


def test_publish_goes_through_the_apps_broker(app):
    broker, subscription = subscribed(app, 41)
    try:
        with app.app_context():
            publish(QueueChanged(41, DAY, 12))
        wakeup = subscription.wait(3)
        assert wakeup is not None and wakeup.changes == {"2026-11-28": 12}
    finally:
        broker.unsubscribe(subscription)


def test_publish_outside_the_app_never_raises():
    publish(QueueChanged(1, DAY, 1))


def test_a_change_is_published_after_its_commit_and_never_after_a_rollback(app, make_user):
    from hms.core.uow import unit_of_work

    doctor = make_user("doctor")
    broker, subscription = subscribed(app, doctor.id)
    try:
        with app.app_context():
            with pytest.raises(RuntimeError), unit_of_work():
                record_change(doctor.id, DAY, 5)
                raise RuntimeError("the change fails")
            assert subscription.wait(0.5) is None  # rolled back: nobody is told
            with unit_of_work():
                record_change(doctor.id, DAY, 6)
                record_change(doctor.id, DAY + timedelta(days=1), 7)
                assert subscription.wait(0.3) is None  # not before the commit
        wakeup = subscription.wait(3)
        while wakeup is not None and len(wakeup.changes) < 2:  # Redis may deliver them apart
            more = subscription.wait(1)
            if more is None:
                break
            wakeup.changes.update(more.changes)
        assert wakeup is not None and wakeup.changes == {"2026-11-28": 6, "2026-11-29": 7}
    finally:
        broker.unsubscribe(subscription)


def _redis_channel_reader(app, redis_url: str, doctor_id: int):
    broker = QueueBroker.get(app)
    if not isinstance(broker, RedisBroker):
        pytest.skip("the events ride on Redis messages")
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(broker.channel(doctor_id))

    def next_message() -> dict:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            # (None also for the subscription's confirmation, which is skipped)
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                return json.loads(message["data"])
        raise AssertionError("no message")

    def close() -> None:
        pubsub.close()
        client.close()

    return next_message, close


def test_a_change_carries_todays_events_only_while_a_stream_is_open(
    app, redis_url, reception, display, doctor
):
    from hms.core.time import clinic_today
    from hms.realtime.limiter import StreamSlots

    doctor_id = doctor.user.id
    with app.app_context():
        tomorrow = (clinic_today() + timedelta(days=1)).isoformat()
    next_message, close = _redis_channel_reader(app, redis_url, doctor_id)
    try:
        patient_id = make_patient(app, "Asha Kumar")
        assert reception.post("/api/appointments", json=booking(patient_id, doctor_id)).status_code == 201
        assert "events" not in next_message()  # nobody watches: the tiny message
        with app.app_context():
            lease = StreamSlots.get(app).acquire(doctor_id, 5, 30)
        try:
            assert reception.post("/api/appointments", json=booking(patient_id, doctor_id)).status_code == 201
            data = next_message()
            # Each form's event carries the very JSON bytes GET answers to that form's roles.
            for form, client in (("full", reception), ("masked", display)):
                head, _, line = data["events"][form].partition("data: ")
                assert head == f"id: {data['version']}\nevent: queue\n"
                assert line.endswith("\n\n")
                assert line[:-2].encode() + b"\n" == client.get(f"/api/queue/{doctor_id}").get_data()
            masked = json.loads(data["events"]["masked"].partition("data: ")[2])
            assert masked["version"] == data["version"]
            assert [e["patient"] for e in masked["entries"]] == [{"initials": "A.K."}] * 2
            # Another date: no stream shows it, so no events.
            later = booking(patient_id, doctor_id) | {"appointment_date": tomorrow}
            assert reception.post("/api/appointments", json=later).status_code == 201
            assert "events" not in next_message()
        finally:
            with app.app_context():
                StreamSlots.get(app).release(lease)
    finally:
        close()


def test_a_watched_change_reads_its_snapshot_in_its_own_transaction(app, redis_url, reception, doctor):
    """While a stream of the doctor is open, a booking and a status change read the new
    snapshot under the queue lock, before their commit, and their message carries it:
    one pool checkout per request (no second transaction after the commit)."""
    from sqlalchemy import event

    from hms.extensions import db
    from hms.realtime.limiter import StreamSlots

    doctor_id = doctor.user.id
    patient_id = make_patient(app)
    next_message, close = _redis_channel_reader(app, redis_url, doctor_id)
    checkouts = []

    def next_event() -> dict:
        data = next_message()
        _, _, line = data["events"]["full"].partition("data: ")
        return {"version": data["version"], "snapshot": json.loads(line), "text": line[:-2]}

    with app.app_context():
        lease = StreamSlots.get(app).acquire(doctor_id, 5, 30)
        engine = db.engine

    def count_checkout(*args):
        checkouts.append(1)

    event.listen(engine, "checkout", count_checkout)
    try:
        booked = reception.post("/api/appointments", json=booking(patient_id, doctor_id))
        assert booked.status_code == 201 and len(checkouts) == 1
        message = next_event()
        assert message["snapshot"]["version"] == message["version"]
        assert [e["appointment_id"] for e in message["snapshot"]["entries"]] == [booked.json["id"]]
        # The event carries the very JSON text GET answers (encoded once per change).
        answered = reception.get(f"/api/queue/{doctor_id}")
        assert answered.status_code == 200 and answered.get_data(as_text=True) == message["text"] + "\n"
        cancelled = reception.patch(
            f"/api/appointments/{booked.json['id']}/status", json={"status": "CANCELLED"}
        )
        assert cancelled.status_code == 200 and len(checkouts) == 2
        message = next_event()
        assert message["snapshot"]["version"] == message["version"]
        assert message["snapshot"]["entries"] == [] and message["snapshot"]["waiting_count"] == 0
    finally:
        event.remove(engine, "checkout", count_checkout)
        with app.app_context():
            StreamSlots.get(app).release(lease)
        close()


def test_a_watched_rename_carries_the_new_name_in_its_events(app, redis_url, reception, doctor):
    """A rename bumps the queues the patient is in; while a stream watches, the snapshot is
    read as the unit of work's before-commit step, after the rename itself: the event
    shows the new name (and initials), and no worker has to build it."""
    from hms.realtime.limiter import StreamSlots

    doctor_id = doctor.user.id
    patient_id = make_patient(app, "Asha Kumar")
    assert reception.post("/api/appointments", json=booking(patient_id, doctor_id)).status_code == 201
    next_message, close = _redis_channel_reader(app, redis_url, doctor_id)
    with app.app_context():
        lease = StreamSlots.get(app).acquire(doctor_id, 5, 30)
    try:
        res = reception.patch(f"/api/patients/{patient_id}", json={"name": "Usha Rani Menon"})
        assert res.status_code == 200, res.get_json()
        data = next_message()
        full = json.loads(data["events"]["full"].partition("data: ")[2])
        masked = json.loads(data["events"]["masked"].partition("data: ")[2])
        assert full["version"] == masked["version"] == data["version"]
        assert [e["patient"]["name"] for e in full["entries"]] == ["Usha Rani Menon"]
        assert [e["patient"] for e in masked["entries"]] == [{"initials": "U.M."}]
    finally:
        with app.app_context():
            StreamSlots.get(app).release(lease)
        close()
