"""One stream's behaviour without a server: heartbeats, coalescing, cleanup. The topic's
states come from a fake loader as plain bytes."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from hms.realtime.broker import InProcessBroker
from hms.realtime.limiter import InProcessSlots
from hms.realtime.memo import Encoded, SnapshotMemo, retry_line, sse_event
from hms.realtime.stream import CLOSING, PING, WATCH, WATCH_SECONDS, Stream

DAY = "2026-11-28"
VARIANT = "plain"


class Topic:
    """A fake publisher: the state its loader would read, and how often it was read."""

    def __init__(self):
        self.version = 1
        self.day = DAY
        self.loads = 0
        self.fail = False

    def load(self, day: str) -> Encoded:
        self.loads += 1
        if self.fail:
            raise RuntimeError("database down")
        data = json.dumps({"date": day, "version": self.version}).encode()
        return Encoded(self.version, day, sse_event(self.version, "change", data))


class CountingSlots(InProcessSlots):
    def __init__(self):
        super().__init__()
        self.renewals = 0

    def renew(self, lease, ttl_seconds):
        self.renewals += 1


@pytest.fixture
def setup():
    topic, broker, slots = Topic(), InProcessBroker(), CountingSlots()
    memo = SnapshotMemo()
    allowed = {"ok": True}

    def make(heartbeat: float = 0.2) -> Stream:
        return Stream(
            topic=1,
            variant=VARIANT,
            first=memo.share((1, topic.day, VARIANT), topic.load(topic.day)),
            subscription=broker.subscribe(1, VARIANT),
            broker=broker,
            lease=slots.acquire(1, 20, 30),
            slots=slots,
            load=topic.load,
            today=lambda: topic.day,
            still_allowed=lambda: allowed["ok"],
            memo=memo,
            heartbeat_seconds=heartbeat,
            retry_ms=3000,
        )

    return make, topic, broker, slots, allowed


def opening(stream) -> bytes:
    """The `retry:` chunk and the first event, as the client reads them."""
    retry = next(stream)
    assert retry == b"retry: 3000\n"
    return retry + next(stream)


def parse(chunk: bytes) -> dict:
    assert isinstance(chunk, bytes)  # the body is handed to the server as is
    chunk = chunk.decode()
    fields = dict(line.split(": ", 1) for line in chunk.strip("\n").split("\n"))
    fields["data"] = json.loads(fields["data"])
    return fields


def test_first_the_current_event_then_heartbeats(setup):
    make, topic, _, slots, _ = setup
    stream = make(heartbeat=0.1)
    first = parse(opening(stream))
    assert first["retry"] == "3000" and first["id"] == "1" and first["event"] == "change"
    assert first["data"]["version"] == 1
    started = time.monotonic()
    assert [next(stream) for _ in range(3)] == [PING] * 3
    assert 0.25 <= time.monotonic() - started < 1.0
    # The limiter renews every lease of the process in one batch; a stream renews nothing.
    assert slots.renewals == 0


def test_the_opening_chunks_are_shared_by_every_stream_of_a_version(setup):
    # The server keeps the last chunk it wrote referenced while a stream waits: a first
    # event encoded per stream would stay alive in every idle stream (measured at 10,000
    # streams with queues of 83: 39.5 KB per stream, 25.5 KB shared).
    make, topic, broker, _, _ = setup
    a, b = make(), make()
    assert next(a) is next(b) is retry_line(3000)
    first_a, first_b = next(a), next(b)
    assert first_a is first_b
    topic.version = 2
    broker.publish(1, DAY, 2)
    later = make()
    next(later)
    changed_a, opened_later = next(a), next(later)
    assert parse(changed_a)["id"] == "2" and changed_a is opened_later


def test_a_change_sends_the_new_event_and_a_repeat_sends_nothing(setup):
    make, topic, broker, _, _ = setup
    stream = make()
    opening(stream)
    topic.version = 2
    broker.publish(1, DAY, 2)
    assert parse(next(stream))["id"] == "2"
    broker.publish(1, DAY, 2)  # the same version again (e.g. a local fallback and Redis)
    assert next(stream) == PING


def test_changes_while_busy_are_sent_once_as_the_latest(setup):
    make, topic, broker, _, _ = setup
    stream = make()
    opening(stream)
    loads = topic.loads
    for version in (2, 3, 4):
        topic.version = version
        broker.publish(1, DAY, version)
    assert parse(next(stream))["data"]["version"] == 4
    assert topic.loads == loads + 1
    assert next(stream) == PING


def test_another_dates_change_is_ignored(setup):
    make, topic, broker, _, _ = setup
    stream = make()
    opening(stream)
    loads = topic.loads
    broker.publish(1, "2026-12-01", 9)
    assert next(stream) == PING
    assert topic.loads == loads


def test_resync_after_an_outage_resends_even_an_unchanged_state(setup):
    make, topic, broker, _, _ = setup
    stream = make()
    opening(stream)
    broker.registry.recheck_all(force=False)  # first connection: only if newer
    assert next(stream) == PING
    broker.registry.recheck_all(force=True)  # reconnected after an outage
    assert parse(next(stream))["id"] == "1"


def test_a_new_day_sends_the_new_days_state(setup):
    make, topic, _, _, _ = setup
    stream = make()
    opening(stream)
    topic.day = "2026-11-29"
    assert next(stream) == PING
    assert parse(next(stream))["data"]["date"] == "2026-11-29"


def test_a_failed_build_keeps_the_stream_and_retries(setup):
    make, topic, broker, _, _ = setup
    stream = make()
    opening(stream)
    topic.fail, topic.version = True, 5
    broker.publish(1, DAY, 5)
    assert next(stream) == PING  # the build failed: heartbeats go on
    topic.fail = False
    assert parse(next(stream))["id"] == "5"  # retried after the heartbeat


def test_shutdown_ends_the_stream_and_frees_its_slot(setup):
    make, topic, broker, slots, _ = setup
    stream = make()
    opening(stream)
    broker.close_all()
    assert next(stream) == CLOSING
    with pytest.raises(StopIteration):
        next(stream)
    assert slots.count(1) == 0 and broker.registry.count() == 0


def test_a_vanished_client_frees_its_slot_and_mailbox(setup):
    make, _, broker, slots, _ = setup
    stream = make()
    opening(stream)
    assert slots.count(1) == 1 and broker.registry.count(1) == 1
    stream.close()  # what the server does when a write fails (the response closes its body)
    assert slots.count(1) == 0 and broker.registry.count(1) == 0


def test_a_body_never_iterated_still_frees_its_slot(setup):
    make, _, broker, slots, _ = setup
    stream = make()
    stream.close()  # response.call_on_close, e.g. for HEAD
    stream.close()
    assert slots.count(1) == 0 and broker.registry.count(1) == 0


def test_a_disabled_account_loses_its_stream_at_the_next_heartbeat(setup):
    make, _, _, slots, allowed = setup
    stream = make()
    opening(stream)
    allowed["ok"] = False
    assert next(stream) == PING
    with pytest.raises(StopIteration):
        next(stream)
    assert slots.count(1) == 0


def test_streams_of_one_topic_share_one_build_per_change(setup):
    make, topic, broker, _, _ = setup
    streams = [make() for _ in range(10)]
    for stream in streams:
        opening(stream)
    loads = topic.loads
    topic.version = 2
    broker.publish(1, DAY, 2)
    assert {parse(next(stream))["id"] for stream in streams} == {"2"}
    assert topic.loads == loads + 1


# --- the watcher: gone clients and taken-over leases --------------------------------------


def _watched(setup, sock):
    make, _, broker, slots, _ = setup
    stream = make(heartbeat=30)
    opening(stream)
    WATCH.add(stream, sock)
    return stream, broker, slots


@pytest.mark.parametrize("how", ["reset", "close"])
def test_the_watcher_ends_a_stream_whose_client_went_away(setup, how):
    server_side, client_side = socket.socketpair()
    try:
        stream, broker, slots = _watched(setup, server_side)
        WATCH.tick()
        assert not stream._gone  # a live client is left alone
        if how == "reset":
            client_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client_side.close()
        WATCH.tick()
        with pytest.raises(StopIteration):  # wakes at once, writes nothing more
            next(stream)
        assert slots.count(1) == 0 and broker.registry.count(1) == 0
        assert stream.fd == -1
    finally:
        server_side.close()


def test_the_watcher_runs_by_itself_and_stops_with_the_last_stream(setup):
    server_side, client_side = socket.socketpair()
    try:
        stream, _, slots = _watched(setup, server_side)
        client_side.close()
        started = time.monotonic()
        with pytest.raises(StopIteration):
            next(stream)  # parked until the watcher wakes it
        assert time.monotonic() - started < WATCH_SECONDS * 4
        assert slots.count(1) == 0 and WATCH.count() == 0
    finally:
        server_side.close()


def test_the_watcher_ends_a_stream_whose_lease_was_taken_over(setup):
    make, _, _, slots, _ = setup
    stream = make(heartbeat=30)
    opening(stream)
    WATCH.add(stream, None)
    slots._displace({stream.lease.lease_id})
    WATCH.tick()
    with pytest.raises(StopIteration):
        next(stream)
    assert slots.count(1) == 0
