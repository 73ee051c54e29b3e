"""Live-stream capacity: idle streams held, memory per stream, Redis connections, and the
delivery latency of queue changes at a steady rate, for HMS and for flask-sse.

    .venv/bin/python -m bench.stream_capacity                      # 1,000 and 10,000 streams
    .venv/bin/python -m bench.stream_capacity --streams 1000 --rate 100 --duration 20
    .venv/bin/python -m bench.stream_capacity --quick              # 200 streams, for development

For each size and each system (HMS first, then the baseline on the same size):
1. A private redis-server with its default settings (maxclients 10000) on a free port,
   database 9, so the baseline's one-connection-per-stream cannot exhaust the Redis
   other processes on this machine use, and the client counts are this system's alone.
2. HMS: database `hms_streams` recreated and migrated (bench/lib/), doctors =
   streams / 20 (the per-doctor limit) each with today's queue, a display account;
   gunicorn with 2 gevent workers (gunicorn.conf.py). Baseline: bench/flask_sse_app.py
   (flask-sse's blueprint) under the same gunicorn settings and the same Redis.
3. Streams opened by N reader processes (bench/sse_client.py: raw gevent sockets), the
   streams of each doctor spread over the readers, at most --open-concurrency opens in
   flight per reader. HMS streams are held when their first snapshot arrives. flask-sse
   sends nothing until a message: its streams are held when a first message published
   to every channel (directly in Redis, flask-sse's format) has reached them.
4. Worker RSS (VmRSS of every gunicorn worker, summed) before any stream and after all
   are open; the Redis clients (CLIENT LIST) and Redis memory at the same moments.
5. --idle seconds with nothing happening: heartbeats (`: ping`) must keep coming (HMS
   sends one every SSE_HEARTBEAT_SECONDS = 15 s by default; flask-sse sends none).
6. --rate changes per second for --duration seconds from a separate driver process,
   open loop, round-robin over every doctor that has streams: HMS `POST
   /api/queue/<doctor>/next` (commit, then notify; the answer is the snapshot with
   the new version), baseline `POST /publish/<doctor>` (sse.publish of a message of
   the size HMS's snapshots had in the same run). Per change and per stream of that
   doctor: the time until the first event whose id is >= the change's version.

The clients share the machine with the servers: the readers' and the driver's CPU seconds
are recorded (reader_cpu_seconds; driver_cpu_seconds per phase) to tell whether the client
limits a figure. In the direct phases the driver calls the app's public
`hms.queue.touch_queues_of_doctor` in a unit of work (no HTTP): like any watched change,
it reads the snapshot before its commit and the message carries the events.

Latency is measured from the START of the change request (before it is written) to the
arrival of the event, and also from the moment the answer was read. The commit happens
between the two: "from start" is an upper bound of commit-to-client (it includes the
request's own work: for HMS the transaction, for flask-sse a publish), "from answer" a
lower bound (HMS notifies after the commit and before it answers, so an event may even
arrive before the answer: negative values). The aim is checked on the upper bound.

Results: bench/results/stream_capacity.json (bench/out/stream_capacity-quick.json with
--quick), rendered into BENCHMARKS.md by `render` below. Readers', driver's and
servers' raw files and logs go to bench/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.lib import processes, results, services
from bench.lib.http import get_token
from bench.lib.seed import PASSWORD, seed_clinic
from bench.stream_report import SYSTEMS, render

SECTION = "stream_capacity"
# bench/run.py options this script takes (--duration: seconds of each change phase).
ACCEPTS = ("duration", "workers", "schema")
TITLE = "Live streams: capacity, memory per stream and delivery latency (HMS vs flask-sse)"
ORDER = 60
PER_DOCTOR = 20
AIM_STREAMS = 10_000
AIM_KB_PER_STREAM = 32
AIM_P99_MS = 500
AIM_RATE = 100
DEFAULT_MESSAGE_BYTES = 2048


# --- small helpers (no heavy imports: `render` is imported by the report builder) ---------


def _short(text: str, limit: int = 90) -> str:
    """An error text without HTML tags, timestamps, process ids and numbers' variety, on one line."""
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    text = re.sub(r"^\[[^]]*\] \[\d+\] |^\d{4}-\d\d-\d\d [\d:,.]+ ", "", text)
    text = re.sub(r"(?<=[-:=])\d+|(?<=doctor )\d+", "N", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _proc_status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one): the second tells how much a
    busy machine held the process back."""
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def _open_sockets(pid: int) -> int:
    count = 0
    try:
        for entry in os.scandir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(entry.path).startswith("socket:"):
                    count += 1
            except OSError:
                continue
    except OSError:
        pass
    return count


def _workers_snapshot(pids: list[int]) -> dict:
    per_worker = [
        {"pid": pid, "rss_kb": _proc_status_kb(pid, "VmRSS"), "cpu_s": round(processes.cpu_seconds([pid]), 2),
         "runqueue_wait_s": round(_schedstat(pid)[1], 2), "sockets": _open_sockets(pid)}
        for pid in pids
    ]  # fmt: skip
    return {"rss_kb": sum(w["rss_kb"] for w in per_worker), "workers": per_worker}


# --- a private Redis ------------------------------------------------------------------------


class PrivateRedis:
    """redis-server with its defaults (maxclients 10000) on a free port, no persistence.

    The benchmark's own two connections (statistics, and publishing flask-sse's first
    messages) are opened at once and kept, so that a system that fills Redis up to
    maxclients cannot lock the measurement out. `maxclients` is only for exercising that
    failure path with few streams during development."""

    def __init__(self, out_dir: Path, name: str, db: int, maxclients: int | None = None):
        self.port = processes.free_port()
        self.log = out_dir / f"redis-{name}-{self.port}.log"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.log), *(["--maxclients", str(maxclients)] if maxclients else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(port=self.port, socket_timeout=10, single_connection_client=True)
        for _ in range(100):
            try:
                if self.client.ping():
                    break
            except redis.RedisError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"private redis-server did not start; see {self.log}")
        self.publisher = redis.Redis(port=self.port, db=db, socket_timeout=10, single_connection_client=True)
        self.own_ids = {self.client.client_id(), self.publisher.client_id()}

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stats(self) -> dict:
        import redis

        try:
            return self._stats()
        except redis.RedisError as error:
            return {"error": f"{type(error).__name__}: {error}", "clients": None, "pubsub_clients": None,
                    "by_name": {}, "connected_clients_info": None, "maxclients": None, "rejected_connections": None,
                    "used_memory_kb": None, "process_rss_kb": _proc_status_kb(self.process.pid, "VmRSS")}  # fmt: skip

    def _stats(self) -> dict:
        clients = [c for c in self.client.client_list() if int(c["id"]) not in self.own_ids]
        names = Counter()
        for client in clients:
            name = client.get("name") or ""
            names[
                name.rsplit("-", 2)[0] if name.startswith("hms-queue-subscriber") else (name or "(unnamed)")
            ] += 1
        info = self.client.info()
        return {
            "clients": len(clients),
            "pubsub_clients": sum(1 for c in clients if int(c.get("sub", 0)) or int(c.get("psub", 0))),
            "by_name": dict(names),
            "connected_clients_info": info["connected_clients"] - len(self.own_ids),
            "maxclients": int(self.client.config_get("maxclients")["maxclients"]),
            "rejected_connections": info.get("rejected_connections", 0),
            "used_memory_kb": round(info["used_memory"] / 1024),
            "process_rss_kb": _proc_status_kb(self.process.pid, "VmRSS"),
        }

    def numsub(self, channels: list[str]) -> int:
        return sum(count for _, count in self.client.pubsub_numsub(*channels)) if channels else 0

    def stop(self) -> None:
        for client in (self.client, self.publisher):
            client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- reader and driver processes --------------------------------------------------------------


class Readers:
    """N `bench.sse_client read` processes; their per-second counts, summed."""

    def __init__(self, specs: list[dict], out_dir: Path, tag: str):
        self.outs, self.procs, self.latest = [], [], []
        for number, spec in enumerate(specs):
            spec_path = out_dir / f"{tag}-reader{number}-spec.json"
            out_path = out_dir / f"{tag}-reader{number}.json"
            spec_path.write_text(json.dumps(spec))
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.sse_client", "read", str(spec_path), str(out_path)],
                cwd=Path(__file__).resolve().parent.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(out_dir / f"{tag}-reader{number}.err", "w"),  # noqa: SIM115
                text=True,
            )
            self.procs.append(process)
            self.outs.append(out_path)
            self.latest.append({})
            threading.Thread(target=self._follow, args=(number,), daemon=True).start()

    def _follow(self, number: int) -> None:
        for line in self.procs[number].stdout:
            try:
                self.latest[number] = json.loads(line)
            except ValueError:
                continue

    def total(self, key: str) -> int:
        return sum(counts.get(key, 0) for counts in self.latest)

    def stop(self) -> list[dict]:
        for process in self.procs:
            try:
                process.stdin.write("stop\n")
                process.stdin.flush()
            except BrokenPipeError:
                pass
        results = []
        for process, out_path in zip(self.procs, self.outs, strict=True):
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
            results.append(json.loads(out_path.read_text()) if out_path.exists() else {"streams": []})
        return results

    def kill(self) -> None:
        for process in self.procs:
            if process.poll() is None:
                process.kill()


def run_driver(spec: dict, out_dir: Path, tag: str) -> dict:
    spec_path, out_path = out_dir / f"{tag}-driver-spec.json", out_dir / f"{tag}-driver.json"
    spec_path.write_text(json.dumps(spec))
    with open(out_dir / f"{tag}-driver.err", "w") as err:
        subprocess.run(
            [sys.executable, "-m", "bench.sse_client", "drive", str(spec_path), str(out_path)],
            cwd=Path(__file__).resolve().parent.parent,
            stderr=err,
            check=True,
            timeout=spec["duration"] + 180,
        )
    return json.loads(out_path.read_text())


# --- analysis -------------------------------------------------------------------------------


def _alive_at(stream: dict, moment: float) -> bool:
    return (
        stream["t_first"] is not None
        and stream["t_first"] <= moment
        and (stream["end"] is None or stream["t_end"] > moment)
    )


def _spread(values: list[float]) -> dict:
    return {
        name: _ms(_percentile(values, q)) for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    }


def analyse_streams(streams: list[dict], phases: dict, heartbeat: float | None) -> dict:
    """Held streams, failures, and heartbeats (pings) in the idle window."""
    held_open = [s for s in streams if _alive_at(s, phases["opened"])]
    held_end = [s for s in streams if s["t_first"] is not None and s["end"] is None]
    failures = Counter()
    for stream in streams:
        if stream["end"] is not None:
            failures[_short(stream["end"])] += 1
    firsts = [s["t_first"] for s in streams if s["t_first"] is not None]
    idle_from, idle_to = phases["idle_start"], phases["idle_end"]
    with_ping = sum(1 for s in held_open if any(idle_from <= t <= idle_to for t in s["pings"]))
    pings_in_idle = sum(1 for s in held_open for t in s["pings"] if idle_from <= t <= idle_to)
    # The longest silence of each stream held to the end (pings and events are signs of life).
    gaps = []
    for stream in held_end:
        signs = sorted(
            [stream["t_first"], *stream["pings"], *(e[1] for e in stream["events"]), phases["stop"]]
        )
        gaps.append(max(b - a for a, b in zip(signs, signs[1:], strict=False)) if len(signs) > 1 else 0.0)
    return {
        "opened": len(streams),
        "held_after_open": len(held_open),
        "held_to_end": len(held_end),
        "http_statuses": dict(Counter(str(s["status"]) for s in streams)),
        "failures": dict(failures.most_common(8)),
        "open_seconds": round(max(firsts) - phases["open_start"], 1) if firsts else None,
        "heartbeat_seconds": heartbeat,
        "idle_seconds": round(idle_to - idle_from, 1),
        "streams_with_ping_in_idle_window": with_ping,
        "pings_in_idle_window": pings_in_idle,
        "longest_silence_s": {
            "p50": round(_percentile(gaps, 50), 1) if gaps else None,
            "max": round(max(gaps), 1) if gaps else None,
        },
    }


def analyse_changes(streams: list[dict], rows: list[dict], t_from: float, t_to: float) -> dict:
    """Per change and per stream of its doctor open when the change started: the time
    until the first event whose id is >= the change's version."""
    by_doctor: dict[int, list[dict]] = {}
    for stream in streams:
        if stream["t_first"] is not None:
            by_doctor.setdefault(stream["doctor"], []).append(stream)
    from_start, from_answer, undelivered, pairs = [], [], 0, 0
    ok_changes = [c for c in rows if c["status"] == 200 and c.get("version") is not None]
    for change in ok_changes:
        version = change["version"]
        for stream in by_doctor.get(change["doctor"], ()):
            if not _alive_at(stream, change["t_start"]):
                continue
            pairs += 1
            arrival = next((e for e in stream["events"] if e[0] is not None and e[0] >= version), None)
            if arrival is None:
                undelivered += 1
                continue
            from_start.append(arrival[1] - change["t_start"])
            from_answer.append(arrival[1] - change["t_resp"])
    event_bytes = [e[2] for s in streams for e in s["events"][1:] if t_from <= e[1] <= t_to]
    answered = [c["t_resp"] - c["t_start"] for c in rows if "t_resp" in c and "t_start" in c]
    lag = [c["t_start"] - c["t_sched"] for c in rows if "t_start" in c]
    starts = [c["t_start"] for c in rows if "t_start" in c]
    span = max(starts) - min(starts) if len(starts) > 1 else 0
    # Where a tail comes from: the seconds of the phase whose changes answered slowest.
    by_second: dict[int, list[float]] = {}
    for c in rows:
        if "t_resp" in c and "t_start" in c and starts:
            by_second.setdefault(int(c["t_start"] - min(starts)), []).append(c["t_resp"] - c["t_start"])
    slowest = sorted(by_second.items(), key=lambda item: -max(item[1]))[:3]
    errors = Counter(_short(f"{c['status']} {c.get('error', '')}") for c in rows if c["status"] != 200)
    return {
        "sent": len(rows),
        "ok": len(ok_changes),
        "errors": dict(errors.most_common(5)),
        "started_per_second": round((len(starts) - 1) / span, 1) if span else None,
        "answer_ms": {"p50": _ms(_percentile(answered, 50)), "p99": _ms(_percentile(answered, 99))},
        "slowest_seconds": [
            {"second": second, "changes": len(times), "answer_max_ms": _ms(max(times))}
            for second, times in slowest
        ],
        "start_lag_ms_p99": _ms(_percentile(lag, 99)),
        "delivery": {
            "pairs": pairs,
            "delivered": len(from_start),
            "undelivered": undelivered,
            "from_start_ms": _spread(from_start),
            "from_answer_ms": _spread(from_answer),
        },
        "events": len(event_bytes),
        "mean_event_bytes": round(sum(event_bytes) / len(event_bytes)) if event_bytes else None,
    }


