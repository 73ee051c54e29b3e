"""The queue-change brokers on their own: in process, and over Redis pub/sub."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import date

import pytest
import redis

from hms.realtime.broker import InProcessBroker, QueueBroker, RedisBroker, notify_queue_changed
from hms.realtime.snapshots import format_event

DAY = date(2026, 11, 28)


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- in process -------------------------------------------------------------------------


def test_a_change_reaches_only_that_doctors_streams():
    broker = InProcessBroker()
    first, second, other = broker.subscribe(1), broker.subscribe(1), broker.subscribe(2)
    broker.publish(1, DAY, 7)
    for subscription in (first, second):
        wakeup = subscription.wait(1)
        assert wakeup.changes == {"2026-11-28": 7}
        assert not wakeup.recheck and not wakeup.closed
    assert other.wait(0.05) is None


def test_changes_that_arrive_while_a_stream_is_busy_coalesce_into_the_latest():
    broker = InProcessBroker()
    subscription = broker.subscribe(1)
    for version in (3, 5, 4):
        broker.publish(1, DAY, version)
    broker.publish(1, date(2026, 11, 29), 9)
    wakeup = subscription.wait(1)
    assert wakeup.changes == {"2026-11-28": 5, "2026-11-29": 9}
    assert subscription.wait(0.05) is None  # one wakeup for all of them


def test_wait_times_out_quietly():
    subscription = InProcessBroker().subscribe(1)
    started = time.monotonic()
    assert subscription.wait(0.2) is None
    assert 0.15 <= time.monotonic() - started < 1.0


def test_a_waiting_stream_wakes_at_once_from_another_thread():
    broker = InProcessBroker()
    subscription = broker.subscribe(3)
    received = []

    def waiter():
        started = time.monotonic()
        received.append((subscription.wait(5), time.monotonic() - started))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    broker.publish(3, DAY, 1)
    thread.join(5)
    wakeup, waited = received[0]
    assert wakeup.changes == {"2026-11-28": 1}
    assert waited < 1.0


def test_unsubscribed_streams_leave_nothing_behind():
    broker = InProcessBroker()
    subscriptions = [broker.subscribe(doctor_id) for doctor_id in (1, 1, 2) for _ in range(50)]
    assert broker.registry.count() == 150
    for subscription in subscriptions:
        broker.unsubscribe(subscription)
        broker.unsubscribe(subscription)  # twice is harmless
    assert broker.registry.count() == 0
    assert broker.registry._by_doctor == {}
    broker.publish(1, DAY, 1)  # nobody listening: no error


def test_close_all_ends_open_and_later_streams():
    broker = InProcessBroker()
    subscription = broker.subscribe(1)
    broker.close_all()
    assert subscription.wait(5).closed
    assert broker.subscribe(1).wait(5).closed  # a request already past the listener


def test_a_closed_mailbox_answers_closed_at_once_every_time():
    subscription = InProcessBroker().subscribe(1)
    subscription.close()
    for _ in range(2):
        started = time.monotonic()
        assert subscription.wait(5).closed
        assert time.monotonic() - started < 1.0


def test_no_wakeup_is_lost_to_a_publisher_racing_the_stream():
    broker = InProcessBroker()
    subscription = broker.subscribe(1)
    last = 3000

    def publisher():
        for version in range(1, last + 1):
            broker.publish(1, DAY, version)

    thread = threading.Thread(target=publisher)
    thread.start()
    seen, deadline = 0, time.monotonic() + 10
    while seen < last and time.monotonic() < deadline:
        wakeup = subscription.wait(1)
        if wakeup is not None:
            seen = max(seen, wakeup.changes["2026-11-28"])
    thread.join(5)
    assert seen == last
    assert subscription.wait(0.05) is None  # nothing left pending, no stale wakeup


def test_recheck_asks_for_a_snapshot_without_a_change():
    broker = InProcessBroker()
    subscription = broker.subscribe(1)
    broker.registry.recheck_all(force=False)
    wakeup = subscription.wait(1)
    assert wakeup.recheck and not wakeup.force and wakeup.changes == {}
    broker.registry.recheck_all(force=True)
    assert subscription.wait(1).force


def test_notify_goes_through_the_apps_broker(app):
    broker = QueueBroker.get(app)
    subscription = broker.subscribe(41)
    try:
        if isinstance(broker, RedisBroker):
            assert broker.connected.wait(5)
            subscription.wait(1)  # the first-connection recheck
        with app.app_context():
            notify_queue_changed(41, DAY, 12)
        wakeup = subscription.wait(3)
        assert wakeup is not None and wakeup.changes == {"2026-11-28": 12}
    finally:
        broker.unsubscribe(subscription)


def test_notify_outside_the_app_never_raises():
    notify_queue_changed(1, DAY, 1)


def test_the_embedded_default_uses_the_in_process_broker():
    from config import TestingConfig
    from hms import create_app

    config = TestingConfig()
    config.REDIS_URL = None
    assert isinstance(QueueBroker.get(create_app(config)), InProcessBroker)


# --- Redis ------------------------------------------------------------------------------


def subscriber_connections(url: str, name: str) -> list[dict]:
    client = redis.Redis.from_url(url)
    try:
        return [c for c in client.client_list(_type="pubsub") if c.get("name") == name]
    finally:
        client.close()


@pytest.fixture
def redis_broker(redis_url):
    brokers = []

    def make(url: str = redis_url) -> RedisBroker:
        broker = RedisBroker(url, poll_seconds=0.2)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def test_redis_subscriber_starts_lazily_and_is_one_connection_per_process(redis_url, redis_broker):
    broker = redis_broker()
    broker.publish(1, DAY, 1)  # publishing alone starts no subscriber
    time.sleep(0.3)
    assert subscriber_connections(redis_url, broker.client_name) == []
    subscriptions = [broker.subscribe(doctor_id) for doctor_id in range(1, 11) for _ in range(5)]
    assert broker.connected.wait(5)
    connections = subscriber_connections(redis_url, broker.client_name)
    assert len(connections) == 1
    assert connections[0]["psub"] == "1" and connections[0]["sub"] == "0"
    assert broker.connections_made == 1
    for subscription in subscriptions:
        broker.unsubscribe(subscription)
    assert broker.registry.count() == 0


def test_redis_change_reaches_another_process_within_a_second(redis_broker):
    publisher, listener = redis_broker(), redis_broker()  # two brokers: two workers
    subscription = listener.subscribe(21)
    assert listener.connected.wait(5)
    subscription.wait(1)  # the first-connection recheck
    started = time.monotonic()
    publisher.publish(21, DAY, 3)
    wakeup = subscription.wait(2)
    assert wakeup is not None and wakeup.changes == {"2026-11-28": 3}
    assert time.monotonic() - started < 1.0


def test_redis_ignores_malformed_messages_and_keeps_listening(redis_url, redis_broker):
    broker = redis_broker()
    subscription = broker.subscribe(5)
    assert broker.connected.wait(5)
    subscription.wait(1)
    client = redis.Redis.from_url(redis_url)
    client.publish(broker.channel(5), "not json")
    client.publish(broker.channel(5), json.dumps({"doctor_id": "x"}))
    client.close()
    broker.publish(5, DAY, 8)
    wakeup = subscription.wait(2)
    assert wakeup.changes == {"2026-11-28": 8}
    assert broker.connections_made == 1


def test_redis_channels_are_per_database(private_redis, redis_broker):
    on_zero = redis_broker(private_redis.url)
    on_one = redis_broker(private_redis.url.rsplit("/", 1)[0] + "/1")
    subscription = on_zero.subscribe(1)
    assert on_zero.connected.wait(5)
    subscription.wait(1)
    on_one.publish(1, DAY, 99)
    assert subscription.wait(0.5) is None
    on_zero.publish(1, DAY, 100)
    assert subscription.wait(2).changes == {"2026-11-28": 100}


def test_redis_subscriber_reconnects_and_streams_resync(private_redis, redis_broker):
    broker = redis_broker(private_redis.url)
    subscription = broker.subscribe(1)
    assert broker.connected.wait(5)
    first = subscription.wait(1)
    assert first.recheck and not first.force  # first connection: re-check only
    private_redis.stop()
    assert wait_for(lambda: not broker.connected.is_set(), timeout=5)
    broker.publish(1, DAY, 2)  # Redis down: never raises, this process still hears it
    assert subscription.wait(1).changes == {"2026-11-28": 2}
    private_redis.start()
    assert broker.connected.wait(10)
    wakeup = subscription.wait(2)
    assert wakeup.recheck and wakeup.force  # after an outage: a fresh snapshot for everyone
    assert broker.connections_made == 2
    broker.publish(1, DAY, 3)
    assert subscription.wait(2).changes == {"2026-11-28": 3}
    assert len(subscriber_connections(private_redis.url, broker.client_name)) == 1


def test_redis_subscriber_restarts_after_fork(redis_broker):
    broker = redis_broker()
    broker.subscribe(1)
    assert broker.connected.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: a new process must start its own subscriber
        ok = False
        try:
            subscription = broker.subscribe(2)
            ok = broker.connected.wait(5) and broker._subscriber_pid == os.getpid()
            broker.publish(2, DAY, 4)
            wakeup = subscription.wait(3)
            # Wakeups: first the recheck, then the change.
            while wakeup is not None and not wakeup.changes:
                wakeup = subscription.wait(3)
            ok = ok and wakeup is not None and wakeup.changes == {"2026-11-28": 4}
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 20
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked process hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(waited[1]) == 0


def test_redis_message_events_feed_the_memo_of_every_worker(redis_broker):
    publisher, listener = redis_broker(), redis_broker()  # two workers
    masked_stream = listener.subscribe(31, masked=True)
    assert listener.connected.wait(5)
    masked_stream.wait(1)  # the first-connection recheck
    full = format_event(
        {"version": 6, "date": "2026-11-28", "entries": [{"patient": {"name": "Asha Kumar"}}]}
    )
    masked = format_event(
        {"version": 6, "date": "2026-11-28", "entries": [{"patient": {"initials": "A.K."}}]}
    )
    publisher.publish(31, DAY, 5, {"version": 6, "full": full, "masked": masked})
    assert masked_stream.wait(2).changes == {"2026-11-28": 5}

    def must_not_build():
        raise AssertionError("built although the message carried the event")

    encoded = listener.memo.get((31, "2026-11-28", True), must_not_build, min_version=5)
    assert encoded.event == masked.encode() and encoded.version == 6
    # Only the forms this worker's streams send are kept: no full-form stream here.
    built = listener.memo.get((31, "2026-11-28", False), lambda: {"version": 6, "date": "2026-11-28"}, 5)
    assert built.event != full.encode()
    # An older event arriving late never replaces a newer one.
    stale = format_event({"version": 4, "date": "2026-11-28", "entries": []})
    publisher.publish(31, DAY, 4, {"version": 4, "full": stale, "masked": stale})
    masked_stream.wait(2)
    assert listener.memo.get((31, "2026-11-28", True), must_not_build, min_version=4).version == 6
    # A malformed events part is ignored; the change still wakes the stream.
    publisher.publish(31, DAY, 7, {"version": "x"})
    assert masked_stream.wait(2).changes == {"2026-11-28": 7}


def test_notify_carries_todays_events_only_while_a_stream_is_open(app, redis_url, doctor):
    from hms.appointments.queue import mask_snapshot
    from hms.appointments.service import queue_snapshot
    from hms.core.time import clinic_today
    from hms.realtime.limiter import StreamSlots

    broker = QueueBroker.get(app)
    if not isinstance(broker, RedisBroker):
        pytest.skip("the events ride on Redis messages")
    doctor_id = doctor.user.id
    with app.app_context():
        today = clinic_today()
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

    try:
        with app.app_context():
            notify_queue_changed(doctor_id, today, 0)  # nobody watches: the tiny message
            assert "events" not in next_message()
            lease = StreamSlots.get(app).acquire(doctor_id, 5, 30)
            notify_queue_changed(doctor_id, today, 0)
            data = next_message()
            snapshot = queue_snapshot(doctor_id, today, masked=False)
            events = data["events"]
            assert events["version"] == snapshot["version"]
            for form, expected in (("full", snapshot), ("masked", mask_snapshot(snapshot))):
                head, _, line = events[form].partition("data: ")
                assert head == f"id: {snapshot['version']}\nevent: queue\n"
                assert line.endswith("\n\n") and json.loads(line) == expected
            notify_queue_changed(doctor_id, date(2030, 1, 2), 1)  # another date: no stream shows it
            assert "events" not in next_message()
            StreamSlots.get(app).release(lease)
    finally:
        pubsub.close()
        client.close()


def test_a_watched_change_reads_its_snapshot_in_its_own_transaction(app, redis_url, reception, doctor):
    """While a stream of the doctor is open, a booking and a status change read the new
    snapshot under the queue lock, before their commit, and their message carries it:
    one pool checkout per request (no second transaction after the commit)."""
    from sqlalchemy import event

    from hms.extensions import db
    from hms.realtime.limiter import StreamSlots
    from tests.realtime.helpers import booking, make_patient

    broker = QueueBroker.get(app)
    if not isinstance(broker, RedisBroker):
        pytest.skip("the events ride on Redis messages")
    doctor_id = doctor.user.id
    patient_id = make_patient(app)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(broker.channel(doctor_id))
    checkouts = []

    def next_event() -> dict:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                data = json.loads(message["data"])
                _, _, line = data["events"]["full"].partition("data: ")
                return {"version": data["version"], "snapshot": json.loads(line), "text": line[:-2]}
        raise AssertionError("no message")

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
        pubsub.close()
        client.close()
