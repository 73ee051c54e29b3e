"""Helpers of the queue stream and web tests: data set-up over the API or the database,
and a small Server-Sent Events client over `requests` (it sees comments too)."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

_mrns = itertools.count(1)


def make_patient(app, name: str = "Asha Kumar") -> int:
    """A patient straight in the database; returns its id."""
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        patient = Patient(mrn=f"RT{next(_mrns):06d}", name=name, gender="female")
        db.session.add(patient)
        db.session.commit()
        patient_id = patient.id
        db.session.remove()
        return patient_id


def booking(patient_id: int, doctor_id: int) -> dict:
    return {"patient_id": patient_id, "doctor_id": doctor_id, "appointment_type": "NEW"}


# --- a small SSE client -----------------------------------------------------------------


@dataclass
class Event:
    """One block of the stream: an event (with data) or a comment such as `: ping`."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: str | None = None
    comments: list[str] = field(default_factory=list)
    at: float = 0.0

    @property
    def is_ping(self) -> bool:
        return self.data is None and "ping" in self.comments


def parse_block(block: str) -> Event:
    event = Event(at=time.monotonic())
    data = []
    for line in block.split("\n"):
        if line.startswith(":"):
            event.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name in ("event", "id", "retry"):
            setattr(event, name, value)
    event.data = "\n".join(data) if data else None
    return event


def parse_chunks(chunks) -> Iterator[Event]:
    """Blocks of an SSE byte stream, as they arrive."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        buffer = buffer.replace("\r\n", "\n")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block:
                yield parse_block(block)


class StreamReader:
    """Reads a stream in a background thread; `next(timeout)` returns the next block.

    Works over a `requests` response (stream=True), closed from the test's thread, or a
    Flask test response (`in_process=True`), whose generator can only be closed by the
    thread iterating it: that happens at its next block (a heartbeat at the latest)."""

    def __init__(self, response, chunks, in_process: bool = False):
        self.response = response
        self.in_process = in_process
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(chunks,), daemon=True)
        self._thread.start()

    def _read(self, chunks):
        try:
            for event in parse_chunks(self._until_stopped(chunks)):
                self.events.put(event)
        except Exception:  # noqa: BLE001 - the test closed us, or the server went away
            pass
        finally:
            if self.in_process:
                with contextlib.suppress(Exception):
                    self.response.close()
            self.ended.set()
            self.events.put(None)

    def _until_stopped(self, chunks):
        for chunk in chunks:
            if self._stop.is_set():
                return
            yield chunk

    def next(self, timeout: float = 5.0) -> Event | None:
        """The next block; None when the stream has ended. Fails the test on a timeout."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE block within {timeout} s") from None

    def next_event(self, timeout: float = 5.0) -> Event:
        """The next `queue` event, skipping heartbeats."""
        deadline = time.monotonic() + timeout
        while True:
            block = self.next(max(0.01, deadline - time.monotonic()))
            if block is None:
                raise AssertionError("the stream ended")
            if block.data is not None:
                return block

    def close(self, wait: float = 5.0) -> None:
        self._stop.set()
        if not self.in_process:
            with contextlib.suppress(Exception):
                self.response.close()
        self.ended.wait(wait)


def open_stream(base: str, doctor_id: int, token: str | None = None, **headers) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{base}/api/queue/{doctor_id}/stream", headers=headers, stream=True, timeout=(5, 30))


def read_stream(response: requests.Response) -> StreamReader:
    assert response.status_code == 200, response.text
    return StreamReader(response, response.iter_content(chunk_size=None))