# --- one scenario -----------------------------------------------------------------------------


def _log_findings(path: Path) -> dict:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    lines = text.splitlines()
    errors = Counter(
        _short(line, 140)
        for line in lines
        if ("Error" in line or "error" in line) and not line.startswith(" ") and "Traceback" not in line
    )
    return {"tracebacks": text.count("Traceback"), "error_lines": dict(errors.most_common(5))}


def _wait(predicate, timeout: float, stall: float | None = None, progress=None) -> bool:
    """Poll until predicate() is true, `timeout` passes, or `progress()` stops changing for `stall`."""
    deadline = time.monotonic() + timeout
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        if predicate():
            return True
        if progress is not None:
            value = progress()
            if value != last:
                last, last_change = value, time.monotonic()
            elif stall and time.monotonic() - last_change > stall:
                return False
        time.sleep(0.5)
    return predicate()


@dataclass
class Target:
    """The system under test, started: where its streams are and how to change its queues."""

    server: processes.Server
    doctor_ids: list[int]
    headers: dict  # the streams' request headers
    paths: dict[int, str]  # doctor -> stream path
    heartbeat: float | None
    queue_length: int | None = None
    admin_token: str | None = None  # HMS: the changes through the API
    app_env: dict | None = None  # HMS: the direct changes' app settings


