"""One stream's behaviour without a server: wire format, heartbeats, coalescing, cleanup."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest

from hms.realtime.broker import InProcessBroker
from hms.realtime.limiter import InProcessSlots
from hms.realtime.snapshots import SnapshotMemo, format_event, retry_line
from hms.realtime.stream import CLOSING, PING, QueueStream

DAY = date(2026, 11, 28)


class Queue:
    """A fake queue: the snapshot a loader would read, and how often it was read."""

    def __init__(self):
        self.version = 1
        self.day = "2026-11-28"
        self.loads = 0
        self.fail = False

    def load(self, day: str) -> dict:
        self.loads += 1
        if self.fail:
            raise RuntimeError("database down")
        return {"doctor": {"id": 1, "name": "Dr A"}, "date": day, "version": self.version, "entries": []}


class CountingSlots(InProcessSlots):
    def __init__(self):
        super().__init__()
        self.renewals = 0

    def renew(self, lease, ttl_seconds):
        self.renewals += 1


@pytest.fixture
def setup():
    queue, broker, slots = Queue(), InProcessBroker(), CountingSlots()
    memo = SnapshotMemo()
    allowed = {"ok": True}

    def make(heartbeat: float = 0.2) -> QueueStream:
        return QueueStream(
            doctor_id=1,
            masked=False,
            first=memo.share((1, queue.day, False), queue.load(queue.day)),
            subscription=broker.subscribe(1),
            broker=broker,
            lease=slots.acquire(1, 20, 30),
            slots=slots,
            load_snapshot=queue.load,
            today=lambda: queue.day,
            still_allowed=lambda: allowed["ok"],
            memo=memo,
            heartbeat_seconds=heartbeat,
            retry_ms=3000,
        )

    return make, queue, broker, slots, allowed


def opening(events) -> bytes:
    """The `retry:` chunk and the first event, as the client reads them."""
    retry = next(events)
    assert retry == b"retry: 3000\n"
    return retry + next(events)


def parse(chunk: bytes) -> dict:
    assert isinstance(chunk, bytes)  # the body is handed to the server as is
    chunk = chunk.decode()
    fields = dict(line.split(": ", 1) for line in chunk.strip("\n").split("\n"))
    fields["data"] = json.loads(fields["data"])
    return fields


def test_format_is_retry_id_event_and_one_line_of_json():
    snapshot = {"version": 7, "date": "2026-11-28", "entries": [{"patient": {"initials": "Ä.Ø."}}]}
    text = (retry_line(2500) + format_event(snapshot).encode()).decode()  # a stream's opening
    assert text.startswith("retry: 2500\nid: 7\nevent: queue\ndata: {")
    assert text.endswith("}\n\n") and text.count("\n") == 5
    assert json.loads(text.split("data: ", 1)[1]) == snapshot
    assert not format_event(snapshot).startswith("retry")


def test_first_the_snapshot_then_heartbeats(setup):
    make, queue, _, slots, _ = setup
    events = make(heartbeat=0.1).events()
    first = parse(opening(events))
    assert first["retry"] == "3000" and first["id"] == "1" and first["event"] == "queue"
    assert first["data"]["version"] == 1
    started = time.monotonic()
    assert [next(events) for _ in range(3)] == [PING] * 3
    assert 0.25 <= time.monotonic() - started < 1.0
    # The limiter renews every lease of the process in one batch; a stream renews nothing.
    assert slots.renewals == 0


def test_the_opening_chunks_are_shared_by_every_stream_of_a_version(setup):
    # The server keeps the last chunk it wrote referenced while a stream waits: a first
    # event encoded per stream would stay alive in every idle stream (measured at 10,000
    # streams with queues of 83: 39.5 KB per stream, 25.5 KB shared).
    make, queue, broker, _, _ = setup
    a, b = make().events(), make().events()
    assert next(a) is next(b) is retry_line(3000)
    first_a, first_b = next(a), next(b)
    assert first_a is first_b
    queue.version = 2
    broker.publish(1, DAY, 2)
    later = make().events()
    next(later)
    changed_a, opened_later = next(a), next(later)
    assert parse(changed_a)["id"] == "2" and changed_a is opened_later


def test_a_change_sends_the_new_snapshot_and_a_repeat_sends_nothing(setup):
    make, queue, broker, _, _ = setup
    events = make().events()
    opening(events)
    queue.version = 2
    broker.publish(1, DAY, 2)
    assert parse(next(events))["id"] == "2"
    broker.publish(1, DAY, 2)  # the same version again (e.g. a local fallback and Redis)
    assert next(events) == PING


def test_changes_while_busy_are_sent_once_as_the_latest(setup):
    make, queue, broker, _, _ = setup
    events = make().events()
    opening(events)
    loads = queue.loads
    for version in (2, 3, 4):
        queue.version = version
        broker.publish(1, DAY, version)
    assert parse(next(events))["data"]["version"] == 4
    assert queue.loads == loads + 1
    assert next(events) == PING


def test_another_dates_change_is_ignored(setup):
    make, queue, broker, _, _ = setup
    events = make().events()
    opening(events)
    loads = queue.loads
    broker.publish(1, date(2026, 12, 1), 9)
    assert next(events) == PING
    assert queue.loads == loads


def test_resync_after_an_outage_resends_even_an_unchanged_snapshot(setup):
    make, queue, broker, _, _ = setup
    events = make().events()
    opening(events)
    broker.registry.recheck_all(force=False)  # first connection: only if newer
    assert next(events) == PING
    broker.registry.recheck_all(force=True)  # reconnected after an outage
    assert parse(next(events))["id"] == "1"


def test_a_new_day_sends_the_new_days_queue(setup):
    make, queue, _, _, _ = setup
    events = make().events()
    opening(events)
    queue.day = "2026-11-29"
    assert next(events) == PING
    assert parse(next(events))["data"]["date"] == "2026-11-29"


def test_a_failed_snapshot_keeps_the_stream_and_retries(setup):
    make, queue, broker, _, _ = setup
    events = make().events()
    opening(events)
    queue.fail, queue.version = True, 5
    broker.publish(1, DAY, 5)
    assert next(events) == PING  # the build failed: heartbeats go on
    queue.fail = False
    assert parse(next(events))["id"] == "5"  # retried after the heartbeat


def test_shutdown_ends_the_stream_and_frees_its_slot(setup):
    make, queue, broker, slots, _ = setup
    events = make().events()
    opening(events)
    broker.close_all()
    assert next(events) == CLOSING
    with pytest.raises(StopIteration):
        next(events)
    assert slots.count(1) == 0 and broker.registry.count() == 0


def test_a_vanished_client_frees_its_slot_and_mailbox(setup):
    make, _, broker, slots, _ = setup
    events = make().events()
    opening(events)
    assert slots.count(1) == 1 and broker.registry.count(1) == 1
    events.close()  # what the server does when a write fails
    assert slots.count(1) == 0 and broker.registry.count(1) == 0


def test_a_body_never_iterated_still_frees_its_slot(setup):
    make, _, broker, slots, _ = setup
    stream = make()
    stream.close()  # response.call_on_close, e.g. for HEAD
    stream.close()
    assert slots.count(1) == 0 and broker.registry.count(1) == 0


def test_a_disabled_account_loses_its_stream_at_the_next_heartbeat(setup):
    make, _, _, slots, allowed = setup
    events = make().events()
    opening(events)
    allowed["ok"] = False
    assert next(events) == PING
    with pytest.raises(StopIteration):
        next(events)
    assert slots.count(1) == 0


def test_streams_of_one_doctor_share_one_build_per_change(setup):
    make, queue, broker, _, _ = setup
    streams = [make().events() for _ in range(10)]
    for events in streams:
        opening(events)
    loads = queue.loads
    queue.version = 2
    broker.publish(1, DAY, 2)
    assert {parse(next(events))["id"] for events in streams} == {"2"}
    assert queue.loads == loads + 1
