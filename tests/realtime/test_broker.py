"""The change brokers on their own, in process and over Redis pub/sub: topics, days,
versions and opaque event bytes (no domain)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import redis

from hms.realtime.broker import InProcessBroker, QueueBroker, RedisBroker
from hms.realtime.memo import Encoded, sse_event

DAY = "2026-11-28"  # topics, days and versions: the broker knows nothing else
VARIANT = "plain"


def wait_for(predicate, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- in process -------------------------------------------------------------------------


def test_a_change_reaches_only_that_topics_streams():
    broker = InProcessBroker()
    first, second, other = (broker.subscribe(topic, VARIANT) for topic in (1, 1, 2))
    broker.publish(1, DAY, 7)
    for subscription in (first, second):
        wakeup = subscription.wait(1)
        assert wakeup.changes == {DAY: 7}
        assert not wakeup.recheck and not wakeup.closed
    assert other.wait(0.05) is None


def test_changes_that_arrive_while_a_stream_is_busy_coalesce_into_the_latest():
    broker = InProcessBroker()
    subscription = broker.subscribe(1, VARIANT)
    for version in (3, 5, 4):
        broker.publish(1, DAY, version)
    broker.publish(1, "2026-11-29", 9)
    wakeup = subscription.wait(1)
    assert wakeup.changes == {DAY: 5, "2026-11-29": 9}
    assert subscription.wait(0.05) is None  # one wakeup for all of them


def test_wait_times_out_quietly():
    subscription = InProcessBroker().subscribe(1, VARIANT)
    started = time.monotonic()
    assert subscription.wait(0.2) is None
    assert 0.15 <= time.monotonic() - started < 1.0


def test_a_waiting_stream_wakes_at_once_from_another_thread():
    broker = InProcessBroker()
    subscription = broker.subscribe(3, VARIANT)
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
    assert wakeup.changes == {DAY: 1}
    assert waited < 1.0


def test_unsubscribed_streams_leave_nothing_behind():
    broker = InProcessBroker()
    subscriptions = [broker.subscribe(topic, VARIANT) for topic in (1, 1, 2) for _ in range(50)]
    assert broker.registry.count() == 150
    for subscription in subscriptions:
        broker.unsubscribe(subscription)
        broker.unsubscribe(subscription)  # twice is harmless
    assert broker.registry.count() == 0
    assert broker.registry._by_topic == {}
    broker.publish(1, DAY, 1)  # nobody listening: no error


def test_close_all_ends_open_and_later_streams():
    broker = InProcessBroker()
    subscription = broker.subscribe(1, VARIANT)
    broker.close_all()
    assert subscription.wait(5).closed
    assert broker.subscribe(1, VARIANT).wait(5).closed  # a request already past the listener


def test_a_closed_mailbox_answers_closed_at_once_every_time():
    subscription = InProcessBroker().subscribe(1, VARIANT)
    subscription.close()
    for _ in range(2):
        started = time.monotonic()
        assert subscription.wait(5).closed
        assert time.monotonic() - started < 1.0


def test_no_wakeup_is_lost_to_a_publisher_racing_the_stream():
    broker = InProcessBroker()
    subscription = broker.subscribe(1, VARIANT)
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
            seen = max(seen, wakeup.changes[DAY])
    thread.join(5)
    assert seen == last
    assert subscription.wait(0.05) is None  # nothing left pending, no stale wakeup


def test_recheck_asks_for_a_snapshot_without_a_change():
    broker = InProcessBroker()
    subscription = broker.subscribe(1, VARIANT)
    broker.registry.recheck_all(force=False)
    wakeup = subscription.wait(1)
    assert wakeup.recheck and not wakeup.force and wakeup.changes == {}
    broker.registry.recheck_all(force=True)
    assert subscription.wait(1).force


def test_the_apps_broker_delivers_a_publish(app):
    broker = QueueBroker.get(app)
    subscription = broker.subscribe(41, VARIANT)
    try:
        if isinstance(broker, RedisBroker):
            assert broker.connected.wait(5)
            subscription.wait(1)  # the first-connection recheck
        broker.publish(41, DAY, 12)
        wakeup = subscription.wait(3)
        assert wakeup is not None and wakeup.changes == {DAY: 12}
    finally:
        broker.unsubscribe(subscription)


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
    subscriptions = [broker.subscribe(topic, VARIANT) for topic in range(1, 11) for _ in range(5)]
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
    subscription = listener.subscribe(21, VARIANT)
    assert listener.connected.wait(5)
    subscription.wait(1)  # the first-connection recheck
    started = time.monotonic()
    publisher.publish(21, DAY, 3)
    wakeup = subscription.wait(2)
    assert wakeup is not None and wakeup.changes == {DAY: 3}
    assert time.monotonic() - started < 1.0


def test_redis_ignores_malformed_messages_and_keeps_listening(redis_url, redis_broker):
    broker = redis_broker()
    subscription = broker.subscribe(5, VARIANT)
    assert broker.connected.wait(5)
    subscription.wait(1)
    client = redis.Redis.from_url(redis_url)
    client.publish(broker.channel(5), "not json")
    client.publish(broker.channel(5), json.dumps({"topic": "x"}))
    client.close()
    broker.publish(5, DAY, 8)
    wakeup = subscription.wait(2)
    assert wakeup.changes == {DAY: 8}
    assert broker.connections_made == 1


def test_redis_channels_are_per_database(private_redis, redis_broker):
    on_zero = redis_broker(private_redis.url)
    on_one = redis_broker(private_redis.url.rsplit("/", 1)[0] + "/1")
    subscription = on_zero.subscribe(1, VARIANT)
    assert on_zero.connected.wait(5)
    subscription.wait(1)
    on_one.publish(1, DAY, 99)
    assert subscription.wait(0.5) is None
    on_zero.publish(1, DAY, 100)
    assert subscription.wait(2).changes == {DAY: 100}


def test_redis_subscriber_reconnects_and_streams_resync(private_redis, redis_broker):
    broker = redis_broker(private_redis.url)
    subscription = broker.subscribe(1, VARIANT)
    assert broker.connected.wait(5)
    first = subscription.wait(1)
    assert first.recheck and not first.force  # first connection: re-check only
    private_redis.stop()
    assert wait_for(lambda: not broker.connected.is_set(), timeout=5)
    broker.publish(1, DAY, 2)  # Redis down: never raises, this process still hears it
    assert subscription.wait(1).changes == {DAY: 2}
    private_redis.start()
    assert broker.connected.wait(10)
    wakeup = subscription.wait(2)
    assert wakeup.recheck and wakeup.force  # after an outage: a fresh snapshot for everyone
    assert broker.connections_made == 2
    broker.publish(1, DAY, 3)
    assert subscription.wait(2).changes == {DAY: 3}
    assert len(subscriber_connections(private_redis.url, broker.client_name)) == 1


def test_redis_subscriber_restarts_after_fork(redis_broker):
    broker = redis_broker()
    broker.subscribe(1, VARIANT)
    assert broker.connected.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: a new process must start its own subscriber
        ok = False
        try:
            subscription = broker.subscribe(2, VARIANT)
            ok = broker.connected.wait(5) and broker._subscriber_pid == os.getpid()
            broker.publish(2, DAY, 4)
            wakeup = subscription.wait(3)
            # Wakeups: first the recheck, then the change.
            while wakeup is not None and not wakeup.changes:
                wakeup = subscription.wait(3)
            ok = ok and wakeup is not None and wakeup.changes == {DAY: 4}
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


def test_redis_message_events_feed_the_memo_of_every_worker(redis_url, redis_broker):
    publisher, listener = redis_broker(), redis_broker()  # two workers
    short_stream = listener.subscribe(31, "short")
    assert listener.connected.wait(5)
    short_stream.wait(1)  # the first-connection recheck
    # Two variants of one change, as a publisher encodes them once: opaque bytes here.
    long = sse_event(6, "change", '{"who":"Äsha Kumar"}'.encode())
    short = sse_event(6, "change", '{"who":"Ä.K."}'.encode())
    publisher.publish(31, DAY, 6, {"long": long, "short": short})
    assert short_stream.wait(2).changes == {DAY: 6}

    def must_not_build():
        raise AssertionError("built although the message carried the event")

    encoded = listener.memo.get((31, DAY, "short"), must_not_build, min_version=6)
    assert encoded == Encoded(6, DAY, short)  # the very bytes, non-ASCII included
    # Only the variants this worker's streams send are kept: no "long" stream here.
    built = listener.memo.get((31, DAY, "long"), lambda: Encoded(6, DAY, b"built here"), min_version=6)
    assert built.event == b"built here"
    # An older event arriving late never replaces a newer one.
    stale = sse_event(4, "change", b"{}")
    publisher.publish(31, DAY, 4, {"long": stale, "short": stale})
    short_stream.wait(2)
    assert listener.memo.get((31, DAY, "short"), must_not_build, min_version=4).version == 6
    # A malformed events part is ignored; the change still wakes the stream.
    client = redis.Redis.from_url(redis_url)
    for events in ({"short": 5}, "not a dict", ["short"]):
        body = {"topic": 31, "date": DAY, "version": 7, "events": events}
        client.publish(listener.channel(31), json.dumps(body))
        assert short_stream.wait(2).changes == {DAY: 7}
    client.close()
    rebuilt = listener.memo.get((31, DAY, "short"), lambda: Encoded(7, DAY, b"rebuilt"), min_version=7)
    assert rebuilt.event == b"rebuilt"
    assert listener.connections_made == 1  # the subscriber survived them


def test_a_publish_without_events_carries_only_the_change(redis_url, redis_broker):
    broker = redis_broker()
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(broker.channel(8))
    try:
        pubsub.get_message(timeout=1)  # the subscription's confirmation
        broker.publish(8, DAY, 3)
        broker.publish(8, DAY, 4, {"a": b"id: 4\n", "b": "é".encode()})
        messages = []
        deadline = time.monotonic() + 3
        while len(messages) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                messages.append(json.loads(message["data"]))
        published = [message.pop("at") for message in messages]  # when (the delivery-lag metric)
        assert all(abs(at - time.time()) < 10 for at in published)
        assert messages == [
            {"topic": 8, "date": DAY, "version": 3},
            {"topic": 8, "date": DAY, "version": 4, "events": {"a": "id: 4\n", "b": "é"}},
        ]
    finally:
        pubsub.close()
        client.close()
