"""API latency (issue 3): booking and the cached queue snapshot under 50 concurrent clients.

    .venv/bin/python -m bench.api_latency [--duration 10] [--warmup 2] [--concurrency 50]
                                          [--workers 2] [--profile]

One run: a fresh `hms_bench` database (migrations), Redis DB 7 emptied, 51 doctors with
fees, 2,000 patients, today's queue of every doctor (20 patients) and yesterday's
completed consultations; then gunicorn (gunicorn.conf.py, N gevent workers) serves the
HMS app and, with the same settings, the hello-world baseline (bench/hello_app.py).
Each scenario is measured right after the baseline, closed loop (bench/loadgen.py):

- queue_snapshot: GET /api/queue/<doctor_id> over 50 doctors (cached in Redis);
- booking_spread: POST /api/appointments over 50 doctors;
- booking_single_client: one client, the same bookings: latency without contention;
- booking_one_doctor: every client books the same doctor (the worst case: all bookings
  queue on that doctor's queue_days row lock);
- booking_open_loop: bookings over 50 doctors arriving at --booking-rate per second
  (default 20) whatever the answers do: latency at a given load, not at saturation.

During the bookings a sampler reads pg_stat_activity every 50 ms: what the database
backends were doing (running, waiting on a lock, idle inside a transaction). After
them the queue invariants are checked in the database (tokens 1..N without gaps, active
positions 1..K, one bill per booking): a run that broke them fails. `--profile` adds a
short pass per scenario with py-spy sampling every worker (summary in the JSON, raw
stacks under bench/out/).

Then the cost of the API rate limits (issue 16): queue_snapshot again on the same HMS
(limits off, as in every benchmark) and on a second HMS with both limits at
RATE_LIMIT_ON (every call checked in Redis, none refused), alternately for
--rate-limit-rounds rounds; the difference in worker CPU per request is the check's cost.
"""

# ruff: noqa: E402
from __future__ import annotations

if __name__ == "__main__":  # the clients are greenlets: patch before anything else is imported
    from gevent import monkey

    monkey.patch_all()

import argparse
import itertools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib import processes, results, services
from bench.lib.http import get_token
from bench.lib.seed import seed_clinic