class Scenario:
    """One system at one size: streams opened, held idle, then the change phases; the result dict."""

    def __init__(self, system: str, streams: int, args, out_dir: Path, message_bytes: int):
        self.system, self.streams, self.args, self.out_dir = system, streams, args, out_dir
        self.message_bytes = message_bytes
        self.tag = f"{system}-{streams}"
        self.doctors_needed = math.ceil(streams / PER_DOCTOR)
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}
        self.redis_server: PrivateRedis | None = None
        self.target: Target | None = None
        self.readers: Readers | None = None
        self.pids: list[int] = []  # the gunicorn workers, once warm

    def run(self) -> dict:
        print(f"\n== {self.system}: {self.streams} streams over {self.doctors_needed} doctors ==", flush=True)
        args = self.args
        self.redis_server = PrivateRedis(self.out_dir, self.tag, args.redis_db, args.redis_maxclients)
        try:
            redis_url = self.redis_server.url(args.redis_db)
            self.target = (
                self._start_hms(redis_url) if self.system == "hms" else self._start_baseline(redis_url)
            )
            for _ in range(20):  # warm both workers' code paths a little
                processes.http_get(self.target.server.base + "/readyz")
            time.sleep(1.0)
            self.pids = self.target.server.worker_pids()
            before = self.snapshot("before")
            self._open_streams()
            time.sleep(2.0)
            after_open = self.snapshot()
            self.phases["idle_start"] = time.monotonic()
            time.sleep(args.idle)
            self.phases["idle_end"] = time.monotonic()
            after_idle = self.snapshot()
            print(f"   idle {args.idle:.0f} s: pings so far {self.readers.total('pings')}, ended "
                  f"{self.readers.total('ended')}", flush=True)  # fmt: skip
            rate_phases = self._change_phases(after_idle)
            self.phases["stop"] = time.monotonic()
            reader_results, self.readers = self.readers.stop(), None
            return self._result(reader_results, rate_phases, before, after_open, after_idle)
        finally:
            if self.readers is not None:
                self.readers.kill()
            if self.target is not None:
                self.target.server.stop()
            self.redis_server.stop()

    def snapshot(self, label: str | None = None) -> dict:
        """The workers' memory, CPU and sockets and the Redis clients, now."""
        snap = {
            "workers": _workers_snapshot(self.pids),
            "redis": self.redis_server.stats(),
        }
        if label:
            print(f"   {label}: workers RSS {snap['workers']['rss_kb']} kB, redis clients {snap['redis']['clients']}",
                  flush=True)  # fmt: skip
        return snap

    def _start_hms(self, redis_url: str) -> Target:
        args = self.args
        dsn = services.fresh_database(args.database)
        drift = services.build_schema(dsn, redis_url, args.schema)
        if drift:
            self.notes.append("migration drift: " + "; ".join(drift))
        seed = seed_clinic(
            dsn,
            doctors=self.doctors_needed,
            patients=2000,
            queue_length=args.queue_length,
            completed_history=20,
        )
        _add_display_account(dsn)
        extra = dict(args.server_env_vars)
        # Every stream signs in with the one bench-display account: let it hold them all
        # (SSE_MAX_CONNECTIONS_PER_ACCOUNT caps one account's streams; older trees ignore it).
        extra.setdefault("SSE_MAX_CONNECTIONS_PER_ACCOUNT", str(max([10, *args.stream_counts])))
        if args.heartbeat:
            extra["SSE_HEARTBEAT_SECONDS"] = str(args.heartbeat)
        server = processes.start_server("wsgi:app", dsn=dsn, redis_url=redis_url, workers=args.workers,
                                        name=f"stream-{self.tag}", extra_env=extra)  # fmt: skip
        self.target = Target(server, [], {}, {}, None)  # stopped at the end even if what follows fails
        stream_token = get_token(server.base, "bench-display", PASSWORD)
        doctor_ids = seed.doctor_ids[: self.doctors_needed]
        app_env = {
            key: value
            for key, value in services.app_env(dsn, redis_url, **extra).items()
            if key in ("HMS_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CLINIC_TIMEZONE")
            or key.startswith("SSE_")
        }
        return Target(
            server,
            doctor_ids,
            headers={"Authorization": f"Bearer {stream_token}"},
            paths={d: f"/api/queue/{d}/stream" for d in doctor_ids},
            heartbeat=float(args.heartbeat or 15),
            queue_length=args.queue_length,
            admin_token=get_token(server.base, seed.admin, seed.password),
            app_env=app_env,
        )

    def _start_baseline(self, redis_url: str) -> Target:
        server = processes.start_server("bench.flask_sse_app:app", dsn=services.dsn_for(self.args.database),
                                        redis_url=redis_url, workers=self.args.workers, name=f"stream-{self.tag}")  # fmt: skip
        doctor_ids = list(range(1, self.doctors_needed + 1))
        return Target(server, doctor_ids, {}, {d: f"/stream?channel=doctor-{d}" for d in doctor_ids}, None)

    def _open_streams(self) -> None:
        """The reader processes open every stream; back when each is held (or failed)."""
        target, args, streams = self.target, self.args, self.streams
        # Stream i follows doctor i % doctors, so each doctor's 20 are spread over the readers.
        specs = [
            {"host": "127.0.0.1", "port": target.server.port, "source_ip": f"127.0.0.{2 + n}",
             "headers": target.headers, "concurrency": args.open_concurrency, "wait_first": self.system == "hms",
             "streams": []}
            for n in range(args.clients)
        ]  # fmt: skip
        for index in range(streams):
            doctor = target.doctor_ids[index % len(target.doctor_ids)]
            specs[index % args.clients]["streams"].append(
                {"index": index, "doctor": doctor, "path": target.paths[doctor]}
            )
        self.phases["open_start"] = time.monotonic()
        readers = self.readers = Readers(specs, self.out_dir, self.tag)
        # HMS sends a snapshot at once; flask-sse sends nothing until a message.
        held = "first_event" if self.system == "hms" else "sent"
        _wait(lambda: readers.total(held) + readers.total("failed") >= streams, 120 + streams / 20, stall=60,
              progress=lambda: (readers.total(held), readers.total("failed")))  # fmt: skip
        if self.system != "hms":
            self._first_baseline_messages()
        self.phases["opened"] = time.monotonic()
        print(f"   opened: first event on {readers.total('first_event')}, failed {readers.total('failed')} "
              f"in {self.phases['opened'] - self.phases['open_start']:.1f} s", flush=True)  # fmt: skip

    def _first_baseline_messages(self) -> None:
        """flask-sse: wait for the subscriptions to settle, then publish the first message to
        every channel until every stream that can receive has received one."""
        redis_server, doctor_ids = self.redis_server, self.target.doctor_ids
        channels = [f"doctor-{d}" for d in doctor_ids]
        _wait(lambda: redis_server.numsub(channels) >= self.streams, 60, stall=10,
              progress=lambda: redis_server.numsub(channels))  # fmt: skip
        self.notes.append(f"flask-sse: {redis_server.numsub(channels)} subscribers in Redis after the opens")
        _publish_first_messages(redis_server, doctor_ids, self.message_bytes, self.readers, self.streams)

    def _change_phases(self, before_phase: dict) -> list[dict]:
        """Each phase of changes (HMS: direct first, then through the API), one driver run each."""
        args = self.args
        doctors = list(self.target.doctor_ids)
        random.Random(7).shuffle(doctors)
        if self.system == "hms":
            plan = [("direct", rate) for rate in args.direct_rates] + [("api", rate) for rate in args.rates]
        else:  # the baseline's publish route is its API: one phase per rate
            plan = [("api", rate) for rate in sorted(set(args.rates) | set(args.direct_rates))]
        rate_phases, next_version = [], 2
        for via, rate in plan:
            phase, before_phase = self._change_phase(via, rate, doctors, next_version, before_phase)
            versions = [row["version"] for row in phase["rows"] if row.get("version") is not None]
            next_version = max(versions, default=next_version) + 1
            rate_phases.append(phase)
        return rate_phases

    def _change_phase(self, via: str, rate: float, doctors: list[int], first_version: int, before: dict):
        """One driver run, then the drain; (the phase, the snapshot after it)."""
        args, target = self.args, self.target
        spec = {"host": "127.0.0.1", "port": target.server.port, "mode": "hms-direct" if via == "direct" else self.system,
                "rate": rate, "duration": args.duration, "doctors": doctors, "size": self.message_bytes,
                "first_version": first_version, "max_in_flight": 200}  # fmt: skip
        if self.system == "hms":
            spec["token"], spec["app_env"] = target.admin_token, target.app_env
        t_from = time.monotonic()
        driven = run_driver(spec, self.out_dir, f"{self.tag}-{via}-{rate:g}")
        # Drain: at least --drain seconds, then until no event has arrived for 3 s.
        time.sleep(args.drain)
        _wait(lambda: False, 120, stall=3, progress=lambda: self.readers.total("events"))
        t_to = time.monotonic()
        snap = self.snapshot()
        phase = {
            "via": via, "rate": rate, "duration": args.duration, "t_from": t_from, "t_to": t_to, "rows": driven["rows"],
            "driver_cpu_seconds": round(driven.get("cpu_seconds", 0), 1),
            "worker_cpu_seconds": round(_cpu_total(snap) - _cpu_total(before), 1),
            "worker_runqueue_wait_seconds": round(_wait_total(snap) - _wait_total(before), 1),
            "phase_seconds": round(t_to - t_from, 1), "rss_after_kb": snap["workers"]["rss_kb"], "redis_after": snap["redis"],
        }  # fmt: skip
        ok = sum(r["status"] == 200 for r in driven["rows"])
        print(f"   {rate:g} changes/s ({via}): {ok}/{len(driven['rows'])} ok", flush=True)
        return phase, snap

    def _result(self, reader_results, rate_phases, before, after_open, after_idle) -> dict:
        phases = self.phases
        all_streams = [s for result in reader_results for s in result["streams"]]
        capacity = analyse_streams(all_streams, phases, self.target.heartbeat)
        changes = []
        for phase in rate_phases:
            rows = phase.pop("rows")
            changes.append({**phase, **analyse_changes(all_streams, rows, phase["t_from"], phase["t_to"])})
            del changes[-1]["t_from"], changes[-1]["t_to"]
        held = capacity["held_after_open"]
        growth_kb = after_open["workers"]["rss_kb"] - before["workers"]["rss_kb"]
        idle_cpu = _cpu_total(after_idle) - _cpu_total(after_open)
        event_bytes = [c["mean_event_bytes"] for c in changes if c["mean_event_bytes"]]
        result = {
            "system": self.system, "streams": self.streams, "doctors": self.doctors_needed,
            "queue_length": self.target.queue_length, "workers": self.args.workers,
            **capacity,
            "rss_before_kb": before["workers"]["rss_kb"],
            "rss_after_open_kb": after_open["workers"]["rss_kb"],
            "rss_after_idle_kb": after_idle["workers"]["rss_kb"],
            "rss_growth_kb": growth_kb,
            "rss_per_stream_kb": round(growth_kb / held, 1) if held else None,
            "per_worker_after_open": after_open["workers"]["workers"],
            "worker_cpu_seconds_open": round(_cpu_total(after_open) - _cpu_total(before), 1),
            "worker_cpu_idle_percent_of_one_core": round(100 * idle_cpu / (phases["idle_end"] - phases["idle_start"]), 1),
            "redis_before": before["redis"],
            "redis_after_open": after_open["redis"],
            "redis_clients": after_open["redis"]["clients"],
            "message_bytes": round(sum(event_bytes) / len(event_bytes)) if self.system == "hms" and event_bytes
            else self.message_bytes,
            "changes": changes,
            "reader_cpu_seconds": [round(r.get("cpu_seconds", 0), 1) for r in reader_results],
            "server_log": _log_findings(self.target.server.log_path),
            "notes": self.notes,
        }  # fmt: skip
        _print_result(result)
        return result


