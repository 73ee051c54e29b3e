"""A whole clinic day replayed through the HTTP API, measured and then checked.

N patients across D doctors go through the day the way the clinic works it: reception
registers and books (the booking opens the bill), each doctor calls the next patient in
(`POST /api/queue/<id>/next`), writes a prescription for the patient in the room (the
snapshot's `in_consultation`) and completes the visit, and a cashier takes the payment
of the bill with an Idempotency-Key. Meanwhile W waiting-room displays (the `display`
role, W/D per doctor) hold `GET /api/queue/<id>/stream` open. Everything runs in one
process on gevent: C reception clients, C/2 cashier clients (--cashiers) and one client
per doctor, each on its own keep-alive connection. Every request is a step of
bench/lib/clinic_day.py, the scenario the Locust load test drives too. Reception keeps at most --max-waiting
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
bench.lib.results.write_result (or to --out); `render(result)` turns one into its
BENCHMARKS.md section (pure: importing this module patches nothing).

    .venv/bin/python -m bench.day_replay        # the defaults: 5,000 patients, 50 doctors, 1,000 displays
    .venv/bin/python -m bench.day_replay --patients 50000 --doctors 200 --displays 4000 -c 100
    .venv/bin/python -m bench.day_replay --base-url http://127.0.0.1:8000 \\
        --admin-user admin --admin-password admin-pass --patients 200 --doctors 5 --displays 10

Against --base-url the run needs an admin account (it creates its own doctors, desk
accounts and a display account, named after the run, and the "Consultation" and
"Hospital fee" categories, a medicine and an instruction if there are none). Without
--base-url it starts its own stack with bench/lib/ (PostgreSQL and Redis up, the
--database recreated and migrated, the --redis-url database flushed, gunicorn with
--workers gevent workers; --server-env NAME=VALUE passes settings such as DB_POOL_SIZE).
"""

if __name__ == "__main__":  # patch before anything opens sockets; importing does not
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from array import array  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from bench.lib import clinic_day, processes, results, services  # noqa: E402
from bench.lib.http import Answer, Http, SignInFailed, host_and_port, sign_in  # noqa: E402
from bench.lib.seed import seed_clinic  # noqa: E402
from bench.replay_report import STEPS, render_markdown, summarize, title_of  # noqa: E402
from bench.replay_streams import (  # noqa: E402
    CHANGE_KINDS,
    Change,
    Display,
    SnapshotBook,
    change_versions,
    delivery_latencies,
)

ROOT = Path(__file__).resolve().parent.parent
# bench/run.py finds this script by these three names (its section key, the place of the
# section in BENCHMARKS.md, and the run.py options it takes). The results file and its
# section are per size: day_replay_<N>.
SECTION = "day_replay"
ORDER = 70
ACCEPTS = ("concurrency", "workers", "schema")
FINAL_WAIT_SECONDS = 15.0  # how long every display may take to show the final state
MAX_ERROR_SAMPLES = 40
SAMPLES_PER_KIND = 5  # so that every kind of error shows up among the samples


class SetupError(Exception):
    """The run could not start (sign-in, accounts, reference data, the URL)."""


# --- what the run records ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, array] = {step: array("d") for step in STEPS}
        self.errors: Counter = Counter()
        self.error_samples: list[str] = []
        self.changes: list[Change] = []
        self.requests = 0

    def check(self, step: clinic_day.Step, answer: Answer, valid: Callable | None = None) -> bool:
        """Record the request; True when clinic_day.judge calls it a success."""
        self.requests += 1
        self.latencies.setdefault(step.name, array("d")).append(answer.elapsed)
        good = clinic_day.judge(step, answer, valid)
        if not good:
            self.error(step.name, answer.brief())
        return good

    def error(self, where: str, message: str) -> None:
        self.errors[where] += 1
        if self.errors[where] <= SAMPLES_PER_KIND and len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{where}: {message}")


