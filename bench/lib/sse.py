"""The one Server-Sent Events reader of the benchmarks and the load test.

A stream is a raw socket (gevent's once the process is patched; one greenlet each, no
thread per stream, so one process holds thousands): `EventStream.open` connects and
sends the GET, `read_head` reads the status line and headers, and `items()` yields what
arrives as (arrival time, Event | Comment), decoding a chunked body when the server
chose one (HTTP/1.1) and reading the bare body otherwise (HTTP/1.0, where the body is
the event stream itself). `SSEParser` is the incremental text/event-stream parser under
it: the WHATWG rules that matter here (`id:` persists until the next one, `data:` lines
join with "\\n", a blank line dispatches an event that has data, a line starting with
":" is a comment: HMS's heartbeat `: ping`). Arrival times are time.monotonic(), one
clock for every process of the machine, so they compare with a driver's.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

RECV_BYTES = 65536


@dataclass(frozen=True, slots=True)
class Event:
    id: str | None  # the last `id:` the stream set (None: never)
    data: bytes  # the `data:` lines joined with b"\n"
    type: str = "message"


@dataclass(frozen=True, slots=True)
class Comment:
    text: bytes  # after the ":", e.g. b" ping"


class StreamEnded(ConnectionError):
    """The stream stopped: `reason` says how (as benchmark results record it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SSEParser:
    """Incremental text/event-stream parser: `feed` bytes as they come, get whole items back."""

    def __init__(self) -> None:
        self._buffer = b""
        self._id: str | None = None
        self._type = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event | Comment]:
        self._buffer += chunk
        items: list[Event | Comment] = []
        start = 0
        while (cut := self._buffer.find(b"\n", start)) >= 0:
            item = self._line(self._buffer[start:cut].rstrip(b"\r"))
            if item is not None:
                items.append(item)
            start = cut + 1
        self._buffer = self._buffer[start:]
        return items

    def _line(self, line: bytes) -> Event | Comment | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return Comment(line[1:])
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode()
        elif name == b"event":
            self._type = value.decode()
        return None  # `retry:` and unknown fields change nothing a reader here needs

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._type = ""
            return None
        event = Event(self._id, b"\n".join(self._data), self._type or "message")
        self._data, self._type = [], ""
        return event


class ChunkedDecoder:
    """Transfer-Encoding: chunked, incrementally; `feed` returns the payload bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # payload bytes still due in the current chunk
        self._trailer = 0  # CRLF bytes still due after the current chunk
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while self._buffer and not self.finished:
            if self._trailer:
                skip = min(self._trailer, len(self._buffer))
                self._buffer, self._trailer = self._buffer[skip:], self._trailer - skip
            elif self._remaining:
                piece = self._buffer[: self._remaining]
                self._buffer = self._buffer[len(piece) :]
                self._remaining -= len(piece)
                out.append(piece)
                if not self._remaining:
                    self._trailer = 2
            else:
                cut = self._buffer.find(b"\r\n")
                if cut < 0:
                    break
                size = int(self._buffer[:cut].split(b";")[0], 16)
                self._buffer = self._buffer[cut + 2 :]
                self.finished = size == 0
                self._remaining = size
        return b"".join(out)


def request_bytes(
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    *,
    last_event_id: str | int | None = None,
    protocol: str = "HTTP/1.1",
) -> bytes:
    """The GET that opens a stream (`protocol` "HTTP/1.0": an unframed body, no chunks)."""
    sent = {"Host": host, "Accept": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    if last_event_id is not None:
        sent["Last-Event-ID"] = str(last_event_id)
    lines = [f"GET {path} {protocol}", *(f"{name}: {value}" for name, value in sent.items()), "", ""]
    return "\r\n".join(lines).encode()


class EventStream:
    """One text/event-stream response on a connected socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.status = 0
        self.status_line = ""
        self.headers: dict[str, str] = {}
        self.head_time: float | None = None  # time.monotonic() when the head had arrived
        self._body = b""  # what came with the head

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        last_event_id: str | int | None = None,
        protocol: str = "HTTP/1.1",
        timeout: float = 60.0,
    ) -> EventStream:
        """Connect, send the GET, read the head; StreamEnded unless the answer is 200."""
        sock = socket.create_connection((host, port), timeout=timeout)
        stream = cls(sock)
        try:
            sock.sendall(request_bytes(path, f"{host}:{port}", headers, last_event_id=last_event_id,
                                       protocol=protocol))  # fmt: skip
            stream.read_head()
            stream.expect_ok()
        except BaseException:
            stream.close()
            raise
        return stream

    def read_head(self) -> int:
        """Read the status line and headers; the status (StreamEnded if none came)."""
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(RECV_BYTES)
            if not data:
                raise StreamEnded("eof before headers")
            head += data
        self.head_time = time.monotonic()
        raw_headers, _, self._body = head.partition(b"\r\n\r\n")
        self.status_line, *header_lines = raw_headers.decode("latin-1").split("\r\n")
        parts = self.status_line.split()
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.status

    def expect_ok(self) -> None:
        """StreamEnded("http <status>: <start of the body>") unless the answer is 200."""
        if self.status == 200:
            return
        length = self.headers.get("content-length", "")
        wanted = min(120, int(length) if length.isdigit() else 0)
        while len(self._body) < wanted and (data := self.sock.recv(RECV_BYTES)):
            self._body += data
        raise StreamEnded(f"http {self.status}: {self._body[:120].decode('utf-8', 'replace')}")

    def items(self) -> Iterator[tuple[float, Event | Comment]]:
        """(arrival time, item) as they come; StreamEnded when the server ends the stream."""
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        decoder = ChunkedDecoder() if chunked else None
        parser = SSEParser()
        data, now = self._body, self.head_time or time.monotonic()
        while True:
            if data:
                for item in parser.feed(decoder.feed(data) if decoder else data):
                    yield now, item
                if decoder is not None and decoder.finished:
                    raise StreamEnded("server ended the stream")
            data = self.sock.recv(RECV_BYTES)
            now = time.monotonic()
            if not data:
                raise StreamEnded("eof")

    def close(self) -> None:
        self.sock.close()