def _print_result(result: dict) -> None:
    print(f"   held {result['held_after_open']}/{result['streams']}, RSS/stream {result['rss_per_stream_kb']} kB, "
          f"redis clients {result['redis_clients']}, idle CPU {result['worker_cpu_idle_percent_of_one_core']}% of a core",
          flush=True)  # fmt: skip
    for phase in result["changes"]:
        delivery, answer = phase["delivery"], phase["answer_ms"]
        print(f"   at {phase['rate']:g}/s ({phase['via']}): answers p50/p99 {answer['p50']}/{answer['p99']} ms, "
              f"delivery from start p50/p99 {delivery['from_start_ms']['p50']}/{delivery['from_start_ms']['p99']} ms, "
              f"undelivered {delivery['undelivered']}/{delivery['pairs']}", flush=True)  # fmt: skip


def run_scenario(system: str, streams: int, args, out_dir: Path, message_bytes: int) -> dict:
    return Scenario(system, streams, args, out_dir, message_bytes).run()


def _cpu_total(snapshot: dict) -> float:
    return sum(worker["cpu_s"] for worker in snapshot["workers"]["workers"])


def _wait_total(snapshot: dict) -> float:
    return sum(worker["runqueue_wait_s"] for worker in snapshot["workers"]["workers"])


