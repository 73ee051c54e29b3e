"""Locust load test of HMS: the clinic's roles working against a running server.

    locust -f loadtest/locustfile.py --headless -u 200 -r 20 -t 5m \\
        --host http://127.0.0.1:8000 --csv bench/results/locust

Users (each on its own keep-alive connection):
- Reception (weighted): registers a patient, looks at the queues of two doctors and
  books with the shorter one (not when both already have HMS_LOAD_MAX_WAITING waiting);
  searches patients by MRN or surname.
- Doctor (a fixed count, one doctor account each): `POST /api/queue/<own id>/next`,
  a prescription for the patient in the room (the answer's `in_consultation`), then
  `PATCH .../status COMPLETED`. "Nobody waiting" (409) is reported under its own name.
- Cashier (weighted): `GET /api/bills?status=UNPAID`, pays one bill's due amount with an
  Idempotency-Key. A bill another cashier paid first (422 "more than the due amount")
  is reported under its own name, as a success.
- Display (a fixed count, spread over the doctors): holds the doctor's
  `GET /api/queue/<id>/stream` open. Each queue change a doctor of this process makes
  (a call-in: `next` answers the new `version`) is reported as an "SSE" request whose
  response time is the delivery latency: from the doctor sending `next` until this
  display received a snapshot with `version` >= that version. Connecting, and a stream
  that drops, are "SSE" requests too (a drop is a failure).

Accounts (defaults = what `flask --app wsgi seed-demo --doctors 10` creates):
    HMS_LOAD_RECEPTION=reception:reception-pass   HMS_LOAD_CASHIER=cashier:cashier-pass
    HMS_LOAD_DISPLAY=display:display-pass         HMS_LOAD_DOCTORS=doctor1..doctor10
    HMS_LOAD_DOCTOR_PASSWORD=doctor-pass
or tokens instead: HMS_LOAD_RECEPTION_TOKEN, HMS_LOAD_CASHIER_TOKEN, HMS_LOAD_DISPLAY_TOKEN.
Mix and pace: HMS_LOAD_WEIGHT_RECEPTION=3, HMS_LOAD_WEIGHT_CASHIER=1,
HMS_LOAD_DOCTOR_USERS (default: one per doctor account), HMS_LOAD_DISPLAY_USERS (default:
2 per doctor account; the server allows SSE_MAX_CONNECTIONS_PER_DOCTOR, 20, per doctor,
and SSE_MAX_CONNECTIONS_PER_ACCOUNT, 10, per account: raise it for the one display account),
wait times in seconds as "min,max": HMS_LOAD_WAIT_RECEPTION=1,3 HMS_LOAD_WAIT_DOCTOR=0.5,1.5
HMS_LOAD_WAIT_CASHIER=1,3; HMS_LOAD_MAX_WAITING=10.

Thresholds, checked when Locust quits (the process exits 1 when one is broken): HTTP
p95 <= HMS_LOAD_MAX_P95_MS (500) and HTTP failures <= HMS_LOAD_MAX_FAIL_RATIO (0.01);
stream delivery p95 <= HMS_LOAD_MAX_DELIVERY_P95_MS (1000, API.md's "within a second")
and stream failures <= the same failure ratio. Delivery is matched within one Locust
process: run it without --processes/workers, or read delivery as per-worker figures.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import urllib.request
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from gevent.lock import Semaphore
from locust import User, between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner
from locust.stats import StatsEntry

log = logging.getLogger("hms.loadtest")


# --- settings ---------------------------------------------------------------------------------


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HMS_LOAD_{name}", default)


def _wait(name: str, default: str):
    low, high = (float(part) for part in _env(f"WAIT_{name}", default).split(","))
    return between(low, high)


def _account(name: str, default: str) -> tuple[str, str]:
    username, _, password = _env(name, default).partition(":")
    return username, password


def _doctor_usernames() -> list[str]:
    """ "doctor1..doctor10" or "dr-a,dr-b"."""
    spec = _env("DOCTORS", "doctor1..doctor10")
    if ".." in spec:
        first, last = spec.split("..")
        prefix = first.rstrip("0123456789")
        start, end = int(first[len(prefix) :]), int(last[len(prefix) :])
        return [f"{prefix}{number}" for number in range(start, end + 1)]
    return [name.strip() for name in spec.split(",") if name.strip()]


DOCTOR_USERNAMES = _doctor_usernames()
MAX_WAITING = int(_env("MAX_WAITING", "10"))
MAX_P95_MS = float(_env("MAX_P95_MS", "500"))
MAX_FAIL_RATIO = float(_env("MAX_FAIL_RATIO", "0.01"))
MAX_DELIVERY_P95_MS = float(_env("MAX_DELIVERY_P95_MS", "1000"))
DELIVERY_TIMEOUT = 30.0  # a change not on a connected display after this long is a failure
SURNAMES = ("Kumar", "Das", "Shah", "Ali", "Roy", "Nair", "Iyer", "Khan", "Rao", "Singh")
FIRST_NAMES = ("Asha", "Ravi", "Mina", "Omar", "Lena", "Arjun", "Priya", "Imran", "Sara", "Kiran")


# --- accounts, signed in once per Locust process -----------------------------------------------


def _sign_in(host: str, username: str, password: str) -> dict:
    request = urllib.request.Request(
        host.rstrip("/") + "/api/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except OSError as exc:
        raise RuntimeError(f"sign-in as {username!r} at {host} failed: {exc}") from exc


def _get(host: str, path: str, token: str) -> dict:
    request = urllib.request.Request(host.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@dataclass
class Clinic:
    tokens: dict[str, str] = field(default_factory=dict)  # role -> token
    doctors: list[tuple[int, str]] = field(default_factory=list)  # (doctor id, token)
    medicine_ids: list[int] = field(default_factory=list)
    instruction_ids: list[int] = field(default_factory=list)
    recent_mrns: deque = field(default_factory=lambda: deque(maxlen=500))
    ready: bool = False


CLINIC = Clinic()
_clinic_lock = Semaphore()
_doctor_seats = count()
_display_seats = count()


def clinic(host: str) -> Clinic:
    """Sign every account in once per process (first user to start does it)."""
    with _clinic_lock:
        if CLINIC.ready:
            return CLINIC
        for role, default in (
            ("reception", "reception:reception-pass"),
            ("cashier", "cashier:cashier-pass"),
            ("display", "display:display-pass"),
        ):
            token = os.environ.get(f"HMS_LOAD_{role.upper()}_TOKEN")
            if not token:
                token = _sign_in(host, *_account(role.upper(), default))["access_token"]
            CLINIC.tokens[role] = token
        password = _env("DOCTOR_PASSWORD", "doctor-pass")
        for username in DOCTOR_USERNAMES:
            answer = _sign_in(host, username, password)
            if answer["user"]["role"] != "doctor":
                raise RuntimeError(f"{username!r} is not a doctor account")
            CLINIC.doctors.append((answer["user"]["id"], answer["access_token"]))
        token = CLINIC.doctors[0][1]
        CLINIC.medicine_ids = [row["id"] for row in _get(host, "/api/medicines?limit=50", token)["data"]]
        CLINIC.instruction_ids = [
            row["id"] for row in _get(host, "/api/medicine-instructions?limit=50", token)["data"]
        ]
        if not CLINIC.medicine_ids:
            raise RuntimeError("no medicines: run `flask --app wsgi seed-demo` first")
        CLINIC.ready = True
        return CLINIC


# --- stream delivery: queue changes matched to the snapshots each display receives --------------


@dataclass
class DisplaySeat:
    doctor_id: int
    history: deque = field(default_factory=lambda: deque(maxlen=256))  # (version, received)
    pending: list = field(default_factory=list)  # (version, sent)
    connected: bool = False


class DeliveryTracker:
    """In-process: the doctors' call-ins (sent time, version) against the displays' snapshots."""

    def __init__(self) -> None:
        self.seats: dict[int, list[DisplaySeat]] = defaultdict(list)

    def change(self, doctor_id: int, sent: float, version: int) -> None:
        for seat in self.seats.get(doctor_id, ()):
            if not seat.connected:
                continue
            received = next((at for seen, at in seat.history if seen >= version), None)
            if received is None:
                seat.pending.append((version, sent))
            else:
                _fire_delivery(received - sent)

    def snapshot(self, seat: DisplaySeat, version: int, received: float) -> None:
        seat.history.append((version, received))
        waiting = []
        for expected, sent in seat.pending:
            if version >= expected:
                _fire_delivery(received - sent)
            elif received - sent > DELIVERY_TIMEOUT:
                _fire_delivery(
                    received - sent, f"version {expected} not shown after {DELIVERY_TIMEOUT:.0f} s"
                )
            else:
                waiting.append((expected, sent))
        seat.pending = waiting


TRACKER = DeliveryTracker()
_environment = None


def _fire(name: str, seconds: float, error: str | None = None, length: int = 0) -> None:
    if _environment is None:
        return
    _environment.events.request.fire(
        request_type="SSE",
        name=name,
        response_time=max(seconds, 0.0) * 1000,
        response_length=length,
        exception=RuntimeError(error) if error else None,
        context={},
    )


def _fire_delivery(seconds: float, error: str | None = None) -> None:
    _fire("queue change -> display", seconds, error)


# --- users -------------------------------------------------------------------------------------


class ClinicUser(FastHttpUser):
    abstract = True
    role = ""

    def on_start(self) -> None:
        self.clinic = clinic(self.host)
        self.token = self.clinic.tokens.get(self.role, "")

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", **extra}


class Reception(ClinicUser):
    role = "reception"
    weight = int(_env("WEIGHT_RECEPTION", "3"))
    wait_time = _wait("RECEPTION", "1,3")

    @task(3)
    def register_and_book(self) -> None:
        body = {
            "name": f"{random.choice(FIRST_NAMES)} {random.choice(SURNAMES)}",
            "gender": random.choice(("female", "male", "other")),
            "age": random.randrange(1, 90),
            "phone": f"+91{random.choice('6789')}{random.randrange(10**9):09d}",
        }
        with self.client.post("/api/patients", json=body, headers=self.headers(), catch_response=True) as res:
            if res.status_code != 201:
                res.failure(f"HTTP {res.status_code}: {res.text[:200]}")
                return
            patient = res.json()
        self.clinic.recent_mrns.append(patient["mrn"])
        doctor_id = self._shorter_queue()
        if doctor_id is None:
            return
        body = {"patient_id": patient["id"], "doctor_id": doctor_id, "appointment_type": "NEW"}
        self.client.post("/api/appointments", json=body, headers=self.headers())

    def _shorter_queue(self) -> int | None:
        """Look at two doctors' queues (as a desk would) and pick the shorter, if not full."""
        best = None
        for doctor_id, _ in random.sample(self.clinic.doctors, min(2, len(self.clinic.doctors))):
            with self.client.get(
                f"/api/queue/{doctor_id}",
                headers=self.headers(),
                name="/api/queue/[doctor_id]",
                catch_response=True,
            ) as res:
                if res.status_code != 200:
                    res.failure(f"HTTP {res.status_code}")
                    continue
                waiting = res.json()["waiting_count"]
            if waiting < MAX_WAITING and (best is None or waiting < best[1]):
                best = (doctor_id, waiting)
        return best[0] if best else None

    @task(2)
    def search(self) -> None:
        mrns = self.clinic.recent_mrns
        q = random.choice(mrns) if mrns and random.random() < 0.5 else random.choice(SURNAMES)
        self.client.get(
            f"/api/patients?{urlencode({'q': q})}", headers=self.headers(), name="/api/patients?q=[q]"
        )


