"""A whole clinic day replayed through the HTTP API, measured and then checked.

N patients across D doctors go through the day the way the clinic works it: reception
registers and books (the booking opens the bill), each doctor calls the next patient in
(`POST /api/queue/<id>/next`), writes a prescription for the patient in the room (the
snapshot's `in_consultation`) and completes the visit, and a cashier takes the payment
of the bill with an Idempotency-Key. Meanwhile W waiting-room displays (the `display`
role, W/D per doctor) hold `GET /api/queue/<id>/stream` open. Everything runs in one
process on gevent: C reception clients, C/2 cashier clients (--cashiers) and one client
per doctor, each on its own keep-alive connection. Reception keeps at most --max-waiting
patients in each doctor's queue, the way arrivals spread over a day, so queues (and the
snapshots every display receives) stay the size they have in a clinic.

Measured: wall time of the day, requests per second, p50/p95/p99 per step (register,
book, next, prescribe, complete, pay), errors, and the stream delivery latency.

Delivery latency, measured from the outside (nothing is embedded in the app): for every
queue change the client that caused it notes when it SENT its request. The change's
queue version is known exactly for a call (`next` answers the snapshot, with `version`);
for a booking it is the lowest version any display saw with that appointment among the
entries (or the version at which it was called in, if no display saw it waiting); for a
completion, the lowest version after its call-in without it (or the doctor's next
call-in). For each display of that doctor the delivery time is when the display
received the first snapshot with a version >= the change's version, and the latency is
that minus the send time. The stream may coalesce changes (one snapshot for several),
which this handles: a newer snapshot delivers every older change. A change that some
display never received is a "missed" delivery and fails the run. Timestamps are one
clock (time.monotonic) in one process; the latency includes the request's own time, so
the same deliveries are also given from the moment the client had read its answer
(negative when the display was first). The client's and (own stack) the gunicorn
workers' CPU time during the day are recorded: on a busy machine the CPU per request
says more than latencies inflated by contention.

At the end the final state is checked through the API: every queue empty (no WAITING
or IN_CONSULTATION), every appointment COMPLETED, tokens 1..n unique per doctor and day,
none of the run's bills in the UNPAID or PARTIALLY_PAID lists and each bill read back
(--verify-sample of them, 0 = all) PAID in full with due 0.00, counts equal N, every
display at its doctor's final version. Any error or wrong state exits 1 (2: could not
start). The results go to bench/results/day_replay_<N>.json through
bench/harness.write_result (or to --out); `render(result)` turns one into its
BENCHMARKS.md section (pure: importing this module patches nothing).

    .venv/bin/python -m bench.day_replay        # the defaults: 5,000 patients, 50 doctors, 1,000 displays
    .venv/bin/python -m bench.day_replay --patients 50000 --doctors 200 --displays 4000 -c 100
    .venv/bin/python -m bench.day_replay --base-url http://127.0.0.1:8000 \\
        --admin-user admin --admin-password admin-pass --patients 200 --doctors 5 --displays 10

Against --base-url the run needs an admin account (it creates its own doctors, desk
accounts and a display account, named after the run, and the "Consultation" and
"Hospital fee" categories, a medicine and an instruction if there are none). Without
--base-url it starts its own stack with bench/harness.py (PostgreSQL and Redis up, the
--database recreated and migrated, the --redis-url database flushed, gunicorn with
--workers gevent workers; --server-env NAME=VALUE passes settings such as DB_POOL_SIZE).
"""

if __name__ == "__main__":  # patch before anything opens sockets; importing does not
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import bisect  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from array import array  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode, urlsplit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
STEPS = ("register", "book", "next", "prescribe", "complete", "pay")
CHANGE_KINDS = ("book", "call", "complete")
# bench/run.py finds this script by these three names (its section key, the place of the
# section in BENCHMARKS.md, and the run.py options it takes). The results file and its
# section are per size: day_replay_<N>.
SECTION = "day_replay"
ORDER = 70
ACCEPTS = ("concurrency", "workers", "schema")
IDLE_RECONNECT_SECONDS = 3.0  # gunicorn drops idle keep-alive connections after 5 s
STREAM_READ_TIMEOUT = 60.0  # a heartbeat comes at least every SSE_HEARTBEAT_SECONDS (15)
FINAL_WAIT_SECONDS = 15.0  # how long every display may take to show the final state
MAX_ERROR_SAMPLES = 40
SAMPLES_PER_KIND = 5  # so that every kind of error shows up among the samples
FIRST_NAMES = ("Asha", "Ravi", "Mina", "Omar", "Lena", "Arjun", "Priya", "Imran", "Sara", "Kiran", "Vikram")
SURNAMES = ("Kumar", "Das", "Shah", "Ali", "Roy", "Nair", "Iyer", "Khan", "Rao", "Singh", "Mehta", "Gill")


class SetupError(Exception):
    """The run could not start (sign-in, accounts, reference data, the URL)."""


# --- HTTP: one keep-alive connection per clinic workstation ----------------------------------


@dataclass(slots=True)
class Answer:
    status: int  # 0: no answer (connection error)
    data: object
    started: float  # time.monotonic() just before the request was sent
    elapsed: float
    error: str | None = None

    def brief(self) -> str:
        if self.error:
            return self.error
        text = json.dumps(self.data)[:300] if self.data is not None else ""
        return f"HTTP {self.status} {text}"