class ReplayClient:
    """clinic_day's Client for one workstation: every answer recorded, a benign one an error
    too (this clinic is the run's own: nobody else calls its patients or pays its bills)."""

    def __init__(self, http: Http, recorder: Recorder):
        self.http, self.recorder = http, recorder

    def call(self, step, path, body=None, headers=None, valid=None) -> Answer | None:
        answer = self.http.request(step.method, path, body, headers)
        return answer if self.recorder.check(step, answer, valid) else None

    def close(self) -> None:
        self.http.close()


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

    def http(self, token: str) -> Http:
        return Http(self.host, self.port, token)


def login(host: str, port: int, username: str, password: str) -> tuple[str, dict]:
    try:
        return sign_in(f"http://{host}:{port}", username, password)
    except SignInFailed as exc:
        raise SetupError(str(exc)) from None


def _fee(index: int) -> tuple[str, str]:
    consultation, hospital = 300 + 50 * (index % 5), 50 + 25 * (index % 3)
    return f"{consultation}.00", f"{hospital}.00"


def _ensure_categories(admin: Http) -> None:
    """The two fee categories the booking files its bill items under: found, or created."""
    for name in ("Consultation", "Hospital fee"):
        found = admin.request("GET", "/api/categories?" + urlencode({"q": name, "limit": 100}))
        if found.status != 200:
            raise SetupError(f"GET /api/categories failed: {found.brief()}")
        if not any(row["name"] == name for row in found.data["data"]):
            created = admin.request("POST", "/api/categories", {"name": name})
            if created.status not in (201, 409):
                raise SetupError(f"creating category {name!r} failed: {created.brief()}")


def _ensure_reference(admin: Http) -> tuple[int, int | None]:
    """The two fee categories, a medicine and an instruction: found, or created."""
    _ensure_categories(admin)
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


# --- the day ---------------------------------------------------------------------------------------


@dataclass
class Day:
    """What the workstations of one day share."""

    clinic: Clinic
    recorder: Recorder
    progress: object
    patient_numbers: Iterator[int]  # one iterator shared by every reception desk
    rng: random.Random
    prescription: dict
    to_cashier: object  # gevent Queue of completed appointment ids, None at the end of the day
    bookings: dict[int, Booking] = field(default_factory=dict)


def reception(day: Day, token: str) -> None:
    """A reception desk: register the next patient, book them with their doctor."""
    client = ReplayClient(day.clinic.http(token), day.recorder)
    doctors = day.clinic.doctors
    for number in day.patient_numbers:
        doctor = doctors[number % len(doctors)]
        doctor.slots.acquire()  # the doctor's queue has room
        booked = False
        try:
            booked = _register_and_book(day, client, doctor, number)
        except (KeyError, TypeError, ValueError) as exc:  # an answer without a promised field
            day.recorder.error("book", f"unexpected answer: {exc!r}")
        finally:
            if not booked:
                doctor.slots.release()
    client.close()