class Doctor(ClinicUser):
    role = "doctor"
    fixed_count = int(_env("DOCTOR_USERS", str(len(DOCTOR_USERNAMES))))
    wait_time = _wait("DOCTOR", "0.5,1.5")

    def on_start(self) -> None:
        super().on_start()
        seat = next(_doctor_seats)
        if seat >= len(self.clinic.doctors):
            log.warning("more doctor users than doctor accounts: two users share one doctor's queue")
        self.doctor_id, self.token = self.clinic.doctors[seat % len(self.clinic.doctors)]

    @task
    def see_next_patient(self) -> None:
        sent = time.monotonic()
        with self.client.post(
            f"/api/queue/{self.doctor_id}/next",
            headers=self.headers(),
            name="/api/queue/[doctor_id]/next",
            catch_response=True,
        ) as res:
            if res.status_code == 409:
                res.request_meta["name"] = "/api/queue/[doctor_id]/next (nobody waiting)"
                res.success()
                return
            if res.status_code != 200:
                res.failure(f"HTTP {res.status_code}: {res.text[:200]}")
                return
            snapshot = res.json()
        TRACKER.change(self.doctor_id, sent, snapshot["version"])
        appointment_id = snapshot["in_consultation"]["appointment_id"]
        item = {
            "medicine_id": random.choice(self.clinic.medicine_ids),
            "dosage": "1 tablet",
            "frequency": "twice a day",
            "duration_days": 5,
            "quantity": 10,
        }
        if self.clinic.instruction_ids:
            item["instruction_id"] = random.choice(self.clinic.instruction_ids)
        self.client.post(
            f"/api/appointments/{appointment_id}/prescriptions",
            json={"notes": "Rest and fluids.", "items": [item]},
            headers=self.headers(),
            name="/api/appointments/[id]/prescriptions",
        )
        self.client.request(
            "PATCH",
            f"/api/appointments/{appointment_id}/status",
            json={"status": "COMPLETED"},
            headers=self.headers(),
            name="/api/appointments/[id]/status",
        )


