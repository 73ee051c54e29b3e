"""open_stream's `limit_topic`: a stream that listens to one topic and is counted in another."""

from __future__ import annotations

import json

import pytest

from hms.errors import TooManyRequests
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots
from hms.realtime.memo import Encoded, sse_event
from hms.realtime.streams import open_stream

DAY = "2026-11-28"
TOPIC = 424242


def _event(day: str) -> Encoded:
    return Encoded(1, day, sse_event(1, "change", json.dumps({"day": day}).encode()))


def _open(app, *, limit: int, limit_topic=None, refused: str = "full"):
    return open_stream(
        app,
        topic=TOPIC,
        variant="v",
        read_first=_event,
        load=_event,
        today=lambda: DAY,
        still_allowed=lambda: True,
        limit=limit,
        refused=refused,
        limit_topic=limit_topic,
    )


def test_a_stream_counted_in_another_topic_listens_to_its_own(app):
    slots, broker = StreamSlots.get(app), QueueBroker.get(app)
    with app.app_context():
        streams = [_open(app, limit=2, limit_topic="other:1") for _ in range(2)]
        try:
            assert slots.count("other:1") == 2 and slots.count(TOPIC) == 0
            assert broker.registry.count(TOPIC) == 2  # they hear the topic's changes
            with pytest.raises(TooManyRequests) as refused:
                _open(app, limit=2, limit_topic="other:1", refused="other is full")
            assert refused.value.message == "other is full"
            assert broker.registry.count(TOPIC) == 2  # the refused one gave its mailbox back
            # The topic's own limit does not see them.
            own = _open(app, limit=1)
            assert slots.count(TOPIC) == 1
            own.close()
        finally:
            for stream in streams:
                stream.close()
        assert slots.count("other:1") == 0 and broker.registry.count(TOPIC) == 0