def _register_and_book(day: Day, client: ReplayClient, doctor: Doctor, number: int) -> bool:
    registered = clinic_day.register(client, clinic_day.patient_body(day.rng, number))
    if registered is None:
        return False
    patient = registered.data
    answer = clinic_day.book(client, patient["id"], doctor.id)
    if answer is None:
        return False
    appointment = answer.data
    day.recorder.changes.append(
        Change("book", doctor.id, answer.started, appointment["id"], answered=answer.done)
    )
    day.bookings[appointment["id"]] = Booking(
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
    doctor.inbox.put(appointment["id"])
    return True


def consulting_room(day: Day, doctor: Doctor) -> None:
    """A doctor: for each patient booked, call the next one in, prescribe, complete."""
    client = ReplayClient(day.clinic.http(doctor.token), day.recorder)
    last_token = 0
    while doctor.inbox.get() is not None:
        try:
            visit = clinic_day.call_next(client, doctor.id)
            if visit is None:
                continue
            day.recorder.changes.append(
                Change(
                    "call",
                    doctor.id,
                    visit.called.started,
                    visit.appointment_id,
                    version=visit.version,
                    answered=visit.called.done,
                )  # fmt: skip
            )
            doctor.calls.append((visit.version, visit.appointment_id))
            if visit.token <= last_token:
                day.recorder.error(
                    "queue order", f"doctor {doctor.id} called token {visit.token} after {last_token}"
                )
            last_token = visit.token
            clinic_day.finish_visit(client, visit, day.prescription)
            if visit.completed is not None:
                day.recorder.changes.append(
                    Change(
                        "complete",
                        doctor.id,
                        visit.completed.started,
                        visit.appointment_id,
                        call_version=visit.version,
                        answered=visit.completed.done,
                    )  # fmt: skip
                )
                day.to_cashier.put(visit.appointment_id)
        except (KeyError, TypeError, ValueError) as exc:
            day.recorder.error("next", f"unexpected answer: {exc!r}")
        finally:
            doctor.slots.release()
    client.close()


def cash_desk(day: Day, token: str) -> None:
    """A cashier: pay the bill of each completed visit in full."""
    import gevent

    client = ReplayClient(day.clinic.http(token), day.recorder)
    while (appointment_id := day.to_cashier.get()) is not None:
        # The doctor may call a patient in before the desk that booked them has read
        # its answer; the booking is then a moment away.
        deadline = time.monotonic() + 30
        while appointment_id not in day.bookings and time.monotonic() < deadline:
            gevent.sleep(0.005)
        booking = day.bookings.get(appointment_id)
        if booking is None:
            day.recorder.error(
                "pay", f"appointment {appointment_id} was completed but never booked by this run"
            )
            continue
        paid = clinic_day.pay(client, booking.bill_id, booking.amount, "CASH", f"replay {appointment_id}")
        booking.paid = paid is not None
        day.progress.update(1)
    client.close()


def run_day(clinic: Clinic, args, recorder: Recorder, progress) -> tuple[dict[int, Booking], float]:
    """Reception, doctors and cashiers through N patients; returns (bookings, wall seconds)."""
    import gevent
    from gevent.lock import BoundedSemaphore
    from gevent.queue import Queue

    for doctor in clinic.doctors:
        doctor.inbox = Queue()
        doctor.slots = BoundedSemaphore(args.max_waiting)
    prescription = clinic_day.prescription(clinic.medicine_id, clinic.instruction_id)
    day = Day(
        clinic,
        recorder,
        progress,
        iter(range(args.patients)),
        random.Random(args.seed),
        prescription,
        Queue(),
    )
    started = time.monotonic()
    desks = [
        gevent.spawn(reception, day, clinic.reception_tokens[n % len(clinic.reception_tokens)])
        for n in range(args.concurrency)
    ]
    rooms = [gevent.spawn(consulting_room, day, doctor) for doctor in clinic.doctors]
    tills = [
        gevent.spawn(cash_desk, day, clinic.cashier_tokens[n % len(clinic.cashier_tokens)])
        for n in range(args.cashiers)
    ]
    gevent.joinall(desks, raise_error=True)
    for doctor in clinic.doctors:
        doctor.inbox.put(None)
    gevent.joinall(rooms, raise_error=True)
    for _ in tills:
        day.to_cashier.put(None)
    gevent.joinall(tills, raise_error=True)
    return day.bookings, time.monotonic() - started


# --- checking the final state ------------------------------------------------------------------------


class Verification:
    """The final state read back through the API by a pool of admin clients."""

    def __init__(self, clinic: Clinic, bookings: dict[int, Booking]):
        self.clinic, self.bookings = clinic, bookings
        self.problems: list[str] = []
        self.final_versions: dict[int, int] = {}
        self._clients: list[Http] = []

    @contextmanager
    def client(self) -> Iterator[Http]:
        conn = (
            self._clients.pop()
            if self._clients
            else Http(self.clinic.host, self.clinic.port, self.clinic.admin.token)
        )
        try:
            yield conn
        finally:
            self._clients.append(conn)

    def close(self) -> None:
        for conn in self._clients:
            conn.close()

    def get(self, path: str) -> Answer:
        with self.client() as api:
            return api.request("GET", path)

    def queue_empty(self, doctor: Doctor) -> None:
        answer = self.get(f"/api/queue/{doctor.id}")
        if answer.status != 200:
            self.problems.append(f"queue of doctor {doctor.id}: {answer.brief()}")
            return
        snapshot = answer.data
        self.final_versions[doctor.id] = snapshot["version"]
        if snapshot["entries"] or snapshot["waiting_count"] or snapshot["in_consultation"]:
            self.problems.append(
                f"queue of doctor {doctor.id} not empty: {snapshot['waiting_count']} waiting, "
                f"{len(snapshot['entries'])} active"
            )

    def _rows(self, path: str, query: dict, what: str) -> list[dict] | None:
        """Every row of a list, 100 a page (None, and a problem, if a page fails)."""
        rows, page = [], 1
        while True:
            answer = self.get(f"{path}?{urlencode({**query, 'limit': 100, 'page': page})}")
            if answer.status != 200:
                self.problems.append(f"{what}: {answer.brief()}")
                return None
            rows.extend(answer.data["data"])
            if page * 100 >= answer.data["meta"]["total"]:
                return rows
            page += 1

    def appointments_of(self, doctor: Doctor) -> None:
        dates = {b.appointment_date for b in self.bookings.values() if b.doctor_id == doctor.id}
        rows: list[dict] = []
        for day in sorted(dates):
            found = self._rows("/api/appointments", {"doctor_id": doctor.id, "date": day},
                               f"appointments of doctor {doctor.id}")  # fmt: skip
            if found is None:
                return
            rows.extend(found)
            tokens = sorted(row["token"] for row in rows if row["appointment_date"] == day)
            if tokens != list(range(1, len(tokens) + 1)):
                self.problems.append(
                    f"doctor {doctor.id} on {day}: tokens are not 1..{len(tokens)} without gaps or duplicates"
                )
        if len(rows) != doctor.expected:
            self.problems.append(f"doctor {doctor.id}: {len(rows)} appointments, expected {doctor.expected}")
        statuses = Counter(row["status"] for row in rows)
        if set(statuses) - {"COMPLETED"}:
            self.problems.append(f"doctor {doctor.id}: appointments not all COMPLETED: {dict(statuses)}")

    def bill_paid(self, booking: Booking) -> None:
        answer = self.get(f"/api/bills/{booking.bill_id}")
        if answer.status != 200:
            self.problems.append(f"bill {booking.bill_id}: {answer.brief()}")
            return
        bill = answer.data
        expected = ("PAID", "0.00", booking.amount, booking.amount)
        if (bill["status"], bill["due_amount"], bill["paid_amount"], bill["total_amount"]) != expected:
            self.problems.append(
                f"bill {bill['id']}: {bill['status']} total {bill['total_amount']} paid {bill['paid_amount']} "
                f"due {bill['due_amount']} (expected {booking.amount} paid in full)"
            )
        elif bill["appointment_id"] != booking.appointment_id or len(bill["payments"]) != 1:
            self.problems.append(f"bill {bill['id']}: wrong appointment or {len(bill['payments'])} payments")

    def none_of_ours_in(self, status: str) -> None:
        ours = {booking.bill_id for booking in self.bookings.values()}
        found = [bill["id"] for bill in self._rows("/api/bills", {"status": status}, f"bills {status}") or []
                 if bill["id"] in ours]  # fmt: skip
        if found:
            self.problems.append(f"{len(found)} of this run's bills are {status}, e.g. bill {found[0]}")

    def bookkeeping(self, patients: int) -> None:
        """What the run's own records must show: every id handed out once, every bill paid."""
        bookings = self.bookings.values()
        if len(bookings) != patients:
            self.problems.append(f"{len(bookings)} appointments booked, expected {patients}")
        for key, what in (("patient_id", "a patient id"), ("mrn", "an MRN"), ("bill_id", "a bill id")):
            if len({getattr(b, key) for b in bookings}) != len(bookings):
                self.problems.append(f"{what} was handed out twice")
        per_day = Counter((b.doctor_id, b.appointment_date, b.token) for b in bookings)
        if any(n > 1 for n in per_day.values()):
            self.problems.append("a token was handed out twice for one doctor and day")
        unpaid = sum(1 for b in bookings if not b.paid)
        if unpaid:
            self.problems.append(f"{unpaid} bills were not paid")


def verify(clinic: Clinic, bookings: dict[int, Booking], args) -> tuple[list[str], dict[int, int]]:
    """Problems found through the API (empty: all good), and each doctor's final queue version."""
    import gevent.pool

    check = Verification(clinic, bookings)
    pool = gevent.pool.Pool(max(1, min(args.concurrency, 50)))
    for doctor in clinic.doctors:
        pool.spawn(check.queue_empty, doctor)
        pool.spawn(check.appointments_of, doctor)
    for status in ("UNPAID", "PARTIALLY_PAID"):
        pool.spawn(check.none_of_ours_in, status)
    chosen = list(bookings.values())
    if args.verify_sample and len(chosen) > args.verify_sample:
        chosen = random.Random(args.seed).sample(chosen, args.verify_sample)
    for booking in chosen:
        pool.spawn(check.bill_paid, booking)
    pool.join(raise_error=True)
    check.close()
    check.bookkeeping(args.patients)
    return check.problems[:200], check.final_versions


# --- the run -----------------------------------------------------------------------------------------


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Screens:
    """The run's waiting-room displays and their greenlets."""

    book: SnapshotBook
    displays: list[Display]
    greenlets: list
    not_connected: list[Display]


def connect_displays(clinic: Clinic, args, recorder: Recorder) -> Screens:
    """W displays, W/D per doctor, each holding its doctor's stream; back when every one
    received its first snapshot (or could not connect)."""
    import gevent
    from gevent.event import Event

    book = SnapshotBook()
    displays = [
        Display(n, clinic.doctors[n % args.doctors].id, clinic.host, clinic.port, clinic.display_token, book)
        for n in range(args.displays)
    ]
    ready = [Event() for _ in displays]
    greenlets = []
    for display, event in zip(displays, ready, strict=True):
        greenlets.append(gevent.spawn(display.run, event))
        gevent.sleep(0.002)  # a steady ramp rather than thousands of connects at once
    connect_deadline = time.monotonic() + 30 + args.displays / 100
    for event in ready:
        event.wait(timeout=max(0.0, connect_deadline - time.monotonic()))
    not_connected = [d for d in displays if d.connects == 0]
    for display in not_connected:
        recorder.error(
            "stream", f"display {display.index} never connected: {display.failures[-1:] or 'timeout'}"
        )
    return Screens(book, displays, greenlets, not_connected)


def close_displays(screens: Screens, final_versions: dict[int, int], recorder: Recorder) -> list[str]:
    """Wait until every display shows its doctor's final queue, stop them; the problems."""
    import gevent

    displays, problems = screens.displays, []
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
    gevent.killall(screens.greenlets, timeout=5)
    if screens.book.unmasked:
        problems.append(
            f"{screens.book.unmasked} snapshots sent to the display role carried patient names or MRNs"
        )
    for display in displays:
        for failure in display.failures:
            recorder.error("stream", failure)
        if display.failure_count > len(display.failures):
            recorder.errors["stream"] += display.failure_count - len(display.failures)
    return problems


@dataclass
class Measured:
    """What one replay measured, before it becomes the results dict."""

    clinic: Clinic
    recorder: Recorder
    screens: Screens
    setup_seconds: float
    wall: float
    verify_seconds: float
    client_cpu: float  # seconds of this process during the day
    server_cpu: float | None  # seconds of the gunicorn workers during the day (own stack)
    problems: list[str]
    bills_checked: int


def replay(stack, args) -> dict:
    """Set up, connect the displays, run the day, check, measure; the results dict."""
    try:
        host, port = host_and_port(stack.base_url)
    except ValueError:
        raise SetupError(f"--base-url must be http://host:port, not {stack.base_url!r}") from None
    processes.raise_open_files_limit(args.displays + args.concurrency + args.cashiers + args.doctors + 256)
    recorder = Recorder()
    setup_started = time.monotonic()
    desks = max(1, min(args.concurrency, 4))  # desk accounts, shared by the C (and C/2) clients
    clinic = prepare_clinic(
        host, port, args.admin_user, args.admin_password, args.doctors, desks, args.patients
    )
    screens = connect_displays(clinic, args, recorder)
    setup_seconds = time.monotonic() - setup_started

    progress = _NoProgress()
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=args.patients, unit="patient", desc="day", mininterval=0.5, file=sys.stderr)
    workers = stack.worker_pids() if stack.worker_pids else []
    server_cpu_before, cpu_before = processes.cpu_seconds(workers), processes.own_cpu_seconds()
    bookings, wall = run_day(clinic, args, recorder, progress)
    client_cpu = processes.own_cpu_seconds() - cpu_before
    server_cpu = processes.cpu_seconds(workers) - server_cpu_before if workers else None
    progress.close()

    verify_started = time.monotonic()
    problems, final_versions = verify(clinic, bookings, args)
    problems += close_displays(screens, final_versions, recorder)
    verify_seconds = time.monotonic() - verify_started
    measured = Measured(clinic, recorder, screens, setup_seconds, wall, verify_seconds, client_cpu, server_cpu,
                        problems, min(len(bookings), args.verify_sample or len(bookings)))  # fmt: skip
    return results_of(measured, args, stack)