class Http:
    """A keep-alive HTTP/1.1 client for one workstation (no retries: an error is an error)."""

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 60.0):
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None) -> Answer:
        if self._conn is None or time.monotonic() - self._last_used > IDLE_RECONNECT_SECONDS:
            # Reconnect rather than reuse a connection the server may be closing right now.
            self.close()
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        sent_headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent_headers["Content-Type"] = "application/json"
        if self.token:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        started = time.monotonic()
        try:
            self._conn.request(method, path, body=payload, headers=sent_headers)
            response = self._conn.getresponse()
            raw = response.read()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Answer(0, None, started, time.monotonic() - started, f"{method} {path}: {exc!r}")
        ended = time.monotonic()
        self._last_used = ended
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw[:200].decode(errors="replace")
        return Answer(response.status, data, started, ended - started)


def login(host: str, port: int, username: str, password: str) -> tuple[str, dict]:
    answer = Http(host, port).request("POST", "/api/auth/token", {"username": username, "password": password})
    if answer.status != 200:
        raise SetupError(f"sign-in as {username!r} failed: {answer.brief()}")
    return answer.data["access_token"], answer.data["user"]


# --- what the run records ----------------------------------------------------------------------


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


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, array] = {step: array("d") for step in STEPS}
        self.errors: Counter = Counter()
        self.error_samples: list[str] = []
        self.changes: list[Change] = []
        self.requests = 0

    def check(
        self, step: str, answer: Answer, status: int, valid: Callable[[object], bool] | None = None
    ) -> bool:
        """Record the request; True when it answered `status` with a body that `valid` accepts."""
        self.requests += 1
        self.latencies[step].append(answer.elapsed)
        good = answer.status == status
        if good and valid is not None:
            try:
                good = bool(valid(answer.data))
            except (KeyError, TypeError, AttributeError):
                good = False
        if not good:
            self.error(step, answer.brief())
        return good

    def error(self, where: str, message: str) -> None:
        self.errors[where] += 1
        if self.errors[where] <= SAMPLES_PER_KIND and len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{where}: {message}")


# --- the clinic set up for the run -------------------------------------------------------------


@dataclass
class Doctor:
    index: int
    id: int
    token: str
    amount: str  # consultation fee + hospital fee: what each bill comes to
    expected: int  # patients assigned to this doctor
    inbox: object = None  # gevent Queue: one item per booked patient, None at the end of the day
    slots: object = None  # BoundedSemaphore(max_waiting): reception waits when the queue is full
    calls: list[tuple[int, int]] = field(default_factory=list)  # (version, appointment id)
    booked: int = 0


@dataclass(slots=True)
class Booking:
    patient_id: int
    mrn: str
    appointment_id: int
    doctor_id: int
    token: int
    bill_id: int
    amount: str
    appointment_date: str
    paid: bool = False


@dataclass
class Clinic:
    host: str
    port: int
    admin: Http
    doctors: list[Doctor]
    reception_tokens: list[str]
    cashier_tokens: list[str]
    display_token: str
    medicine_id: int
    instruction_id: int | None
    tag: str


def _fee(index: int) -> tuple[str, str]:
    consultation, hospital = 300 + 50 * (index % 5), 50 + 25 * (index % 3)
    return f"{consultation}.00", f"{hospital}.00"


def _ensure_reference(admin: Http) -> tuple[int, int | None]:
    """The two fee categories, a medicine and an instruction: found, or created."""
    for name in ("Consultation", "Hospital fee"):
        found = admin.request("GET", "/api/categories?" + urlencode({"q": name, "limit": 100}))
        if found.status != 200:
            raise SetupError(f"GET /api/categories failed: {found.brief()}")
        if not any(row["name"] == name for row in found.data["data"]):
            created = admin.request("POST", "/api/categories", {"name": name})
            if created.status not in (201, 409):
                raise SetupError(f"creating category {name!r} failed: {created.brief()}")
    medicines = admin.request("GET", "/api/medicines?limit=1")
    if medicines.status != 200:
        raise SetupError(f"GET /api/medicines failed: {medicines.brief()}")
    if medicines.data["data"]:
        medicine_id = medicines.data["data"][0]["id"]
    else:
        body = {"name": "Paracetamol", "generic_name": "Paracetamol", "form": "tablet", "strength": "500 mg"}
        created = admin.request("POST", "/api/medicines", {**body, "unit_price": "2.00"})
        if created.status != 201:
            raise SetupError(f"creating a medicine failed: {created.brief()}")
        medicine_id = created.data["id"]
    instructions = admin.request("GET", "/api/medicine-instructions?limit=1")
    instruction_id = None
    if instructions.status == 200 and instructions.data["data"]:
        instruction_id = instructions.data["data"][0]["id"]
    else:
        created = admin.request("POST", "/api/medicine-instructions", {"text": "After food"})
        if created.status == 201:
            instruction_id = created.data["id"]
    return medicine_id, instruction_id


