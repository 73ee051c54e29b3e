"""bench.lib.sse, the one SSE reader of the benchmarks and the load test: events and
comments come out the same however the bytes are split, and a stream read from a socket
says how it ended."""

from __future__ import annotations

import socket
import threading

import pytest

from bench.lib.sse import ChunkedDecoder, Comment, Event, EventStream, SSEParser, StreamEnded, request_bytes

STREAM = (
    b"retry: 3000\n\n"
    b'id: 7\nevent: queue\ndata: {"version": 7}\n\n'
    b": ping\n\n"
    b"data: first line\r\ndata: second line\r\n\r\n"  # CRLF lines; the id stays 7
    b'id: 8\ndata:{"version": 8}\n\n'
    b"id: 9\n\n"  # no data: nothing to dispatch, but the id is kept
    b"data: after\n\n"
)
EXPECTED = [
    Event("7", b'{"version": 7}', "queue"),
    Comment(b" ping"),
    Event("7", b"first line\nsecond line"),
    Event("8", b'{"version": 8}'),
    Event("9", b"after"),
]


def test_the_parser_gives_events_and_comments_in_order():
    assert SSEParser().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_the_parser_gives_the_same_items_however_the_bytes_are_split(size):
    parser = SSEParser()
    items = [
        item for start in range(0, len(STREAM), size) for item in parser.feed(STREAM[start : start + size])
    ]
    assert items == EXPECTED


def test_an_event_is_dispatched_only_by_its_blank_line():
    parser = SSEParser()
    assert parser.feed(b"id: 1\ndata: waiting") == []
    assert parser.feed(b" for the end\n") == []
    assert parser.feed(b"\n") == [Event("1", b"waiting for the end")]


def _chunked(payload: bytes, sizes: list[int]) -> bytes:
    out, start = b"", 0
    for size in sizes:
        piece = payload[start : start + size]
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        start += size
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("split", [1, 4, 9, 1000])
def test_the_chunked_decoder_rebuilds_the_payload_across_any_split(split):
    body = _chunked(STREAM, [10, 1, 30, len(STREAM)])
    decoder = ChunkedDecoder()
    payload = b"".join(decoder.feed(body[start : start + split]) for start in range(0, len(body), split))
    assert payload == STREAM and decoder.finished


def test_the_request_resumes_after_the_last_event_seen():
    request = request_bytes("/api/queue/3/stream", "h:1", {"Authorization": "Bearer t"}, last_event_id=41,
                            protocol="HTTP/1.0")  # fmt: skip
    assert request.startswith(b"GET /api/queue/3/stream HTTP/1.0\r\nHost: h:1\r\n")
    assert b"\r\nAuthorization: Bearer t\r\n" in request and b"\r\nLast-Event-ID: 41\r\n" in request
    assert request.endswith(b"\r\n\r\n")


def _serve(response: bytes, pieces: int = 7) -> EventStream:
    """An EventStream on one end of a socket pair; the other end sends `response` in pieces and closes."""
    ours, theirs = socket.socketpair()

    def send() -> None:
        step = max(1, len(response) // pieces)
        for start in range(0, len(response), step):
            theirs.sendall(response[start : start + step])
        theirs.close()

    threading.Thread(target=send, daemon=True).start()
    return EventStream(ours)


def _read_all(stream: EventStream) -> tuple[list, str]:
    items = []
    with pytest.raises(StreamEnded) as ended:
        for _, item in stream.items():
            items.append(item)
    stream.close()
    return items, ended.value.reason


def test_a_chunked_stream_is_read_to_its_end():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    stream = _serve(head + _chunked(STREAM, [5, 40, len(STREAM)]))
    assert stream.read_head() == 200 and stream.headers["content-type"] == "text/event-stream"
    assert _read_all(stream) == (EXPECTED, "server ended the stream")


def test_an_unframed_stream_ends_when_the_server_closes():
    stream = _serve(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + STREAM)
    stream.read_head()
    stream.expect_ok()
    assert _read_all(stream) == (EXPECTED, "eof")


def test_a_refused_stream_says_its_status_and_body():
    stream = _serve(b'HTTP/1.1 429 TOO MANY REQUESTS\r\nContent-Length: 20\r\n\r\n{"error": "too many"}')
    assert stream.read_head() == 429
    with pytest.raises(StreamEnded, match=r'^http 429: \{"error": "too many"\}$'):
        stream.expect_ok()
    stream.close()


def test_a_server_that_closes_before_answering_is_reported():
    stream = _serve(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(StreamEnded, match="eof before headers"):
        stream.read_head()
    stream.close()