def _add_display_account(dsn: str) -> None:
    import psycopg
    from werkzeug.security import generate_password_hash

    with psycopg.connect(dsn) as conn:
        conn.execute(
            """
            INSERT INTO users (username, password_hash, name, role, is_available, active, token_epoch,
                               created_at, updated_at)
            VALUES ('bench-display', %s, 'Bench Display', 'display', true, true, 0, now(), now())
            """,
            (generate_password_hash(PASSWORD, method="scrypt"),),
        )


def _publish_first_messages(redis_server, doctor_ids, size, readers, streams) -> None:
    from bench.flask_sse_app import snapshot_like

    client = redis_server.publisher
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for doctor in doctor_ids:
            message = {"data": snapshot_like(doctor, 1, size), "type": "queue", "id": 1}
            client.publish(f"doctor-{doctor}", json.dumps(message))
        time.sleep(2.0)
        if readers.total("first_event") + readers.total("failed") >= streams:
            break


# --- the command ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--streams", default="1000,10000", help="comma-separated stream counts (default 1000,10000)"
    )
    parser.add_argument("--systems", default="hms,flask-sse", help="hms, flask-sse or both (default both)")
    parser.add_argument(
        "--rate",
        default="100",
        help="queue changes per second; a list runs one change phase per rate (default 100)",
    )
    parser.add_argument(
        "--direct-rate",
        default="100",
        help="HMS only: phases of direct changes (hms.queue.touch_queues_of_doctor in the driver, no HTTP), "
        "isolating the fan-out from the write path; 0 for none (default 100)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of changes (default 20)")
    parser.add_argument(
        "--idle", type=float, default=20.0, help="idle seconds before the changes (default 20)"
    )
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait after the last change")
    _server_options(parser)
    return _checked(parser, parser.parse_args(argv))