def stream_results(measured: Measured) -> dict:
    """The displays' side of the results: connections, and every change's delivery."""
    recorder, screens = measured.recorder, measured.screens
    displays = screens.displays
    calls = {doctor.id: doctor.calls for doctor in measured.clinic.doctors}
    change_versions(recorder.changes, screens.book, calls)
    deliveries = delivery_latencies(recorder.changes, displays)
    if deliveries.missed:
        recorder.error("stream", f"{deliveries.missed} deliveries missed (a display never showed a change)")
    if deliveries.unknown:
        recorder.error("stream", f"{deliveries.unknown} changes whose version no display ever showed")
    return {
        "displays": len(displays),
        "connected": len(displays) - len(screens.not_connected),
        # A dropped stream (reconnects) is an error: waiting rooms must not flicker.
        "reconnects": sum(max(0, d.connects - 1) for d in displays),
        "events": sum(len(d.versions) for d in displays),
        "missed": deliveries.missed,
        "unknown_version": deliveries.unknown,
        "first_snapshot": summarize([d.first_event_seconds for d in displays if d.first_event_seconds]),
        "delivery": summarize([value for values in deliveries.by_kind.values() for value in values]),
        "by_change": {kind: summarize(deliveries.by_kind[kind]) for kind in CHANGE_KINDS},
        "after_answer": summarize(deliveries.after_answer),
        "method": "request sent by the client that caused the change -> first snapshot with "
        "version >= the change's version received by each display of that doctor",
    }


