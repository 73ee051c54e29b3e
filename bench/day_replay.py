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

Every request is a step of bench/lib/clinic_day.py, the scenario the Locust load test
drives too. This module runs the day; bench/replay_clinic.py sets the clinic up,
bench/replay_streams.py holds the displays and matches their deliveries,
bench/replay_checks.py reads the final state back and bench/replay_report.py renders
the tables.

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
from array import array  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.lib import clinic_day, processes, results, services  # noqa: E402
from bench.lib.http import Answer, Http, host_and_port  # noqa: E402
from bench.lib.seed import seed_clinic  # noqa: E402
from bench.replay_checks import verify  # noqa: E402
from bench.replay_clinic import Booking, Clinic, Doctor, SetupError, prepare_clinic  # noqa: E402
from bench.replay_report import STEPS, render_markdown, server_metrics, summarize, title_of  # noqa: E402
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
            called = Change(
                "call", doctor.id, visit.called.started, visit.appointment_id, version=visit.version
            )
            called.answered = visit.called.done
            day.recorder.changes.append(called)
            doctor.calls.append((visit.version, visit.appointment_id))
            if visit.token <= last_token:
                day.recorder.error(
                    "queue order", f"doctor {doctor.id} called token {visit.token} after {last_token}"
                )
            last_token = visit.token
            clinic_day.finish_visit(client, visit, day.prescription)
            if visit.completed is not None:
                completed = Change("complete", doctor.id, visit.completed.started, visit.appointment_id)
                completed.call_version, completed.answered = visit.version, visit.completed.done
                day.recorder.changes.append(completed)
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
    data = results_of(measured, args, stack)
    data["server_metrics"] = scrape_metrics(stack.base_url)
    if data["server_metrics"].get("pool_timeouts"):
        data["ok"] = False  # a 503 for want of a connection is a failure of the day
    return data


def scrape_metrics(base_url: str) -> dict:
    """The server's /metrics at the end of the run (METRICS_TOKEN for a remote server)."""
    import urllib.error
    import urllib.request

    token = os.environ.get("METRICS_TOKEN")
    request = urllib.request.Request(
        base_url + "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return server_metrics(answer.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"unavailable": str(exc)[:200]}


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
    # Every display of the run signs in with one display account: let it hold them all.
    extra_env.setdefault("SSE_MAX_CONNECTIONS_PER_ACCOUNT", str(max(10, args.displays)))
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