def _checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The options as the run uses them (lists, the queue length), or a usage error."""
    if args.quick:
        args.streams, args.rate, args.direct_rate, args.duration, args.idle = "200", "20", "20", 10.0, 17.0
    args.stream_counts = [int(n) for n in args.streams.split(",") if n.strip()]
    args.rates = sorted(float(n) for n in args.rate.split(",") if n.strip() and float(n) > 0)
    args.direct_rates = sorted(float(n) for n in args.direct_rate.split(",") if n.strip() and float(n) > 0)
    # Every size gets the same queue length (so the same snapshot size): enough WAITING
    # patients for the `next` calls of the size with the fewest doctors, at least 20.
    fewest_doctors = math.ceil(min(args.stream_counts) / PER_DOCTOR)
    needed = math.ceil(sum(args.rates) * args.duration / fewest_doctors) + 3
    args.queue_length = args.queue_length or max(20, needed)
    bad = [item for item in args.server_env if "=" not in item]
    if bad:
        parser.error(f"--server-env takes NAME=VALUE, not {bad[0]!r}")
    args.server_env_vars = dict(item.split("=", 1) for item in args.server_env)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.system_list) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def _server_options(parser: argparse.ArgumentParser) -> None:
    """The options of the servers, the readers and the results."""
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers (default 2)")
    parser.add_argument("--clients", type=int, default=2, help="reader processes (default 2)")
    parser.add_argument("--open-concurrency", type=int, default=100, help="opens in flight per reader")
    parser.add_argument(
        "--heartbeat", type=int, default=0, help="SSE_HEARTBEAT_SECONDS for HMS (0: app default)"
    )
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        default="migrations",
        help="HMS schema from the migrations (default) or from the models (while the migration lags them)",
    )
    parser.add_argument(
        "--queue-length",
        type=int,
        default=0,
        help="HMS: today's queue of every doctor (default: enough for the `next` calls of the smallest size, "
        "at least 20; the same for every size)",
    )
    parser.add_argument(
        "--database", default="hms_streams", help="PostgreSQL database, recreated (hms_streams)"
    )
    parser.add_argument("--redis-db", type=int, default=9, help="Redis database number (default 9)")
    parser.add_argument(
        "--redis-maxclients",
        type=int,
        default=None,
        help="development only: a lower maxclients for the private Redis, to exercise the failure path "
        "with few streams (default: Redis' own default, 10000)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="HMS: an extra environment variable for gunicorn (repeatable), e.g. GC_THRESHOLDS=python",
    )
    parser.add_argument(
        "--result-file",
        default=None,
        help="write the results here instead of bench/results/stream_capacity.json (a variant run)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200 streams, 20 changes/s (2 per doctor and second) for 10 s, 17 s idle",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    processes.raise_open_files_limit()
    services.ensure_services()
    out_dir = results.OUT_DIR / "stream_capacity"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = results.environment(services.dsn_for("postgres"))
    env["packages"]["Flask-SSE"] = results.package_version("Flask-SSE")
    env["ulimit_n"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    scenarios = []
    for streams in args.stream_counts:
        message_bytes = DEFAULT_MESSAGE_BYTES
        for system in args.system_list:
            try:
                scenario = run_scenario(system, streams, args, out_dir, message_bytes)
            except Exception as error:  # noqa: BLE001 - a failed scenario is recorded, the run goes on
                print(f"   {system} {streams}: FAILED {type(error).__name__}: {error}", flush=True)
                scenario = {"system": system, "streams": streams, "error": f"{type(error).__name__}: {error}"}
            scenarios.append(scenario)
            if system == "hms" and scenario.get("message_bytes"):
                message_bytes = scenario["message_bytes"]
    data = {
        "settings": {
            "rates": args.rates,
            "direct_rates": args.direct_rates,
            "direct_changes": "hms.queue.touch_queues_of_doctor",
            "duration": args.duration,
            "idle": args.idle,
            "workers": args.workers,
            "reader_processes": args.clients,
            "per_doctor": PER_DOCTOR,
            "heartbeat_seconds": args.heartbeat or 15,
            "redis_maxclients": args.redis_maxclients or "default (10000)",
            "queue_length": args.queue_length,
            "schema": args.schema,
        },
        "aims": {
            "streams": AIM_STREAMS,
            "kb_per_stream": AIM_KB_PER_STREAM,
            "p99_ms": AIM_P99_MS,
            "rate": AIM_RATE,
        },
        "scenarios": scenarios,
    }
    notes = [
        "Figures from a shared, busy 2-core machine: noisy; compare the two systems within one run.",
        "Latency 'from start' = event arrival minus the change request's start (upper bound of commit to "
        "client); 'from answer' = minus the moment its answer was read (lower bound, can be negative).",
    ]
    ok = all("error" not in s for s in scenarios)
    if args.quick or args.result_file:
        path = Path(args.result_file) if args.result_file else results.OUT_DIR / "stream_capacity-quick.json"
        env["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
        path.write_text(json.dumps({"section": SECTION, "title": TITLE, "order": ORDER,
                                    "renderer": "bench.stream_capacity:render", "command": results.command_line(),
                                    "ok": ok, "notes": notes, "environment": env, "data": data},
                                   indent=1, default=str) + "\n")  # fmt: skip
    else:
        path = results.write_result(
            SECTION, title=TITLE, order=ORDER, renderer="bench.stream_capacity:render", data=data, env=env, ok=ok,
            notes=notes,
        )  # fmt: skip
    print(f"\nwrote {path}", flush=True)
    print(render(json.loads(path.read_text())), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
