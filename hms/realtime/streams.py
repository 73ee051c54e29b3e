"""Opening a stream: everything that must hold before streaming starts.

Order matters: the mailbox is registered before the first event is read, so no change can
slip between the two; an unknown topic (the loader raises) and one stream over the
limit (429) both fail before any byte is streamed, and both give the mailbox back.

The publishing package gives the callables a stream keeps (its loader, the clinic's
day, the account check); it should share them between streams of the same topic and
variant, so that an open stream costs no closures of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, has_request_context, request

from hms.core.metrics import stream_refused
from hms.errors import TooManyRequests
from hms.realtime.broker import QueueBroker
from hms.realtime.limiter import StreamSlots, Topic, lease_ttl_seconds
from hms.realtime.memo import Encoded
from hms.realtime.stream import Stream, watch_client


def refusal_reason(topic: Topic) -> str:
    """The refusals metric's label for a full topic: the kind before ":" of a named topic
    ("account", "ticket"), "doctor" for a numbered one (the queue package's doctors)."""
    if isinstance(topic, str):
        return topic.partition(":")[0] or "other"
    return "doctor"


def open_stream(
    app: Flask,
    *,
    topic: int,
    variant: str,
    read_first: Callable[[str], Encoded],
    load: Callable[[str], Encoded],
    today: Callable[[], str],
    still_allowed: Callable[[], bool],
    limit: int | None,
    refused: str,
    also: tuple[tuple[Topic, int | None, str], ...] = (),
    limit_topic: Topic | None = None,
    owner: str | None = None,
) -> Stream:
    """Subscribe, read the current event, take a lease; the stream sends that event first.

    `read_first(day)` runs in the caller's request (its errors, e.g. NotFound, propagate).
    Over `limit` open streams of the topic: TooManyRequests(`refused`); None: the stream
    is counted in its topic but never refused there. `also`: more topics the stream is
    counted in, each (topic, limit or None, refusal message); all checked atomically.
    `limit_topic`: count the stream (under `limit`) in this topic instead of the broker
    topic it listens to: a stream that follows a topic without taking one of its slots.
    `owner` (the caller's account) is recorded in the lease: a reconnect of the same
    owner that carries Last-Event-ID may take over that owner's stalest lease of the
    topic when a limit is full (limiter.py). The client's socket (gunicorn's
    environ["gunicorn.socket"]) is watched, so a gone client frees its slot at once."""
    config = app.config
    heartbeat = float(config["SSE_HEARTBEAT_SECONDS"])
    broker = QueueBroker.get(app)
    slots = StreamSlots.get(app)
    subscription = broker.subscribe(topic, variant)
    try:
        day = today()
        first = broker.memo.share((topic, day, variant), read_first(day))
        counted = topic if limit_topic is None else limit_topic
        claims = ((counted, limit), *((other, other_limit) for other, other_limit, _ in also))
        resuming = has_request_context() and bool(request.headers.get("Last-Event-ID"))
        lease = slots.claim(
            claims, lease_ttl_seconds(heartbeat), owner=owner, take_over=resuming and bool(owner)
        )
        if lease.refused_by is not None:
            stream_refused(refusal_reason(lease.refused_by))
            messages = {counted: refused, **{other: message for other, _, message in also}}
            raise TooManyRequests(messages[lease.refused_by], retry_after=max(1, round(heartbeat)))
    except BaseException:
        broker.unsubscribe(subscription)
        raise
    stream = Stream(
        topic=topic,
        variant=variant,
        first=first,
        subscription=subscription,
        broker=broker,
        lease=lease,
        slots=slots,
        load=load,
        today=today,
        still_allowed=still_allowed,
        memo=broker.memo,
        heartbeat_seconds=heartbeat,
        retry_ms=int(config["SSE_RETRY_MS"]),
    )
    watch_client(stream)
    return stream