class Cashier(ClinicUser):
    role = "cashier"
    weight = int(_env("WEIGHT_CASHIER", "1"))
    wait_time = _wait("CASHIER", "1,3")

    @task
    def take_a_payment(self) -> None:
        res = self.client.get(
            "/api/bills?status=UNPAID&limit=20", headers=self.headers(), name="/api/bills?status=UNPAID"
        )
        if res.status_code != 200 or not res.json()["data"]:
            return
        bill = random.choice(res.json()["data"])
        body = {"amount": bill["due_amount"], "method": random.choice(("CASH", "CARD", "UPI"))}
        with self.client.post(
            f"/api/bills/{bill['id']}/payments",
            json=body,
            headers=self.headers(**{"Idempotency-Key": uuid.uuid4().hex}),
            name="/api/bills/[id]/payments",
            catch_response=True,
        ) as res:
            if res.status_code == 201:
                return
            if res.status_code == 422 and "due amount" in res.text:
                res.request_meta["name"] = "/api/bills/[id]/payments (paid first by another desk)"
                res.success()
            else:
                res.failure(f"HTTP {res.status_code}: {res.text[:200]}")


class Display(User):
    """A waiting-room screen: one stream held open, reconnecting with Last-Event-ID."""

    fixed_count = int(_env("DISPLAY_USERS", str(2 * len(DOCTOR_USERNAMES))))
    wait_time = between(1, 2)  # only between reconnects

    def on_start(self) -> None:
        self.clinic = clinic(self.host)
        doctor_id, _ = self.clinic.doctors[next(_display_seats) % len(self.clinic.doctors)]
        self.seat = DisplaySeat(doctor_id)
        TRACKER.seats[doctor_id].append(self.seat)
        self.last_version: int | None = None

    def on_stop(self) -> None:
        self.seat.connected = False
        self.seat.pending.clear()

    @task
    def watch(self) -> None:
        parts = urlsplit(self.host)
        started = time.monotonic()
        sock = None
        try:
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=60)
            resume = f"Last-Event-ID: {self.last_version}\r\n" if self.last_version is not None else ""
            sock.sendall(
                (
                    f"GET /api/queue/{self.seat.doctor_id}/stream HTTP/1.0\r\nHost: {parts.netloc}\r\n"
                    f"Authorization: Bearer {self.clinic.tokens['display']}\r\n"
                    f"Accept: text/event-stream\r\n{resume}\r\n"
                ).encode()
            )
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the response headers")
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if status.split()[1:2] != ["200"]:
                raise ConnectionError(f"stream refused: {status} {buffer[:200]!r}")
            self._read_events(sock, buffer, started)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a drop, a refusal, a bad event
            _fire("/api/queue/[doctor_id]/stream", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        finally:
            self.seat.connected = False
            if sock is not None:
                sock.close()

    def _read_events(self, sock: socket.socket, buffer: bytes, started: float) -> None:
        first = True
        received = time.monotonic()
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("stream closed by the server")
                received = time.monotonic()
                buffer += chunk
                continue
            block, buffer = buffer[:end], buffer[end + 2 :]
            version, data = None, b""
            for line in block.split(b"\n"):
                if line.startswith(b"id:"):
                    version = int(line[3:])
                elif line.startswith(b"data:"):
                    data = line[5:]
            if version is None:
                continue  # ": ping"
            snapshot = json.loads(data)
            if snapshot["version"] != version or any("name" in e["patient"] for e in snapshot["entries"]):
                raise ValueError(f"bad snapshot for the display role at version {version}")
            self.last_version = version
            if first:
                first = False
                self.seat.connected = True
                _fire("/api/queue/[doctor_id]/stream (first snapshot)", received - started, length=len(data))
            TRACKER.snapshot(self.seat, version, received)


# --- set-up and the pass/fail thresholds ---------------------------------------------------------


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    global _environment
    _environment = environment
    prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
    if prefix:
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)


