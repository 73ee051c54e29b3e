"""The day replay's waiting-room displays, and the delivery latency of every queue change
to each of them (bench/day_replay.py's docstring says how a change is matched to the
snapshot that delivers it).

A `Display` holds its doctor's stream (bench.lib.clinic_day.open_display) and records
(version, arrival time) of every snapshot; `SnapshotBook` keeps the appointment ids of
each (doctor, version), parsed once whichever display saw it first. After the day,
`change_versions` dates each booking and completion, and `delivery_latencies` matches
every change of a doctor to each display of that doctor. Pure functions over recorded
data, so the tests drive them with made-up streams.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass

from bench.lib import clinic_day

CHANGE_KINDS = ("book", "call", "complete")
STREAM_READ_TIMEOUT = 60.0  # a heartbeat comes at least every SSE_HEARTBEAT_SECONDS (15)


@dataclass(slots=True)
class Change:
    """A queue change and when the client that caused it sent its request."""

    kind: str  # book | call | complete
    doctor: int  # doctor id
    sent: float
    appointment_id: int
    version: int | None = None  # known for a call
    call_version: int | None = None  # for a completion: the version at which it was called in
    answered: float | None = None  # when that client had read its answer


class SnapshotBook:
    """Appointment ids per (doctor, version), parsed once whichever display saw it first."""

    def __init__(self) -> None:
        self.ids: dict[int, dict[int, frozenset]] = defaultdict(dict)
        self.unmasked = 0


class Display:
    """One waiting-room screen: its doctor's stream, reconnecting with Last-Event-ID;
    records (version, arrival time) per snapshot."""

    def __init__(self, index: int, doctor_id: int, host: str, port: int, token: str, book: SnapshotBook):
        self.index, self.doctor_id, self.host, self.port, self.token = index, doctor_id, host, port, token
        self.book = book
        self.versions = array("q")
        self.times = array("d")
        self.max_version = -1
        self.connects = 0
        self.first_event_seconds: float | None = None
        self.failures: list[str] = []  # the first few; failure_count counts them all
        self.failure_count = 0
        self.stopping = False

    def run(self, connected) -> None:
        while not self.stopping:
            try:
                self._session(connected)
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a drop, a refusal, a bad event
                if self.stopping:
                    return
                self.failure_count += 1
                if len(self.failures) < 3:
                    self.failures.append(f"display {self.index} (doctor {self.doctor_id}): {exc!r}")
                if self.connects == 0 and self.failure_count >= 3:
                    connected.set()  # give up: never connected
                    return
                time.sleep(0.5)

    def _session(self, connected) -> None:
        started = time.monotonic()
        last = self.max_version if self.max_version >= 0 else None
        stream = clinic_day.open_display(
            self.host, self.port, self.doctor_id, self.token, last, timeout=STREAM_READ_TIMEOUT
        )
        try:
            self.connects += 1
            first = True
            for received, version, data in clinic_day.snapshots(stream):
                if self.stopping:
                    return
                self.record(version, data, received)
                if first:
                    first = False
                    if self.first_event_seconds is None:
                        self.first_event_seconds = received - started
                    connected.set()
        finally:
            stream.close()

    def record(self, version: int, data: bytes, received: float) -> None:
        known = self.book.ids[self.doctor_id]
        if version not in known:
            snapshot = clinic_day.read_snapshot(data, version)
            if clinic_day.shows_identity(snapshot):
                self.book.unmasked += 1
            known[version] = frozenset(entry["appointment_id"] for entry in snapshot["entries"])
        self.versions.append(version)
        self.times.append(received)
        self.max_version = max(self.max_version, version)


def change_versions(
    changes: list[Change], book: SnapshotBook, calls: dict[int, list[tuple[int, int]]]
) -> None:
    """Fill in the version of each booking and completion (see bench/day_replay.py)."""
    called_at = {c.appointment_id: c.version for c in changes if c.kind == "call"}
    first_seen: dict[int, int] = {}
    seen_sorted: dict[int, list[int]] = {}
    for doctor_id, by_version in book.ids.items():
        ordered = sorted(by_version)
        seen_sorted[doctor_id] = ordered
        for version in ordered:
            for appointment_id in by_version[version]:
                first_seen.setdefault(appointment_id, version)
    call_versions = {doctor_id: [v for v, _ in sorted(rows)] for doctor_id, rows in calls.items()}
    for change in changes:
        if change.kind == "book":
            seen, called = first_seen.get(change.appointment_id), called_at.get(change.appointment_id)
            candidates = [v for v in (seen, called) if v is not None]
            change.version = min(candidates) if candidates else None
        elif change.kind == "complete":
            versions = seen_sorted.get(change.doctor, [])
            ids = book.ids.get(change.doctor, {})
            position = bisect.bisect_right(versions, change.call_version)
            change.version = next(
                (v for v in versions[position:] if change.appointment_id not in ids[v]), None
            )
            later_calls = call_versions.get(change.doctor, [])
            after = bisect.bisect_right(later_calls, change.call_version)
            if after < len(later_calls) and (change.version is None or later_calls[after] < change.version):
                change.version = later_calls[after]


@dataclass
class Deliveries:
    by_kind: dict[str, list[float]]  # seconds from the request being sent, per change kind
    after_answer: list[float]  # seconds from the answer being read (negative: the display was first)
    missed: int  # (change, display) pairs never delivered
    unknown: int  # changes whose version no display ever showed


def delivery_latencies(changes: list[Change], displays: list[Display]) -> Deliveries:
    """Match every change of a doctor to each display of that doctor."""
    by_doctor: dict[int, list[Change]] = defaultdict(list)
    watched = {display.doctor_id for display in displays}
    unknown = 0
    for change in changes:
        if change.doctor not in watched:
            continue  # no display follows this doctor: nothing to deliver
        if change.version is None:
            unknown += 1
        else:
            by_doctor[change.doctor].append(change)
    latencies: dict[str, list[float]] = {kind: [] for kind in CHANGE_KINDS}
    after_answer: list[float] = []
    missed = 0
    for display in displays:
        highest, running = [], -1
        for version in display.versions:
            running = max(running, version)
            highest.append(running)
        for change in by_doctor.get(display.doctor_id, ()):
            position = bisect.bisect_left(highest, change.version)
            if position == len(highest):
                missed += 1
            else:
                received = display.times[position]
                latencies[change.kind].append(max(received - change.sent, 0.0))
                if change.answered is not None:
                    after_answer.append(received - change.answered)
    return Deliveries(latencies, after_answer, missed, unknown)