SECTION = "api"
TITLE = "API latency: booking and the queue snapshot (issue 3)"
ORDER = 10
# The options of bench/run.py this script takes.
ACCEPTS = ("duration", "warmup", "concurrency", "workers", "profile", "schema")
BOOKING_P95_AIM_MS = 50.0
# The API rate limits' check, on every call and never refusing one: its cost alone.
RATE_LIMIT_ON = "1000000 per minute"
RATE_LIMIT_COST_AIM_MS = 0.1
SNAPSHOT_RATIO_AIM = 2.0
# key -> (label, expected status, clients: None = --concurrency)
SCENARIOS: dict[str, tuple[str, int, int | None]] = {
    "queue_snapshot": ("GET /api/queue/<doctor_id> (cached), 50 doctors", 200, None),
    "booking_single_client": ("POST /api/appointments, 1 client (no contention)", 201, 1),
    "booking_spread": ("POST /api/appointments, 50 doctors", 201, None),
    "booking_one_doctor": ("POST /api/appointments, one doctor (worst case)", 201, None),
    # Open loop: bookings arrive at --booking-rate per second whatever the answers do.
    "booking_open_loop": ("POST /api/appointments, 50 doctors, open loop", 201, None),
}
OPEN_LOOP = {"booking_open_loop"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before each run")
    parser.add_argument("--concurrency", type=int, default=50, help="closed-loop clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers (WEB_CONCURRENCY)")
    parser.add_argument("--doctors", type=int, default=50, help="doctors the spread scenarios use")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--queue-length", type=int, default=20, help="today's seeded queue per doctor")
    parser.add_argument(
        "--booking-rate", type=float, default=20.0, help="bookings per second of booking_open_loop"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--profile", action="store_true", help="add a py-spy pass per scenario")
    parser.add_argument(
        "--rate-limit-rounds",
        type=int,
        default=3,
        help="rounds of queue_snapshot with the API rate limits off, then on (0: not measured)",
    )
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        default="migrations",
        help="build the schema with the migrations (default) or from the models (db.create_all)",
    )
    parser.add_argument("--database", default=None, help="PostgreSQL database (default hms_bench)")
    parser.add_argument("--redis-url", default=None, help="default redis://127.0.0.1:6379/7")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


# --- what the database backends do --------------------------------------------------------


class WaitSampler:
    """Samples pg_stat_activity of one database every `interval` seconds in a greenlet.

    The summary gives, per (state, wait event, statement), the average number of
    backends found in it: a lock queue shows up as many backends waiting on `Lock`
    with the statement that waits.
    """

    QUERY = """
        SELECT state, coalesce(wait_event_type, 'running'), coalesce(wait_event, ''),
               left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
        FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND backend_type = 'client backend' AND state <> 'idle'
    """

    def __init__(self, dsn: str, interval: float = 0.05) -> None:
        self.dsn, self.interval = dsn, interval
        self.counts: Counter = Counter()
        self.samples = 0
        self._greenlet = None

    def __enter__(self) -> WaitSampler:
        import gevent

        self._running = True
        self._greenlet = gevent.spawn(self._loop)
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        self._greenlet.join(timeout=5)

    def _loop(self) -> None:
        import gevent
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while self._running:
                for row in conn.execute(self.QUERY):
                    self.counts[row] += 1
                self.samples += 1
                gevent.sleep(self.interval)

    def summary(self, top: int = 8) -> dict:
        busy = sum(self.counts.values()) / self.samples if self.samples else 0.0
        rows = [
            {
                "state": state,
                "wait": f"{kind}:{event}" if event else kind,
                "query": query,
                "avg_backends": round(count / self.samples, 2),
            }
            for (state, kind, event, query), count in self.counts.most_common(top)
        ]
        return {"samples": self.samples, "avg_busy_backends": round(busy, 2), "top": rows}


# --- profiles ----------------------------------------------------------------------------


def profile_workers(worker_pids: list[int], seconds: float, name: str) -> dict:
    """py-spy record (raw, non-blocking) of every worker for `seconds`; top frames."""
    results.OUT_DIR.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return {"error": "py-spy not installed (requirements-bench.txt)"}
    outputs, profilers = [], []
    for pid in worker_pids:
        output = results.OUT_DIR / f"profile-{name}-{pid}.txt"
        outputs.append(output)
        profilers.append(
            subprocess.Popen(
                [str(py_spy), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                 "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )  # fmt: skip
    return {"processes": profilers, "outputs": outputs}


def summarize_profile(outputs: list[Path], top: int = 12) -> dict:
    """Inclusive share of samples per frame (app code and libraries) and self share."""
    inclusive: Counter = Counter()
    self_time: Counter = Counter()
    total = 0
    for output in outputs:
        if not output.exists():
            continue
        for line in output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [_short_frame(frame) for frame in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] += samples
            self_time[frames[-1]] += samples
    if not total:
        return {"samples": 0}

    def share(counter: Counter, keep: Callable[[str], bool]) -> list[dict]:
        chosen = [(frame, n) for frame, n in counter.most_common() if keep(frame)][:top]
        return [{"frame": frame, "percent": round(100 * n / total, 1)} for frame, n in chosen]

    by_package: Counter = Counter()
    for frame, n in self_time.items():
        by_package[_package(frame)] += n
    return {
        "samples": total,
        "raw": [str(path.relative_to(path.parents[2])) for path in outputs],
        "self_by_package": [
            {"package": package, "percent": round(100 * n / total, 1)}
            for package, n in by_package.most_common(8)
        ],
        "app_inclusive": share(inclusive, lambda frame: "hms/" in frame),
        "self": share(self_time, lambda frame: True),
    }


def _package(frame: str) -> str:
    """'send (gevent/_socketcommon.py:716)' -> 'gevent'; 'json/encoder.py' -> 'json (stdlib)'."""
    where = frame.partition(" (")[2]
    top = where.split("/", 1)[0] if "/" in where else where.split(".py", 1)[0]
    return "hms" if where.startswith("hms/") else top or "?"


def _short_frame(frame: str) -> str:
    """'function (/long/path/site-packages/pkg/mod.py:12)' -> 'function (pkg/mod.py:12)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# --- the run -----------------------------------------------------------------------------


@dataclass
class Context:
    token: str
    doctors: list[int]
    hot_doctor: int
    patients: list[int]


def request_factories(ctx: Context) -> dict:
    auth = {"Authorization": f"Bearer {ctx.token}"}
    json_auth = {**auth, "Content-Type": "application/json"}
    booking_numbers = itertools.count()

    def snapshot(index: int, number: int):
        doctor = ctx.doctors[(index + number) % len(ctx.doctors)]
        return "GET", f"/api/queue/{doctor}", None, auth

    def booking(doctor_of: Callable[[int], int]):
        def make(index: int, number: int):
            n = next(booking_numbers)
            body = {
                "patient_id": ctx.patients[n % len(ctx.patients)],
                "doctor_id": doctor_of(n),
                "appointment_type": "NEW",
                "chief_complaint": "Fever and cough",
            }
            return "POST", "/api/appointments", json.dumps(body).encode(), json_auth

        return make

    return {
        "queue_snapshot": snapshot,
        "booking_spread": booking(lambda n: ctx.doctors[n % len(ctx.doctors)]),
        "booking_single_client": booking(lambda n: ctx.doctors[n % len(ctx.doctors)]),
        "booking_open_loop": booking(lambda n: ctx.doctors[n % len(ctx.doctors)]),
        "booking_one_doctor": booking(lambda n: ctx.hot_doctor),
    }


def hello_request(index: int, number: int):
    return "GET", "/hello", None, {}


INVARIANTS = """
    SELECT a.doctor_id, count(*) AS appointments, max(a.token) AS max_token,
           count(DISTINCT a.token) AS tokens,
           count(*) FILTER (WHERE a.status IN ('WAITING', 'IN_CONSULTATION')) AS active,
           coalesce(max(a.queue_position) FILTER (WHERE a.status IN ('WAITING', 'IN_CONSULTATION')), 0)
               AS max_position,
           count(DISTINCT a.queue_position) FILTER (WHERE a.status IN ('WAITING', 'IN_CONSULTATION'))
               AS positions,
           max(q.last_token) AS last_token
    FROM appointments a
    JOIN queue_days q ON q.doctor_id = a.doctor_id AND q.queue_date = a.appointment_date
    WHERE a.appointment_date = (now() AT TIME ZONE 'UTC')::date
    GROUP BY a.doctor_id
"""


def check_invariants(dsn: str, seeded_today: int, booked: int) -> dict:
    """The queue invariants of API.md, and one consultation bill per booking."""
    import psycopg

    problems = []
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(INVARIANTS).fetchall()
        bills = conn.execute(
            "SELECT count(*), count(DISTINCT appointment_id) FROM bills WHERE appointment_id IS NOT NULL"
        ).fetchone()
        items = conn.execute("SELECT count(*) FROM bill_items").fetchone()[0]
    total = 0
    for doctor, count, max_token, tokens, active, max_position, positions, last_token in rows:
        total += count
        if not count == max_token == tokens == last_token:
            problems.append(f"doctor {doctor}: {count} appointments, tokens max {max_token}, "
                            f"{tokens} distinct, last_token {last_token}")  # fmt: skip
        if not active == max_position == positions:
            problems.append(
                f"doctor {doctor}: {active} active, positions max {max_position}, {positions} distinct"
            )
    if total != seeded_today + booked:
        problems.append(f"{total} appointments today, expected {seeded_today} seeded + {booked} booked")
    if bills[0] != booked or bills[1] != booked or items != 2 * booked:
        problems.append(f"{bills[0]} bills ({bills[1]} appointments) and {items} items for {booked} bookings")
    return {"ok": not problems, "appointments_today": total, "bookings": booked, "problems": problems[:10]}


@dataclass
class Run:
    """What the scenarios of one run share and gather."""

    args: argparse.Namespace
    dsn: str
    scenarios: dict = field(default_factory=dict)  # key -> entry
    steps: list[dict] = field(default_factory=list)  # the plot's points
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    booked: int = 0  # bookings answered 201, warm-up and profile passes included
    rate_limit: dict | None = None  # the API rate limits' cost (measure_rate_limit_cost)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench import loadgen  # noqa: F401 - patches the process for gevent, before anything opens a socket

    redis_url = args.redis_url or services.DEFAULT_REDIS_URL
    services.ensure_services()
    dsn = services.fresh_database(args.database or services.DEFAULT_DATABASE)
    services.flush_redis(redis_url)
    drift = services.build_schema(dsn, redis_url, args.schema)
    # One more doctor than the spread uses: the worst case gets a queue of its own.
    seed = seed_clinic(dsn, doctors=args.doctors + 1, patients=args.patients, queue_length=args.queue_length)
    env = results.environment(dsn)
    print(f"seeded {args.doctors + 1} doctors, {args.patients} patients; migration drift: {drift or 'none'}")
    run = Run(args, dsn)
    if drift:
        run.notes.append("The migration lacks what the models declare: " + "; ".join(drift))
    server_options = {"dsn": dsn, "redis_url": redis_url, "workers": args.workers}
    with (
        processes.serve("wsgi:app", name="hms", **server_options) as hms,
        processes.serve("bench.hello_app:app", name="hello", ready_path="/hello", **server_options) as hello,
    ):
        ctx = Context(
            token=get_token(hms.base, seed.reception, seed.password),
            doctors=seed.doctor_ids[: args.doctors],
            hot_doctor=seed.doctor_ids[-1],
            patients=seed.patient_ids,
        )
        factories = request_factories(ctx)
        for key in args.scenarios.split(","):
            measure_scenario(run, key, factories[key], hms, hello)
        if args.rate_limit_rounds > 0:
            measure_rate_limit_cost(run, factories["queue_snapshot"], hms, server_options)
    return finish(run, drift, env)


def measure_rate_limit_cost(run: Run, factory, hms, server_options: dict) -> None:
    """queue_snapshot on `hms` (rate limits off) and on a second HMS with both limits at
    RATE_LIMIT_ON, alternately, each round off then on; into `run.rate_limit`."""
    from bench import loadgen

    args = run.args
    load = {"concurrency": args.concurrency, "duration": args.duration, "warmup": args.warmup}
    limits = {"RATE_LIMIT_PER_ACCOUNT": RATE_LIMIT_ON, "RATE_LIMIT_PER_ADDRESS": RATE_LIMIT_ON}
    sides: dict[str, list[dict]] = {"off": [], "on": []}
    print(
        f"-- rate limit cost: queue_snapshot, limits off then on, {args.rate_limit_rounds} rounds", flush=True
    )
    with processes.serve("wsgi:app", name="hms-limited", extra_env=limits, **server_options) as limited:
        for _ in range(args.rate_limit_rounds):
            for side, server in (("off", hms), ("on", limited)):
                measured = loadgen.run(
                    server.host, server.port, factory, server_pids=server.worker_pids(), **load
                )
                summary = measured.summary()
                sides[side].append(summary)
                unexpected = {s: n for s, n in measured.all_statuses.items() if s != 200}
                if unexpected:
                    run.ok = False
                    run.notes.append(f"rate limit cost ({side}): unexpected statuses {unexpected}")
                print(json.dumps({side: summary}), flush=True)

    def mean_cpu(side: str) -> float | None:
        values = [s["server_cpu_ms_per_request"] for s in sides[side] if "server_cpu_ms_per_request" in s]
        return round(sum(values) / len(values), 4) if values else None

    off, on = mean_cpu("off"), mean_cpu("on")
    cost = round(on - off, 4) if off is not None and on is not None else None
    run.rate_limit = {
        "limit": RATE_LIMIT_ON,
        "rounds": args.rate_limit_rounds,
        "off": sides["off"],
        "on": sides["on"],
        "cpu_ms_off": off,
        "cpu_ms_on": on,
        "cost_ms": cost,
        "aim": f"< {RATE_LIMIT_COST_AIM_MS:g} ms of worker CPU per request",
        "aim_met": cost is not None and cost < RATE_LIMIT_COST_AIM_MS,
        "instructions": rate_limit_instructions(server_options["redis_url"]),
    }


def rate_limit_instructions(redis_url: str, requests: int = 100) -> dict | None:
    """The check in CPU instructions (bench.request_instructions' probe under callgrind,
    in process, the cache and the limits in Redis): GET /api/auth/me and the queue
    snapshot with the limits off and on, one probe at a time on an emptied Redis
    database; converted to CPU time at the rate of the off `me` requests without valgrind.
    None without valgrind."""
    import shutil

    from bench.request_instructions import _probe

    if shutil.which("valgrind") is None:
        return None
    settings = {
        "off": {},
        "on": {"RATE_LIMIT_PER_ACCOUNT": RATE_LIMIT_ON, "RATE_LIMIT_PER_ADDRESS": RATE_LIMIT_ON},
    }
    env = {"TEST_REDIS_URL": redis_url}
    counts = {}
    for kind in ("me", "queue"):
        for side, values in settings.items():
            services.flush_redis(redis_url)
            counts[f"{side}:{kind}"] = _probe(results.ROOT, kind, requests, True, values, env) / requests
            print(f"instructions {side} {kind}: {counts[f'{side}:{kind}']:,.0f}", flush=True)
    services.flush_redis(redis_url)
    cpu = _probe(results.ROOT, "me", requests, False, settings["off"], env) / requests
    ns_per_instruction = cpu * 1e9 / counts["off:me"]
    return {
        "requests": requests,
        "per_request": counts,
        "ns_per_instruction": round(ns_per_instruction, 3),
        "cost_ms": {
            kind: round((counts[f"on:{kind}"] - counts[f"off:{kind}"]) * ns_per_instruction / 1e6, 4)
            for kind in ("me", "queue")
        },
    }


def measure_scenario(run: Run, key: str, factory, hms, hello) -> None:
    """The hello-world baseline, then the scenario, with the same load; into `run`."""
    from bench import loadgen  # imported (and patching) since main began

    args = run.args
    label, expected, clients = SCENARIOS[key]
    if key in OPEN_LOOP:
        load = {"rate": args.booking_rate, "duration": args.duration, "warmup": args.warmup}
        drive, shape = loadgen.run_open, f"{args.booking_rate:g} requests/s"
    else:
        load = {"concurrency": clients or args.concurrency, "duration": args.duration, "warmup": args.warmup}
        drive, shape = loadgen.run, f"{load['concurrency']} clients"
    print(f"-- {key}: hello-world baseline, then {label} ({shape})", flush=True)
    baseline = drive(hello.host, hello.port, hello_request, server_pids=hello.worker_pids(), **load)
    sampler = WaitSampler(run.dsn)
    with sampler:
        measured = drive(hms.host, hms.port, factory, server_pids=hms.worker_pids(), **load)
    if key.startswith("booking"):
        run.booked += measured.all_statuses.get(201, 0)
    entry = scenario_entry(key, baseline, measured, sampler) | {"clients": shape}
    unexpected = {s: n for s, n in measured.all_statuses.items() if s != expected}
    if unexpected:
        run.ok = False
        run.notes.append(f"{key}: unexpected statuses {unexpected}; e.g. {measured.error_samples[:2]}")
    if args.profile and key not in OPEN_LOOP:
        entry["profile"] = profile_pass(hms, loadgen, factory, load, key)
        if key.startswith("booking"):
            run.booked += entry["profile"].pop("booked", 0)
    run.scenarios[key] = entry
    run.steps += [{"label": f"hello ({key})", **entry["hello"]}, {"label": key, **entry["endpoint"]}]
    print(json.dumps({"hello": entry["hello"], "endpoint": entry["endpoint"]}), flush=True)


def finish(run: Run, drift: list[str], env: dict) -> int:
    """Check the queues the bookings left, plot, write the results; the exit status."""
    args = run.args
    invariants = None
    if any(key.startswith("booking") for key in run.scenarios):
        invariants = check_invariants(run.dsn, (args.doctors + 1) * args.queue_length, run.booked)
        if not invariants["ok"]:
            run.ok = False
            run.notes.append("Queue invariants broken: " + "; ".join(invariants["problems"]))
    plot = results.plot_percentiles(
        run.steps,
        results.RESULTS_DIR / "api_latency.png",
        f"{args.concurrency} clients (single client: 1; open loop: {args.booking_rate:g}/s), "
        f"{args.workers} gevent workers",
        connect=False,
    )
    settings = {"duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                "workers": args.workers, "doctors": args.doctors, "patients": args.patients,
                "queue_length": args.queue_length, "booking_rate": args.booking_rate, "schema": args.schema}  # fmt: skip
    data = {
        "settings": settings,
        "migration_drift": drift,
        "scenarios": run.scenarios,
        "invariants": invariants,
        "rate_limit": run.rate_limit,
        "plot": str(plot.relative_to(results.ROOT)) if plot else None,
    }
    path = results.write_result(SECTION, title=TITLE, order=ORDER, renderer="bench.api_latency:render", data=data,
                                env=env, ok=run.ok, notes=run.notes)  # fmt: skip
    print(f"wrote {path}")
    for note in run.notes:
        print("NOTE:", note)
    return 0 if run.ok else 1


def scenario_entry(key: str, baseline, measured, sampler: WaitSampler) -> dict:
    hello, endpoint = baseline.summary(), measured.summary()
    entry = {
        "label": SCENARIOS[key][0],
        "hello": hello,
        "endpoint": endpoint,
        "throughput_ratio": round(endpoint["rps"] / hello["rps"], 3) if hello["rps"] else None,
        "p95_ratio": round(endpoint["p95_ms"] / hello["p95_ms"], 2) if hello["p95_ms"] else None,
        # Worker CPU per request, HMS over hello: the cost ratio, which other load on the
        # machine barely moves (the throughput ratio is what the aim is stated in).
        "cpu_ratio": round(endpoint["server_cpu_ms_per_request"] / hello["server_cpu_ms_per_request"], 2)
        if endpoint.get("server_cpu_ms_per_request") and hello.get("server_cpu_ms_per_request")
        else None,
        "rps_per_second": measured.per_second(),
        "error_samples": measured.error_samples,
    }
    if key.startswith("booking"):
        entry["aim"] = f"p95 < {BOOKING_P95_AIM_MS:g} ms"
        entry["aim_met"] = endpoint["p95_ms"] < BOOKING_P95_AIM_MS
        entry["db_activity"] = sampler.summary()
    else:
        entry["aim"] = f"within {SNAPSHOT_RATIO_AIM:g}x of hello-world (p95 and throughput)"
        entry["aim_met"] = (
            entry["p95_ratio"] is not None
            and entry["p95_ratio"] <= SNAPSHOT_RATIO_AIM
            and entry["throughput_ratio"] >= 1 / SNAPSHOT_RATIO_AIM
        )
    return entry


def profile_pass(hms, loadgen, factory, load: dict, key: str) -> dict:
    """The scenario again, shorter, with py-spy sampling every worker (numbers not reported)."""
    seconds = min(load["duration"], 5.0)
    started = profile_workers(hms.worker_pids(), seconds + load["warmup"], key)
    if "error" in started:
        return started
    result = loadgen.run(hms.host, hms.port, factory, **{**load, "duration": seconds})
    for process in started["processes"]:
        process.wait(timeout=60)
    summary = summarize_profile(started["outputs"])
    summary["booked"] = result.all_statuses.get(201, 0)
    errors = [p.stderr.read().decode(errors="replace")[-300:] for p in started["processes"] if p.returncode]
    if errors:
        summary["py_spy_errors"] = errors
    return summary


# --- BENCHMARKS.md ------------------------------------------------------------------------


def _ms(value) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else str(value)


def render(result: dict) -> str:
    data = result["data"]
    settings = data["settings"]
    lines = [
        f"{settings['concurrency']} closed-loop clients unless the table says otherwise ({settings['warmup_s']:g} s warm-up, "
        f"{settings['duration_s']:g} s measured), {settings['workers']} gevent workers, PostgreSQL + Redis; "
        f"{settings['doctors']} doctors with a queue of {settings['queue_length']} today, "
        f"{settings['patients']} patients; schema from the {settings.get('schema', 'migrations')}. Each scenario is measured right after the hello-world "
        "baseline (`bench/hello_app.py`, same gunicorn settings): ratio = endpoint / hello.",
        "",
        "| scenario | load | requests | errors | req/s | p50 ms | p95 ms | p99 ms | hello req/s | hello p95 ms "
        "| throughput ratio | p95 ratio | worker CPU ms/req (hello) | CPU ratio | client CPU | aim | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for entry in data["scenarios"].values():
        e, h = entry["endpoint"], entry["hello"]
        lines.append(
            f"| {entry['label']} | {entry.get('clients', settings['concurrency'])} | {e['requests']} | {e['errors']} | {e['rps']:.0f} | {_ms(e['p50_ms'])} "
            f"| {_ms(e['p95_ms'])} | {_ms(e['p99_ms'])} | {h['rps']:.0f} | {_ms(h['p95_ms'])} "
            f"| {entry['throughput_ratio']} | {entry['p95_ratio']} "
            f"| {e.get('server_cpu_ms_per_request', '-')} ({h.get('server_cpu_ms_per_request', '-')}) "
            f"| {entry.get('cpu_ratio') or '-'} | {e.get('client_cpu_percent')}% "
            f"| {entry['aim']} | {'yes' if entry['aim_met'] else '**no**'} |"
        )
    lines.append("")
    lines.append(
        "Client CPU: CPU time of the load generator / wall time; it runs on the same cores as "
        "the server, so near 100% means the client, not the server, set the pace. Worker CPU: CPU time "
        "of the gunicorn workers during the measured window / requests completed in it; the CPU ratio "
        "(endpoint / hello) is what a request costs, which other load on the machine barely moves. In a closed loop "
        "latency = clients / throughput (Little's law): a p95 under 50 ms with 50 clients needs well over "
        "1,000 bookings a second. The open-loop row sends bookings at a fixed rate instead, counting "
        "latency from each request's scheduled start."
    )
    for key, entry in data["scenarios"].items():
        activity = entry.get("db_activity")
        if activity and activity.get("top"):
            lines += [
                "",
                f"Database backends during `{key}` (pg_stat_activity every 50 ms, {activity['samples']} "
                f"samples; {activity['avg_busy_backends']} non-idle backends on average):",
                "",
                "| avg backends | state | wait | statement |",
                "|---:|---|---|---|",
            ]
            for row in activity["top"]:
                query = row["query"].replace("|", "\\|")
                lines.append(f"| {row['avg_backends']} | {row['state']} | {row['wait']} | `{query}` |")
        profile = entry.get("profile")
        if profile and profile.get("samples"):
            lines += [
                "",
                f"py-spy profile of `{key}` ({profile['samples']} samples over every worker; share of "
                "samples with the frame on the stack, app frames only):",
                "",
            ]
            lines += [f"- {row['percent']}% `{row['frame']}`" for row in profile["app_inclusive"][:8]]
            packages = ", ".join(
                f"{row['package']} {row['percent']}%" for row in profile.get("self_by_package", [])
            )
            if packages:
                lines += ["", f"Own time (self samples) by package: {packages}."]
    invariants = data.get("invariants")
    if invariants:
        verdict = "hold" if invariants["ok"] else "**BROKEN**: " + "; ".join(invariants["problems"])
        lines += [
            "",
            f"Queue invariants after the bookings ({invariants['bookings']} bookings, "
            f"{invariants['appointments_today']} appointments today): {verdict}.",
        ]
    cost = data.get("rate_limit")
    if cost:
        lines += [
            "",
            f"The API rate limits' cost (issue 16): `GET /api/queue/<doctor_id>` with {settings['concurrency']} clients "
            f"on HMS with the limits off and on a second HMS with both at `{cost['limit']}` (every call "
            f"checked in Redis, none refused), alternately, {cost['rounds']} rounds of each:",
            "",
            "| round | off: req/s | off: worker CPU ms/req | on: req/s | on: worker CPU ms/req |",
            "|---:|---:|---:|---:|---:|",
        ]
        for number, (off, on) in enumerate(zip(cost["off"], cost["on"], strict=True), start=1):
            lines.append(
                f"| {number} | {off['rps']:.0f} | {off.get('server_cpu_ms_per_request', '-')} "
                f"| {on['rps']:.0f} | {on.get('server_cpu_ms_per_request', '-')} |"
            )
        lines += [
            "",
            f"Mean worker CPU per request: {cost['cpu_ms_off']} ms off, {cost['cpu_ms_on']} ms on: the check costs "
            f"**{cost['cost_ms']} ms** per request (aim {cost['aim']}: {'met' if cost['aim_met'] else '**not met**'}).",
        ]
        counted = cost.get("instructions")
        if counted:
            per = counted["per_request"]
            lines += [
                "",
                f"The same check in CPU instructions (callgrind, {counted['requests']} requests of each kind in "
                "process through Flask's test client, the cache and the limits in Redis, limits off then on; "
                f"CPU time at {counted['ns_per_instruction']} ns per instruction, the off `me` requests' CPU time "
                "without valgrind over their instructions). Instructions leave out the kernel's time for the "
                "round trip's two system calls, which the worker CPU above includes:",
                "",
                "| request | off | on | change | ≈ CPU ms |",
                "|---|---:|---:|---:|---:|",
            ]
            for kind, label in (("me", "GET /api/auth/me"), ("queue", "GET /api/queue/<doctor_id>")):
                off, on = per[f"off:{kind}"], per[f"on:{kind}"]
                lines.append(
                    f"| {label} | {off:,.0f} | {on:,.0f} | {on - off:+,.0f} | {counted['cost_ms'][kind]:+.4f} |"
                )
    if data.get("migration_drift"):
        lines += ["", "Migration drift (the models declare more): " + "; ".join(data["migration_drift"])]
    if data.get("plot"):
        lines += ["", f"![latency percentiles per scenario]({data['plot']})"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
