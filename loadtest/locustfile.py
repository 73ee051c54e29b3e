"""Locust load test of HMS: the clinic's roles working against a running server.

    locust -f loadtest/locustfile.py --headless -u 200 -r 20 -t 5m \\
        --host http://127.0.0.1:8000 --csv bench/results/locust

Every request is a step of bench/lib/clinic_day.py, the scenario the day replay
(bench/day_replay.py) drives too, and the display reads its stream with bench/lib/sse.py.

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
Many users share each account: start the server with RATE_LIMIT_PER_ACCOUNT=0 (or a limit
above the load), else its per-account limit (600 per minute) answers 429.
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

import logging
import os
import random
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from urllib.parse import urlsplit

from gevent.lock import Semaphore
from locust import User, between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner
from locust.stats import StatsEntry

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # locust puts only loadtest/ on the path; the shared helpers live in bench/lib
    sys.path.insert(0, str(ROOT))

from bench.lib import clinic_day  # noqa: E402
from bench.lib.http import Answer, Http, parse_body, sign_in  # noqa: E402

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
RNG = random.Random()


# --- accounts, signed in once per Locust process -----------------------------------------------


def _ids(host: str, path: str, token: str) -> list[int]:
    """The ids of the first page of a reference list."""
    client = Http.to(host, token)
    answer = client.request("GET", path)
    client.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {path} at {host} failed: {answer.brief()}")
    return [row["id"] for row in answer.data["data"]]


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
            CLINIC.tokens[role] = token or sign_in(host, *_account(role.upper(), default))[0]
        password = _env("DOCTOR_PASSWORD", "doctor-pass")
        for username in DOCTOR_USERNAMES:
            token, user = sign_in(host, username, password)
            if user["role"] != "doctor":
                raise RuntimeError(f"{username!r} is not a doctor account")
            CLINIC.doctors.append((user["id"], token))
        token = CLINIC.doctors[0][1]
        CLINIC.medicine_ids = _ids(host, "/api/medicines?limit=50", token)
        CLINIC.instruction_ids = _ids(host, "/api/medicine-instructions?limit=50", token)
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


class LocustClient:
    """clinic_day's Client on a Locust user's keep-alive session: one row per step (its
    path template) in Locust's statistics; a benign outcome (nobody waiting, a bill another
    desk paid first) is a success under its own name."""

    def __init__(self, user: ClinicUser):
        self.user = user

    def call(self, step, path, body=None, headers=None, valid=None) -> Answer | None:
        started = time.monotonic()
        with self.user.client.request(
            step.method, path, json=body, headers=self.user.headers(**(headers or {})), name=step.label,
            catch_response=True,
        ) as res:  # fmt: skip
            answer = Answer(
                res.status_code or 0, parse_body(res.content or b""), started, time.monotonic() - started
            )
            if clinic_day.judge(step, answer, valid):
                res.success()
                return answer
            outcome = clinic_day.benign(step, answer)
            if outcome is None:
                res.failure(f"{step.name}: {answer.brief()}")
            else:
                res.request_meta["name"] = f"{step.label} ({outcome.label})"
                res.success()
        return None


class ClinicUser(FastHttpUser):
    abstract = True
    role = ""

    def on_start(self) -> None:
        self.clinic = clinic(self.host)
        self.token = self.clinic.tokens.get(self.role, "")
        self.api = LocustClient(self)

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", **extra}


class Reception(ClinicUser):
    role = "reception"
    weight = int(_env("WEIGHT_RECEPTION", "3"))
    wait_time = _wait("RECEPTION", "1,3")

    @task(3)
    def register_and_book(self) -> None:
        registered = clinic_day.register(self.api, clinic_day.patient_body(RNG))
        if registered is None:
            return
        self.clinic.recent_mrns.append(registered.data["mrn"])
        doctor_id = self._shorter_queue()
        if doctor_id is not None:
            clinic_day.book(self.api, registered.data["id"], doctor_id)

    def _shorter_queue(self) -> int | None:
        """Look at two doctors' queues (as a desk would) and pick the shorter, if not full."""
        best = None
        for doctor_id, _ in RNG.sample(self.clinic.doctors, min(2, len(self.clinic.doctors))):
            waiting = clinic_day.waiting_count(self.api, doctor_id)
            if waiting is not None and waiting < MAX_WAITING and (best is None or waiting < best[1]):
                best = (doctor_id, waiting)
        return best[0] if best else None

    @task(2)
    def search(self) -> None:
        mrns = self.clinic.recent_mrns
        q = RNG.choice(mrns) if mrns and RNG.random() < 0.5 else RNG.choice(clinic_day.SURNAMES)
        clinic_day.search(self.api, q)


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
        visit = clinic_day.call_next(self.api, self.doctor_id)
        if visit is None:
            return  # nobody waiting (its own row), or a failure (counted)
        TRACKER.change(self.doctor_id, visit.called.started, visit.version)
        instruction = RNG.choice(self.clinic.instruction_ids) if self.clinic.instruction_ids else None
        clinic_day.finish_visit(
            self.api, visit, clinic_day.prescription(RNG.choice(self.clinic.medicine_ids), instruction)
        )


class Cashier(ClinicUser):
    role = "cashier"
    weight = int(_env("WEIGHT_CASHIER", "1"))
    wait_time = _wait("CASHIER", "1,3")

    @task
    def take_a_payment(self) -> None:
        bills = clinic_day.unpaid_bills(self.api)
        if bills:
            bill = RNG.choice(bills)
            clinic_day.pay(self.api, bill["id"], bill["due_amount"], RNG.choice(("CASH", "CARD", "UPI")))


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
        stream = None
        try:
            stream = clinic_day.open_display(parts.hostname, parts.port or 80, self.seat.doctor_id,
                                             self.clinic.tokens["display"], self.last_version)  # fmt: skip
            self._follow(stream, started)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a drop, a refusal, a bad event
            _fire("/api/queue/[doctor_id]/stream", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        finally:
            self.seat.connected = False
            if stream is not None:
                stream.close()

    def _follow(self, stream, started: float) -> None:
        first = True
        for received, version, data in clinic_day.snapshots(stream):
            snapshot = clinic_day.read_snapshot(data, version)
            if clinic_day.shows_identity(snapshot):
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