def results_of(measured: Measured, args, stack) -> dict:
    """The results dict (the shape bench/results/day_replay_<N>.json keeps)."""
    recorder, wall, server_cpu = measured.recorder, measured.wall, measured.server_cpu
    stream = stream_results(measured)  # before counting errors: it may add some
    errors = sum(recorder.errors.values())
    data = {
        "name": f"day_replay_{args.patients}",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                    "python": platform.python_version(), "load_average_at_start": list(args.load_at_start)},
        "config": {"patients": args.patients, "doctors": args.doctors, "displays": args.displays,
                   "concurrency": args.concurrency, "cashiers": args.cashiers, "max_waiting": args.max_waiting,
                   "base_url": stack.base_url, "server": stack.description, "run_tag": measured.clinic.tag},
        "setup_seconds": round(measured.setup_seconds, 2),
        "wall_seconds": round(wall, 2),
        "verify_seconds": round(measured.verify_seconds, 2),
        "requests": recorder.requests,
        "rps": round(recorder.requests / wall, 1) if wall else None,
        "patients_per_hour": round(args.patients / wall * 3600) if wall else None,
        "client_cpu_percent": round(100 * measured.client_cpu / wall, 1) if wall else None,
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
        "stream": stream,
        "verification": {"ok": not measured.problems, "problems": measured.problems,
                         "bills_checked": measured.bills_checked},
    }  # fmt: skip
    data["ok"] = data["verification"]["ok"] and errors == 0 and stream["reconnects"] == 0
    return data