def prepare_clinic(
    host: str, port: int, admin_user: str, admin_password: str, doctors: int, desks: int, patients: int
) -> Clinic:
    """Sign in as admin; create this run's doctors, desk accounts and display; sign them in."""
    import gevent.pool

    admin_token, admin_account = login(host, port, admin_user, admin_password)
    if admin_account["role"] != "admin":
        raise SetupError(f"{admin_user!r} is a {admin_account['role']} account, not an admin one")
    admin = Http(host, port, admin_token)
    medicine_id, instruction_id = _ensure_reference(admin)
    tag = f"r{int(time.time()):x}{random.randrange(16**3):03x}"
    password = uuid.uuid4().hex

    def create(username: str, role: str, name: str, **extra) -> int:
        client = Http(host, port, admin_token)
        body = {"username": username, "password": password, "name": name, "role": role, **extra}
        answer = client.request("POST", "/api/staff", body)
        client.close()
        if answer.status != 201:
            raise SetupError(f"creating {role} {username!r} failed: {answer.brief()}")
        return answer.data["id"]

    def make_doctor(index: int) -> Doctor:
        consultation, hospital = _fee(index)
        username = f"{tag}-doctor{index + 1}"
        create(
            username,
            "doctor",
            f"Dr. Replay {index + 1}",
            consultation_fee=consultation,
            hospital_fee=hospital,
        )
        token, user = login(host, port, username, password)
        amount = f"{int(consultation[:-3]) + int(hospital[:-3])}.00"
        expected = patients // doctors + (1 if index < patients % doctors else 0)
        return Doctor(index=index, id=user["id"], token=token, amount=amount, expected=expected)

    def make_desk(role: str, number: int) -> str:
        username = f"{tag}-{role}{number}"
        create(username, role, f"Replay {role} {number}")
        return login(host, port, username, password)[0]

    def quietly(make, *args):
        try:
            return make(*args)
        except SetupError as exc:  # raised once below, not once per greenlet
            return exc

    pool = gevent.pool.Pool(8)  # sign-up and sign-in hash passwords: CPU-bound on the server
    doctor_jobs = [pool.spawn(quietly, make_doctor, index) for index in range(doctors)]
    reception_jobs = [pool.spawn(quietly, make_desk, "reception", n + 1) for n in range(desks)]
    cashier_jobs = [pool.spawn(quietly, make_desk, "cashier", n + 1) for n in range(desks)]
    display_job = pool.spawn(quietly, make_desk, "display", 1)
    pool.join(raise_error=True)
    jobs = [*doctor_jobs, *reception_jobs, *cashier_jobs, display_job]
    failed = next((job.value for job in jobs if isinstance(job.value, SetupError)), None)
    if failed is not None:
        raise failed
    return Clinic(
        host=host,
        port=port,
        admin=admin,
        doctors=[job.value for job in doctor_jobs],
        reception_tokens=[job.value for job in reception_jobs],
        cashier_tokens=[job.value for job in cashier_jobs],
        display_token=display_job.value,
        medicine_id=medicine_id,
        instruction_id=instruction_id,
        tag=tag,
    )


# --- waiting-room displays -----------------------------------------------------------------------


class SnapshotBook:
    """Appointment ids per (doctor, version), parsed once whichever display saw it first."""

    def __init__(self) -> None:
        self.ids: dict[int, dict[int, frozenset]] = defaultdict(dict)
        self.unmasked = 0


class Display:
    """One waiting-room screen: a raw HTTP/1.0 socket on the stream, so the body is the
    event stream itself (no chunked framing); records (version, arrival time) per event."""

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
        sock = socket.create_connection((self.host, self.port), timeout=STREAM_READ_TIMEOUT)
        try:
            last = f"Last-Event-ID: {self.max_version}\r\n" if self.max_version >= 0 else ""
            sock.sendall(
                (
                    f"GET /api/queue/{self.doctor_id}/stream HTTP/1.0\r\nHost: {self.host}:{self.port}\r\n"
                    f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n{last}\r\n"
                ).encode()
            )
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the response headers")
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if status_line.split()[1:2] != ["200"]:
                raise ConnectionError(f"stream refused: {status_line} {buffer[:200]!r}")
            self.connects += 1
            now = time.monotonic()
            first = True
            while not self.stopping:
                end = buffer.find(b"\n\n")
                if end < 0:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("stream closed by the server")
                    now = time.monotonic()
                    buffer += chunk
                    continue
                block, buffer = buffer[:end], buffer[end + 2 :]
                if self._event(block, now) and first:
                    first = False
                    if self.first_event_seconds is None:
                        self.first_event_seconds = now - started
                    connected.set()
        finally:
            sock.close()

    def _event(self, block: bytes, now: float) -> bool:
        version, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"id:"):
                version = int(line[3:])
            elif line.startswith(b"data:"):
                data = line[5:]
        if version is None:
            return False  # a comment (": ping")
        known = self.book.ids[self.doctor_id]
        if version not in known:
            snapshot = json.loads(data)
            if snapshot["version"] != version:
                raise ValueError(f"event id {version} carries snapshot version {snapshot['version']}")
            if any("name" in entry["patient"] or "mrn" in entry["patient"] for entry in snapshot["entries"]):
                self.book.unmasked += 1
            known[version] = frozenset(entry["appointment_id"] for entry in snapshot["entries"])
        self.versions.append(version)
        self.times.append(now)
        self.max_version = max(self.max_version, version)
        return True


def change_versions(
    changes: list[Change], book: SnapshotBook, calls: dict[int, list[tuple[int, int]]]
) -> None:
    """Fill in the version of each booking and completion (see the module docstring)."""
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


# --- the day ---------------------------------------------------------------------------------------


def done(answer: Answer) -> float:
    return answer.started + answer.elapsed


def patient_body(rng: random.Random, number: int) -> dict:
    return {
        "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)} {number}",
        "gender": rng.choice(("female", "male", "other")),
        "age": rng.randrange(1, 90),
        "phone": f"+91{rng.choice('6789')}{rng.randrange(10**9):09d}",
    }