def _merged(stats, request_type: str | None, exclude: str | None = None) -> StatsEntry:
    merged = StatsEntry(stats, request_type or "HTTP", "")
    for (_name, method), entry in stats.entries.items():
        if (request_type is None and method != exclude) or method == request_type:
            merged.extend(entry)
    return merged


def check_thresholds(stats) -> list[str]:
    """The broken thresholds (empty: the run passes)."""
    broken = []
    web = _merged(stats, None, exclude="SSE")
    if web.num_requests == 0:
        return ["no HTTP request was made"]
    p95 = web.get_response_time_percentile(0.95)
    if p95 > MAX_P95_MS:
        broken.append(f"HTTP p95 {p95:.0f} ms > {MAX_P95_MS:.0f} ms")
    if web.fail_ratio > MAX_FAIL_RATIO:
        broken.append(f"HTTP failures {web.fail_ratio:.2%} > {MAX_FAIL_RATIO:.2%}")
    delivery = StatsEntry(stats, "queue change -> display", "SSE")
    for (name, method), entry in stats.entries.items():
        if method == "SSE" and name == "queue change -> display":
            delivery.extend(entry)
    if delivery.num_requests:
        p95 = delivery.get_response_time_percentile(0.95)
        if p95 > MAX_DELIVERY_P95_MS:
            broken.append(f"stream delivery p95 {p95:.0f} ms > {MAX_DELIVERY_P95_MS:.0f} ms")
    streams = _merged(stats, "SSE")
    if streams.num_requests and streams.fail_ratio > MAX_FAIL_RATIO:
        broken.append(f"stream failures {streams.fail_ratio:.2%} > {MAX_FAIL_RATIO:.2%}")
    return broken


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the whole run
    broken = check_thresholds(environment.stats)
    if broken:
        log.error("thresholds broken: %s", "; ".join(broken))
        environment.process_exit_code = 1
    else:
        # The thresholds judge the run (Locust alone would exit 1 on any single failure).
        environment.process_exit_code = 0
        log.info(
            "thresholds met: HTTP p95 <= %.0f ms, failures <= %.2f%%, delivery p95 <= %.0f ms",
            MAX_P95_MS,
            100 * MAX_FAIL_RATIO,
            MAX_DELIVERY_P95_MS,
        )