@dataclass
class Stack:
    base_url: str
    description: str
    dsn: str | None = None
    notes: list[str] = field(default_factory=list)
    worker_pids: Callable[[], list[int]] | None = None  # known when this run started the server


@contextmanager
def own_stack(args) -> Iterator[Stack]:
    """bench/lib/: PostgreSQL and Redis up, a fresh migrated database, an admin
    account, gunicorn with --workers gevent workers; stopped at the end."""
    services.ensure_services()
    dsn = services.fresh_database(args.database)
    services.flush_redis(args.redis_url)
    drift = services.build_schema(dsn, args.redis_url, args.schema)
    seed = seed_clinic(dsn, doctors=0, patients=0, completed_history=0)
    args.admin_user, args.admin_password = seed.admin, seed.password
    notes = [f"The migration lacks what the models declare: {line}" for line in drift]
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    with processes.serve(
        "wsgi:app",
        dsn=dsn,
        redis_url=args.redis_url,
        workers=args.workers,
        name="day-replay",
        extra_env=extra_env,
    ) as server:
        description = (
            f"gunicorn, {args.workers} gevent workers, PostgreSQL database {args.database}, "
            f"(schema from the {args.schema}), Redis {args.redis_url}, started by bench/lib/"
            + (f" with {' '.join(args.server_env)}" if args.server_env else "")
        )
        yield Stack(server.base, description, dsn, notes, server.worker_pids)