def run_day(clinic: Clinic, args, recorder: Recorder, progress) -> tuple[dict[int, Booking], float]:
    """Reception, doctors and cashiers through N patients; returns (bookings, wall seconds)."""
    import gevent
    from gevent.lock import BoundedSemaphore
    from gevent.queue import Queue

    host, port = clinic.host, clinic.port
    doctors = clinic.doctors
    for doctor in doctors:
        doctor.inbox = Queue()
        doctor.slots = BoundedSemaphore(args.max_waiting)
    bookings: dict[int, Booking] = {}
    to_cashier: Queue = Queue()
    patient_numbers: Iterator[int] = iter(range(args.patients))
    rng = random.Random(args.seed)
    prescription = {
        "notes": "Rest and fluids.",
        "items": [
            {
                "medicine_id": clinic.medicine_id,
                "instruction_id": clinic.instruction_id,
                "dosage": "1 tablet",
                "frequency": "twice a day",
                "duration_days": 5,
                "quantity": 10,
            }
        ],
    }

    def reception(token: str) -> None:
        client = Http(host, port, token)
        for number in patient_numbers:  # one iterator shared by every desk
            doctor = doctors[number % len(doctors)]
            doctor.slots.acquire()
            booked = False
            try:
                answer = client.request("POST", "/api/patients", patient_body(rng, number))
                if not recorder.check("register", answer, 201, lambda d: d["id"] and d["mrn"]):
                    continue
                patient = answer.data
                body = {
                    "patient_id": patient["id"],
                    "doctor_id": doctor.id,
                    "appointment_type": "NEW",
                    "chief_complaint": "fever",
                }
                answer = client.request("POST", "/api/appointments", body)
                if not recorder.check(
                    "book", answer, 201, lambda d: d["status"] == "WAITING" and d["bill_id"]
                ):
                    continue
                appointment = answer.data
                recorder.changes.append(
                    Change("book", doctor.id, answer.started, appointment["id"], answered=done(answer))
                )
                bookings[appointment["id"]] = Booking(
                    patient_id=patient["id"],
                    mrn=patient["mrn"],
                    appointment_id=appointment["id"],
                    doctor_id=doctor.id,
                    token=appointment["token"],
                    bill_id=appointment["bill_id"],
                    amount=doctor.amount,
                    appointment_date=appointment["appointment_date"],
                )
                doctor.booked += 1
                booked = True
                doctor.inbox.put(appointment["id"])
            except (KeyError, TypeError, ValueError) as exc:  # an answer without a promised field
                recorder.error("book", f"unexpected answer: {exc!r}")
            finally:
                if not booked:
                    doctor.slots.release()
        client.close()

    def consulting_room(doctor: Doctor) -> None:
        client = Http(host, port, doctor.token)
        last_token = 0
        while doctor.inbox.get() is not None:
            try:
                answer = client.request("POST", f"/api/queue/{doctor.id}/next")
                if not recorder.check("next", answer, 200, lambda d: d["in_consultation"]["appointment_id"]):
                    continue
                in_room = answer.data["in_consultation"]
                appointment_id, version = in_room["appointment_id"], answer.data["version"]
                recorder.changes.append(
                    Change(
                        "call",
                        doctor.id,
                        answer.started,
                        appointment_id,
                        version=version,
                        answered=done(answer),
                    )
                )
                doctor.calls.append((version, appointment_id))
                if in_room["token"] <= last_token:
                    recorder.error(
                        "queue order",
                        f"doctor {doctor.id} called token {in_room['token']} after {last_token}",
                    )
                last_token = in_room["token"]
                answer = client.request(
                    "POST", f"/api/appointments/{appointment_id}/prescriptions", prescription
                )
                recorder.check(
                    "prescribe",
                    answer,
                    201,
                    lambda d, expected=appointment_id: d["appointment_id"] == expected,
                )
                answer = client.request(
                    "PATCH", f"/api/appointments/{appointment_id}/status", {"status": "COMPLETED"}
                )
                if recorder.check("complete", answer, 200, lambda d: d["status"] == "COMPLETED"):
                    recorder.changes.append(
                        Change(
                            "complete",
                            doctor.id,
                            answer.started,
                            appointment_id,
                            call_version=version,
                            answered=done(answer),
                        )
                    )
                    to_cashier.put(appointment_id)
            except (KeyError, TypeError, ValueError) as exc:
                recorder.error("next", f"unexpected answer: {exc!r}")
            finally:
                doctor.slots.release()
        client.close()

    def cash_desk(token: str) -> None:
        client = Http(host, port, token)
        while (appointment_id := to_cashier.get()) is not None:
            # The doctor may call a patient in before the desk that booked them has read
            # its answer; the booking is then a moment away.
            deadline = time.monotonic() + 30
            while appointment_id not in bookings and time.monotonic() < deadline:
                gevent.sleep(0.005)
            booking = bookings.get(appointment_id)
            if booking is None:
                recorder.error(
                    "pay", f"appointment {appointment_id} was completed but never booked by this run"
                )
                continue
            answer = client.request(
                "POST",
                f"/api/bills/{booking.bill_id}/payments",
                {"amount": booking.amount, "method": "CASH", "reference": f"replay {appointment_id}"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            booking.paid = recorder.check(
                "pay", answer, 201, lambda d: d["status"] == "PAID" and d["due_amount"] == "0.00"
            )
            progress.update(1)
        client.close()

    started = time.monotonic()
    desks = [
        gevent.spawn(reception, clinic.reception_tokens[n % len(clinic.reception_tokens)])
        for n in range(args.concurrency)
    ]
    rooms = [gevent.spawn(consulting_room, doctor) for doctor in doctors]
    tills = [
        gevent.spawn(cash_desk, clinic.cashier_tokens[n % len(clinic.cashier_tokens)])
        for n in range(args.cashiers)
    ]
    gevent.joinall(desks, raise_error=True)
    for doctor in doctors:
        doctor.inbox.put(None)
    gevent.joinall(rooms, raise_error=True)
    for _ in tills:
        to_cashier.put(None)
    gevent.joinall(tills, raise_error=True)
    return bookings, time.monotonic() - started


# --- checking the final state ------------------------------------------------------------------------


def verify(clinic: Clinic, bookings: dict[int, Booking], args) -> tuple[list[str], dict[int, int]]:
    """Problems found through the API (empty: all good), and each doctor's final queue version."""
    import gevent.pool

    problems: list[str] = []
    final_versions: dict[int, int] = {}
    pool = gevent.pool.Pool(max(1, min(args.concurrency, 50)))
    clients: list[Http] = []

    @contextmanager
    def client() -> Iterator[Http]:
        conn = clients.pop() if clients else Http(clinic.host, clinic.port, clinic.admin.token)
        try:
            yield conn
        finally:
            clients.append(conn)

    def queue_empty(doctor: Doctor) -> None:
        with client() as api:
            answer = api.request("GET", f"/api/queue/{doctor.id}")
        if answer.status != 200:
            problems.append(f"queue of doctor {doctor.id}: {answer.brief()}")
            return
        snapshot = answer.data
        final_versions[doctor.id] = snapshot["version"]
        if snapshot["entries"] or snapshot["waiting_count"] or snapshot["in_consultation"]:
            problems.append(
                f"queue of doctor {doctor.id} not empty: {snapshot['waiting_count']} waiting, "
                f"{len(snapshot['entries'])} active"
            )

    def appointments_of(doctor: Doctor) -> None:
        dates = {b.appointment_date for b in bookings.values() if b.doctor_id == doctor.id} or {None}
        rows: list[dict] = []
        for day in sorted(d for d in dates if d):
            page = 1
            while True:
                query = urlencode({"doctor_id": doctor.id, "date": day, "limit": 100, "page": page})
                with client() as api:
                    answer = api.request("GET", f"/api/appointments?{query}")
                if answer.status != 200:
                    problems.append(f"appointments of doctor {doctor.id}: {answer.brief()}")
                    return
                rows.extend(answer.data["data"])
                if page * 100 >= answer.data["meta"]["total"]:
                    break
                page += 1
            tokens = sorted(row["token"] for row in rows if row["appointment_date"] == day)
            if tokens != list(range(1, len(tokens) + 1)):
                problems.append(
                    f"doctor {doctor.id} on {day}: tokens are not 1..{len(tokens)} without gaps or duplicates"
                )
        if len(rows) != doctor.expected:
            problems.append(f"doctor {doctor.id}: {len(rows)} appointments, expected {doctor.expected}")
        statuses = Counter(row["status"] for row in rows)
        if set(statuses) - {"COMPLETED"}:
            problems.append(f"doctor {doctor.id}: appointments not all COMPLETED: {dict(statuses)}")

    def bill_paid(booking: Booking) -> None:
        with client() as api:
            answer = api.request("GET", f"/api/bills/{booking.bill_id}")
        if answer.status != 200:
            problems.append(f"bill {booking.bill_id}: {answer.brief()}")
            return
        bill = answer.data
        if (bill["status"], bill["due_amount"], bill["paid_amount"], bill["total_amount"]) != (
            "PAID",
            "0.00",
            booking.amount,
            booking.amount,
        ):
            problems.append(
                f"bill {bill['id']}: {bill['status']} total {bill['total_amount']} paid {bill['paid_amount']} "
                f"due {bill['due_amount']} (expected {booking.amount} paid in full)"
            )
        elif bill["appointment_id"] != booking.appointment_id or len(bill["payments"]) != 1:
            problems.append(f"bill {bill['id']}: wrong appointment or {len(bill['payments'])} payments")

    def none_of_ours_unpaid(status: str) -> None:
        ours = {booking.bill_id for booking in bookings.values()}
        page = 1
        while True:
            with client() as api:
                answer = api.request(
                    "GET", f"/api/bills?{urlencode({'status': status, 'limit': 100, 'page': page})}"
                )
            if answer.status != 200:
                problems.append(f"bills {status}: {answer.brief()}")
                return
            found = [bill["id"] for bill in answer.data["data"] if bill["id"] in ours]
            if found:
                problems.append(f"{len(found)} of this run's bills are {status}, e.g. bill {found[0]}")
            if page * 100 >= answer.data["meta"]["total"]:
                return
            page += 1

    for doctor in clinic.doctors:
        pool.spawn(queue_empty, doctor)
        pool.spawn(appointments_of, doctor)
    for status in ("UNPAID", "PARTIALLY_PAID"):
        pool.spawn(none_of_ours_unpaid, status)
    chosen = list(bookings.values())
    if args.verify_sample and len(chosen) > args.verify_sample:
        chosen = random.Random(args.seed).sample(chosen, args.verify_sample)
    for booking in chosen:
        pool.spawn(bill_paid, booking)
    pool.join(raise_error=True)
    for conn in clients:
        conn.close()

    if len(bookings) != args.patients:
        problems.append(f"{len(bookings)} appointments booked, expected {args.patients}")
    if len({b.patient_id for b in bookings.values()}) != len(bookings):
        problems.append("a patient id was handed out twice")
    if len({b.mrn for b in bookings.values()}) != len(bookings):
        problems.append("an MRN was handed out twice")
    if len({b.bill_id for b in bookings.values()}) != len(bookings):
        problems.append("a bill id was handed out twice")
    per_day = Counter((b.doctor_id, b.appointment_date, b.token) for b in bookings.values())
    if any(n > 1 for n in per_day.values()):
        problems.append("a token was handed out twice for one doctor and day")
    unpaid = sum(1 for b in bookings.values() if not b.paid)
    if unpaid:
        problems.append(f"{unpaid} bills were not paid")
    return problems[:200], final_versions


# --- statistics and the report ---------------------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[index]


def summarize(values, errors: int = 0) -> dict:
    ordered = sorted(values)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "count": len(ordered),
        "errors": errors,
        "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else None,
        "p50_ms": ms(percentile(ordered, 50)),
        "p95_ms": ms(percentile(ordered, 95)),
        "p99_ms": ms(percentile(ordered, 99)),
        "max_ms": ms(ordered[-1]) if ordered else None,
    }


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def render_markdown(results: dict, heading: bool = True) -> str:
    """The run's results as Markdown tables (`heading`: with a ### title line)."""
    cfg, stream = results["config"], results["stream"]
    per_doctor = cfg["displays"] / cfg["doctors"]
    lines = []
    if heading:
        lines += [
            f"### Day replay: {cfg['patients']:,} patients, {cfg['doctors']:,} doctors, {cfg['displays']:,} displays",
            "",
            f"{results['generated_at']}, {results['machine']['cpus']} CPUs ({results['machine']['platform']}).",
            "",
        ]
    lines += [
        f"Server: {cfg['server']}. Clients: {cfg['concurrency']} reception, {cfg['cashiers']} cashier, one per "
        f"doctor (at most {cfg['max_waiting']} waiting per doctor), {cfg['displays']:,} display streams "
        f"({per_doctor:g} per doctor); they used {_fmt(results['client_cpu_percent'])} % of one core during "
        "the day, on the same machine as the server"
        + (
            f"; the gunicorn workers used {_fmt(results['server_cpu_seconds'])} s of CPU, "
            f"{_fmt(results['server_cpu_ms_per_request'])} ms per request (stream fan-out included)."
            if results.get("server_cpu_seconds") is not None
            else "."
        ),
        "",
        "| wall time | requests | requests/s | errors | final state |",
        "|---:|---:|---:|---:|---|",
        f"| {_fmt(results['wall_seconds'])} s | {_fmt(results['requests'])} | {_fmt(results['rps'])} "
        f"| {_fmt(results['errors'])} | {'correct' if results['verification']['ok'] else 'WRONG'} |",
        "",
        "| step | requests | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in STEPS:
        row = results["steps"][step]
        lines.append(
            f"| {step} | {_fmt(row['count'])} | {_fmt(row['errors'])} | {_fmt(row['p50_ms'])} "
            f"| {_fmt(row['p95_ms'])} | {_fmt(row['p99_ms'])} | {_fmt(row['max_ms'])} |"
        )
    lines += [
        "",
        "| stream delivery | deliveries | missed | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"book": "bookings", "call": "call-ins (`next`)", "complete": "completions"}
    rows = [("every change, from its request", stream["delivery"])]
    rows += [(f"{labels[kind]}, from the request", stream["by_change"][kind]) for kind in CHANGE_KINDS]
    if "after_answer" in stream:
        rows.append(("every change, from the answer (< 0: display first)", stream["after_answer"]))
    for label, row in rows:
        missed = _fmt(stream["missed"]) if row is stream["delivery"] else ""
        lines.append(
            f"| {label} | {_fmt(row['count'])} | {missed} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} "
            f"| {_fmt(row['p99_ms'])} | {_fmt(row['max_ms'])} |"
        )
    lines += [
        "",
        f"{stream['connected']:,} of {stream['displays']:,} displays connected "
        f"(first snapshot p50 {_fmt(stream['first_snapshot']['p50_ms'])} ms), "
        f"{stream['reconnects']:,} reconnects, {stream['events']:,} snapshots received.",
    ]
    if not results["verification"]["ok"]:
        lines += ["", "Problems: " + "; ".join(results["verification"]["problems"][:10])]
    if results["error_samples"]:
        first_of_kind: dict[str, str] = {}
        for sample in results["error_samples"]:
            first_of_kind.setdefault(sample.split(":", 1)[0], sample)
        counts = ", ".join(f"{kind} {count:,}" for kind, count in results["errors_by_step"].items())
        lines += ["", f"Errors: {counts}. The first of each kind: " + "; ".join(first_of_kind.values())]
    return "\n".join(lines) + "\n"


# --- the run -----------------------------------------------------------------------------------------


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def replay(stack, args) -> dict:
    """Set up, connect the displays, run the day, check, measure; the results dict."""
    import gevent
    from gevent.event import Event

    base_url = stack.base_url
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise SetupError(f"--base-url must be http://host:port, not {base_url!r}")
    host, port = parts.hostname, parts.port or 80
    _raise_open_files_limit(args.displays + args.concurrency + args.cashiers + args.doctors + 256)
    recorder = Recorder()

    setup_started = time.monotonic()
    desks = max(1, min(args.concurrency, 4))  # desk accounts, shared by the C (and C/2) clients
    clinic = prepare_clinic(
        host, port, args.admin_user, args.admin_password, args.doctors, desks, args.patients
    )
    book = SnapshotBook()
    displays = [
        Display(n, clinic.doctors[n % args.doctors].id, host, port, clinic.display_token, book)
        for n in range(args.displays)
    ]
    ready = [Event() for _ in displays]
    stream_greenlets = []
    for display, event in zip(displays, ready, strict=True):
        stream_greenlets.append(gevent.spawn(display.run, event))
        gevent.sleep(0.002)  # a steady ramp rather than thousands of connects at once
    connect_deadline = time.monotonic() + 30 + args.displays / 100
    for event in ready:
        event.wait(timeout=max(0.0, connect_deadline - time.monotonic()))
    setup_seconds = time.monotonic() - setup_started
    not_connected = [d for d in displays if d.connects == 0]
    for display in not_connected:
        recorder.error(
            "stream", f"display {display.index} never connected: {display.failures[-1:] or 'timeout'}"
        )

    progress = _NoProgress()
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=args.patients, unit="patient", desc="day", mininterval=0.5, file=sys.stderr)
    workers = stack.worker_pids() if stack.worker_pids else []
    server_cpu_before = _cpu_seconds(workers)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    bookings, wall = run_day(clinic, args, recorder, progress)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = _cpu_seconds(workers) - server_cpu_before if workers else None
    progress.close()

    verify_started = time.monotonic()
    problems, final_versions = verify(clinic, bookings, args)
    # Every display must come to show its doctor's final queue.
    deadline = time.monotonic() + FINAL_WAIT_SECONDS
    while time.monotonic() < deadline and any(
        d.max_version < final_versions.get(d.doctor_id, -1) for d in displays
    ):
        gevent.sleep(0.1)
    stale = [d for d in displays if d.max_version < final_versions.get(d.doctor_id, -1)]
    if stale:
        problems.append(f"{len(stale)} displays never received their doctor's final queue version")
    for display in displays:
        display.stopping = True
    gevent.killall(stream_greenlets, timeout=5)
    verify_seconds = time.monotonic() - verify_started
    if book.unmasked:
        problems.append(f"{book.unmasked} snapshots sent to the display role carried patient names or MRNs")
    # A dropped stream (reconnects) is an error: waiting rooms must not flicker.
    reconnects = sum(max(0, d.connects - 1) for d in displays)
    for display in displays:
        for failure in display.failures:
            recorder.error("stream", failure)
        if display.failure_count > len(display.failures):
            recorder.errors["stream"] += display.failure_count - len(display.failures)

    calls = {doctor.id: doctor.calls for doctor in clinic.doctors}
    change_versions(recorder.changes, book, calls)
    deliveries = delivery_latencies(recorder.changes, displays)
    if deliveries.missed:
        recorder.error("stream", f"{deliveries.missed} deliveries missed (a display never showed a change)")
    if deliveries.unknown:
        recorder.error("stream", f"{deliveries.unknown} changes whose version no display ever showed")
    all_deliveries = [value for values in deliveries.by_kind.values() for value in values]

    cpu_seconds = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    errors = sum(recorder.errors.values())
    results = {
        "name": f"day_replay_{args.patients}",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
            "load_average_at_start": list(args.load_at_start),
        },
        "config": {
            "patients": args.patients,
            "doctors": args.doctors,
            "displays": args.displays,
            "concurrency": args.concurrency,
            "cashiers": args.cashiers,
            "max_waiting": args.max_waiting,
            "base_url": base_url,
            "server": stack.description,
            "run_tag": clinic.tag,
        },
        "setup_seconds": round(setup_seconds, 2),
        "wall_seconds": round(wall, 2),
        "verify_seconds": round(verify_seconds, 2),
        "requests": recorder.requests,
        "rps": round(recorder.requests / wall, 1) if wall else None,
        "patients_per_hour": round(args.patients / wall * 3600) if wall else None,
        "client_cpu_percent": round(100 * cpu_seconds / wall, 1) if wall else None,
        # The gunicorn workers' CPU during the day (own stack only): contention on a busy
        # machine inflates latencies, much less the CPU each request costs.
        "server_cpu_seconds": round(server_cpu, 1) if server_cpu is not None else None,
        "server_cpu_ms_per_request": round(1000 * server_cpu / recorder.requests, 2)
        if server_cpu is not None and recorder.requests
        else None,
        "errors": errors,
        "errors_by_step": dict(recorder.errors),
        "error_samples": recorder.error_samples,
        "steps": {step: summarize(recorder.latencies[step], recorder.errors.get(step, 0)) for step in STEPS},
        "stream": {
            "displays": len(displays),
            "connected": len(displays) - len(not_connected),
            "reconnects": reconnects,
            "events": sum(len(d.versions) for d in displays),
            "missed": deliveries.missed,
            "unknown_version": deliveries.unknown,
            "first_snapshot": summarize([d.first_event_seconds for d in displays if d.first_event_seconds]),
            "delivery": summarize(all_deliveries),
            "by_change": {kind: summarize(deliveries.by_kind[kind]) for kind in CHANGE_KINDS},
            "after_answer": summarize(deliveries.after_answer),
            "method": "request sent by the client that caused the change -> first snapshot with "
            "version >= the change's version received by each display of that doctor",
        },
        "verification": {
            "ok": not problems,
            "problems": problems,
            "bills_checked": min(len(bookings), args.verify_sample or len(bookings)),
        },
    }
    results["ok"] = results["verification"]["ok"] and errors == 0 and reconnects == 0
    return results


@dataclass
class Stack:
    base_url: str
    description: str
    dsn: str | None = None
    notes: list[str] = field(default_factory=list)
    worker_pids: Callable[[], list[int]] | None = None  # known when this run started the server


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _harness():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import harness

    return harness


@contextmanager
def own_stack(args) -> Iterator[Stack]:
    """bench/harness.py: PostgreSQL and Redis up, a fresh migrated database, an admin
    account, gunicorn with --workers gevent workers; stopped at the end."""
    harness = _harness()
    harness.ensure_services()
    dsn = harness.fresh_database(args.database)
    harness.flush_redis(args.redis_url)
    drift = harness.build_schema(dsn, args.redis_url, args.schema)
    seed = harness.seed_clinic(dsn, doctors=0, patients=0, completed_history=0)
    args.admin_user, args.admin_password = seed.admin, seed.password
    notes = [f"The migration lacks what the models declare: {line}" for line in drift]
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    # Every display of the run signs in with one display account: let it hold them all.
    extra_env.setdefault("SSE_MAX_CONNECTIONS_PER_ACCOUNT", str(max(10, args.displays)))
    with harness.serve(
        "wsgi:app",
        dsn=dsn,
        redis_url=args.redis_url,
        workers=args.workers,
        name="day-replay",
        extra_env=extra_env,
    ) as server:
        description = (
            f"gunicorn, {args.workers} gevent workers, PostgreSQL database {args.database}, "
            f"(schema from the {args.schema}), Redis {args.redis_url}, started by bench/harness.py"
            + (f" with {' '.join(args.server_env)}" if args.server_env else "")
        )
        yield Stack(server.base, description, dsn, notes, server.worker_pids)


def render(result: dict) -> str:
    """bench/report.py's renderer for a day_replay_<N>.json section (the harness wrapper)."""
    env = result.get("environment", {})
    text = render_markdown(result["data"], heading=False)
    facts = (
        f"Measured {env.get('date', '?')} on {env.get('cores', '?')} cores ({env.get('cpu', '?')}), "
        f"load average {env.get('load_average_1m_at_start', '?')} at the start and "
        f"{env.get('load_average_1m_at_end', '?')} at the end. Command: `{result.get('command', '')}`."
    )
    notes = "".join(f"\n- {note}" for note in result.get("notes", []))
    return f"{facts}\n\n{text}{notes}\n" if notes else f"{facts}\n\n{text}"


def title_of(data: dict) -> str:
    cfg = data["config"]
    return (
        f"A clinic day through the API: {cfg['patients']:,} patients, {cfg['doctors']:,} doctors, "
        f"{cfg['displays']:,} displays"
    )


def save(data: dict, args, stack: Stack) -> Path:
    """bench/results/day_replay_<N>.json through the harness (the shape bench/report.py
    reads), or the same shape at --out."""
    harness = _harness()
    env = harness.environment(stack.dsn)
    section = f"day_replay_{args.patients}"
    if args.out is None:
        return harness.write_result(
            section,
            title=title_of(data),
            order=ORDER,
            renderer="bench.day_replay:render",
            data=data,
            env=env,
            ok=data["ok"],
            notes=stack.notes,
        )
    env = {**env, "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    result = {
        "section": section,
        "title": title_of(data),
        "order": ORDER,
        "renderer": "bench.day_replay:render",
        "command": harness.command_line(),
        "ok": data["ok"],
        "notes": stack.notes,
        "environment": env,
        "data": data,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return args.out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--patients", "-n", type=int, default=5000, help="patients through the day (N)")
    parser.add_argument("--doctors", "-d", type=int, default=50, help="doctors (D)")
    parser.add_argument(
        "--displays", "-w", type=int, default=1000, help="waiting-room streams (W), W/D per doctor"
    )
    parser.add_argument("--concurrency", "-c", type=int, default=50, help="reception clients (C)")
    parser.add_argument("--cashiers", type=int, help="cashier clients (none: C/2)")
    parser.add_argument("--max-waiting", type=int, default=10, help="at most this many in a doctor's queue")
    parser.add_argument("--base-url", help="a running server (none: start one with bench/harness.py)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the stack it starts")
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        default="migrations",
        help="own stack: schema from the migrations, or from the models while the migration lags them",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE", "hms_bench"),
        help="own stack: database to recreate",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
        help="own stack: Redis database to flush and use",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="own stack: an extra environment variable for gunicorn (repeatable), e.g. DB_MAX_OVERFLOW=10",
    )
    parser.add_argument(
        "--admin-user", default=os.environ.get("HMS_ADMIN_USER", "admin"), help="with --base-url"
    )
    parser.add_argument(
        "--admin-password", default=os.environ.get("HMS_ADMIN_PASSWORD", "admin-pass"), help="with --base-url"
    )
    parser.add_argument(
        "--sse-limit",
        type=int,
        default=int(os.environ.get("SSE_MAX_CONNECTIONS_PER_DOCTOR", 20)),
        help="the server's streams per doctor",
    )
    parser.add_argument(
        "--verify-sample",
        type=int,
        default=2000,
        help="read this many bills one by one (0: every bill); the UNPAID and PARTIALLY_PAID lists are always "
        "checked for every bill of the run",
    )
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--out", type=Path, help="results file (none: bench/results/day_replay_<N>.json)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if min(args.patients, args.doctors, args.concurrency, args.max_waiting) < 1 or args.displays < 0:
        parser.error("patients, doctors, concurrency and max-waiting must be >= 1, displays >= 0")
    if -(-args.displays // args.doctors) > args.sse_limit:
        parser.error(
            f"{args.displays} displays over {args.doctors} doctors is more than the stream limit of "
            f"{args.sse_limit} per doctor (SSE_MAX_CONNECTIONS_PER_DOCTOR)"
        )
    args.cashiers = args.cashiers or max(1, args.concurrency // 2)
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_at_start = os.getloadavg()
    try:
        return _run(args)
    except SetupError as exc:
        print(f"day replay could not start: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.base_url:
        stack = Stack(args.base_url.rstrip("/"), f"running server at {args.base_url}")
        data = replay(stack, args)
        path = save(data, args, stack)
    else:
        with own_stack(args) as stack:
            data = replay(stack, args)
        path = save(data, args, stack)
    print(render_markdown(data))
    print(f"results: {path}")
    if not data["ok"]:
        print("FAILED: errors or a wrong final state (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