def render(result: dict) -> str:
    """bench/report.py's renderer for a day_replay_<N>.json section (with the facts of the run)."""
    env = result.get("environment", {})
    text = render_markdown(result["data"], heading=False)
    facts = (
        f"Measured {env.get('date', '?')} on {env.get('cores', '?')} cores ({env.get('cpu', '?')}), "
        f"load average {env.get('load_average_1m_at_start', '?')} at the start and "
        f"{env.get('load_average_1m_at_end', '?')} at the end. Command: `{result.get('command', '')}`."
    )
    notes = "".join(f"\n- {note}" for note in result.get("notes", []))
    return f"{facts}\n\n{text}{notes}\n" if notes else f"{facts}\n\n{text}"


def save(data: dict, args, stack: Stack) -> Path:
    """bench/results/day_replay_<N>.json through bench.lib.results (the shape bench/report.py
    reads), or the same shape at --out."""
    env = results.environment(stack.dsn)
    section = f"day_replay_{args.patients}"
    if args.out is None:
        return results.write_result(
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
    stored = {
        "section": section,
        "title": title_of(data),
        "order": ORDER,
        "renderer": "bench.day_replay:render",
        "command": results.command_line(),
        "ok": data["ok"],
        "notes": stack.notes,
        "environment": env,
        "data": data,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stored, indent=1, default=str) + "\n")
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
    parser.add_argument("--base-url", help="a running server (none: start one with bench/lib/)")
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
