"""The benchmark harness: what every script under bench/ needs to measure HMS for real.

- `ensure_services()` starts PostgreSQL and Redis the way .ci/run does when they are down.
- `fresh_database(name)` drops and recreates one database; `migrate(dsn)` runs
  `flask --app wsgi db upgrade` on it (production settings) and reports any drift between
  the migration and the models (`flask db check`); `build_schema(dsn, source="models")`
  builds it from the models instead, for code whose migration is not regenerated yet.
- `serve(app_spec, ...)` runs gunicorn with the project's gunicorn.conf.py and N gevent
  workers on a free loopback port (the HMS app is "wsgi:app", the baseline
  "bench.hello_app:app"), waits until it answers, and stops the whole process group.
- `seed_clinic(dsn, ...)` writes staff, doctors with fees, patients and (optionally) today's
  queues straight with SQL; `get_token()` signs in through POST /api/auth/token.
- `environment()` records the facts every figure needs (date, cores, memory, versions,
  load average); `write_result()` stores a section's results as small JSON under
  bench/results/, from which bench/report.py rebuilds BENCHMARKS.md.
- `plot_percentiles()` draws p50/p95/p99 per step as a PNG (matplotlib, optional).

Nothing here touches a database other than the one it is given: the defaults are
`hms_bench` (PostgreSQL) and Redis DB 7.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
# Logs, profiles and flame graphs: git-ignored.
OUT_DIR = ROOT / "bench" / "out"

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
DEFAULT_DATABASE = os.environ.get("BENCH_DATABASE", "hms_bench")
DEFAULT_REDIS_URL = os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:{REDIS_PORT}/7")
SECRET_KEY = "bench-only-not-secret"
PASSWORD = "bench-password"
# Databases a benchmark must never drop.
PROTECTED_DATABASES = {"postgres", "template0", "template1", "test"}
PACKAGES = (
    "gunicorn",
    "gevent",
    "greenlet",
    "Flask",
    "flask-smorest",
    "marshmallow",
    "SQLAlchemy",
    "psycopg",
    "redis",
    "Flask-Caching",
)
# The category names the booking service files the two fees under.
FEE_CATEGORIES = ("Consultation", "Hospital fee")


# --- services and databases -------------------------------------------------------------


def dsn_for(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _pg_ready() -> bool:
    return (
        subprocess.run(["pg_isready", "-h", PG_HOST, "-p", str(PG_PORT), "-q"], check=False).returncode == 0
    )


def _redis_ready() -> bool:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "ping"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "PONG"


def ensure_services() -> None:
    """Start PostgreSQL and Redis if they are down (as .ci/run does); fail if they stay down."""
    if not _pg_ready():
        print("PostgreSQL is down; starting it", flush=True)
        versions = sorted(os.listdir("/etc/postgresql"))
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False
        )
    if not _redis_ready():
        print("Redis is down; starting it", flush=True)
        for folder in ("/var/lib/redis", "/var/log/redis"):
            os.makedirs(folder, exist_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/bench.log",
            ],
            check=False,
        )
    for _ in range(30):
        if _pg_ready() and _redis_ready():
            return
        time.sleep(1)
    raise RuntimeError("PostgreSQL or Redis did not come up")


def fresh_database(name: str = DEFAULT_DATABASE) -> str:
    """Drop and recreate database `name` (never a protected one); return its URL."""
    if name in PROTECTED_DATABASES or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"refusing to recreate database {name!r}")
    with psycopg.connect(dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return dsn_for(name)


def flush_redis(redis_url: str = DEFAULT_REDIS_URL) -> None:
    """Empty the benchmark's own Redis database (only that one)."""
    match = re.fullmatch(r"redis://([^:/]+):(\d+)/(\d+)", redis_url)
    if not match:
        raise ValueError(f"expected redis://host:port/db, got {redis_url!r}")
    host, port, number = match.groups()
    subprocess.run(
        ["redis-cli", "-h", host, "-p", port, "-n", number, "FLUSHDB"], check=True, capture_output=True
    )


def app_env(dsn: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a production HMS process against the benchmark's database."""
    env = {
        **os.environ,
        "HMS_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": dsn,
        "CLINIC_TIMEZONE": "UTC",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def _flask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def migrate(dsn: str, redis_url: str | None = None) -> list[str]:
    """`flask --app wsgi db upgrade`; returns the drift `flask db check` finds (empty if none).

    A non-empty list means the migration lacks something the models declare (an index,
    a column): a plan measured here would then not be the plan of a database built
    from the models.
    """
    env = app_env(dsn, redis_url)
    upgrade = _flask(["db", "upgrade"], env)
    if upgrade.returncode != 0:
        raise RuntimeError(f"db upgrade failed:\n{upgrade.stdout}\n{upgrade.stderr}")
    check = _flask(["db", "check"], env)
    if check.returncode == 0 and "New upgrade operations" not in check.stderr + check.stdout:
        return []
    lines = (check.stdout + check.stderr).splitlines()
    # "Detected sequence ... assuming SERIAL" is alembic's note on every serial column, not drift.
    drift = [
        line.split("] ", 1)[-1] for line in lines if "Detected" in line and "Detected sequence" not in line
    ]
    return drift or ["flask db check failed: " + " ".join(lines[-3:])]


_CREATE_FROM_MODELS = """
from sqlalchemy import text
from hms import create_app
from hms.extensions import db
app = create_app()
with app.app_context():
    db.session.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    db.session.commit()
    db.create_all()
"""


def build_schema(dsn: str, redis_url: str | None = None, source: str = "migrations") -> list[str]:
    """The schema from the migrations (`migrate`, the default: what production runs;
    returns the drift) or, while the migration lags the models during development,
    straight from the models (db.create_all(), as the tests do; returns [])."""
    if source == "migrations":
        return migrate(dsn, redis_url)
    if source != "models":
        raise ValueError(f"schema source must be 'migrations' or 'models', not {source!r}")
    result = subprocess.run(
        [sys.executable, "-c", _CREATE_FROM_MODELS],
        cwd=ROOT,
        env=app_env(dsn, redis_url),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"create_all failed:\n{result.stdout}\n{result.stderr}")
    return []


# --- gunicorn ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command may contain spaces: the fields after ')' are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


@dataclass
class Server:
    name: str
    app_spec: str
    port: int
    workers: int
    process: subprocess.Popen
    log_path: Path

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return _children(self.process.pid)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it has not ended in 30 s."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def http_get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def start_server(
    app_spec: str,
    *,
    dsn: str,
    redis_url: str | None,
    workers: int = 2,
    name: str = "hms",
    ready_path: str = "/readyz",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """gunicorn -c gunicorn.conf.py APP_SPEC with `workers` gevent workers on a free port."""
    port = free_port()
    env = app_env(
        dsn,
        redis_url,
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=str(workers),
        GUNICORN_LOGLEVEL="warning",
        **(extra_env or {}),
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = OUT_DIR / f"{name}-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app_spec],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, app_spec, port, workers, process, log_path)
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name}: gunicorn exited early; see {log_path}")
            if http_get(server.base + ready_path) == 200 and len(server.worker_pids()) >= workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: gunicorn did not come up in 60 s; see {log_path}")
            time.sleep(0.2)
        # One worker answered; the others may still be importing the app. Every request
        # of the warm-up is discarded anyway, and this pause covers the imports.
        time.sleep(1.0)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def serve(app_spec: str, **kwargs) -> Iterator[Server]:
    server = start_server(app_spec, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# --- data --------------------------------------------------------------------------------


@dataclass
class Seed:
    admin: str
    reception: str
    password: str
    doctor_ids: list[int]
    patient_ids: list[int]
    department_ids: list[int] = field(default_factory=list)


def _password_hash() -> str:
    # The production config's method (werkzeug's scrypt defaults): one hash for every account.
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD, method="scrypt")


def seed_clinic(
    dsn: str,
    *,
    doctors: int = 50,
    patients: int = 2000,
    queue_length: int = 0,
    completed_history: int = 20,
) -> Seed:
    """Staff, doctors with fees, patients, and optionally today's queue of every doctor.

    With `queue_length` L > 0 each doctor gets today's queue as the app would have left
    it: tokens 1..L, the first patient IN_CONSULTATION (entered 5 minutes ago), the
    others WAITING at positions 2..L, and the queue_days row (last_token L, version L).
    `completed_history` COMPLETED consultations per doctor yesterday give the estimated
    waits real lengths to average. Plain SQL, one transaction: seconds for thousands.
    """
    password_hash = _password_hash()
    with psycopg.connect(dsn) as conn:
        ex = conn.execute
        ex(
            "INSERT INTO departments (name, created_at) "
            "SELECT 'Department ' || n, now() FROM generate_series(1, 5) n"
        )
        department_ids = [row[0] for row in ex("SELECT id FROM departments ORDER BY id")]
        for category in FEE_CATEGORIES:
            ex(
                "INSERT INTO categories (name, created_at) VALUES (%s, now()) ON CONFLICT DO NOTHING",
                (category,),
            )
        staff = """
            INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee,
                               hospital_fee, is_available, active, token_epoch, created_at, updated_at)
            VALUES (%(username)s, %(hash)s, %(name)s, %(role)s, %(department)s, %(fee)s, %(hospital)s,
                    true, true, 0, now(), now())
        """
        ex(staff, {"username": "bench-admin", "hash": password_hash, "name": "Bench Admin", "role": "admin",
                   "department": None, "fee": None, "hospital": None})  # fmt: skip
        ex(staff, {"username": "bench-reception", "hash": password_hash, "name": "Bench Reception",
                   "role": "reception", "department": None, "fee": None, "hospital": None})  # fmt: skip
        ex(
            """
            INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee,
                               hospital_fee, is_available, active, token_epoch, created_at, updated_at)
            SELECT 'bench-doctor-' || lpad(n::text, 4, '0'), %(hash)s, 'Dr. Bench ' || n, 'doctor',
                   (%(departments)s::int[])[1 + n %% %(department_count)s],
                   400 + (n %% 5) * 100, 100, true, true, 0, now(), now()
            FROM generate_series(1, %(doctors)s) n
            """,
            {
                "hash": password_hash,
                "departments": department_ids,
                "department_count": len(department_ids),
                "doctors": doctors,
            },
        )
        doctor_ids = [row[0] for row in ex("SELECT id FROM users WHERE role = 'doctor' ORDER BY id")]
        ex(
            """
            INSERT INTO patients (mrn, name, gender, age, phone, address, created_at, updated_at)
            SELECT 'P' || lpad(n::text, 6, '0'),
                   (ARRAY['Asha','Ravi','Meera','Imran','Priya','Joseph','Kavya','Arjun'])[1 + n %% 8]
                     || ' ' || (ARRAY['Rao','Sharma','Nair','Khan','Patel','Iyer','Das'])[1 + n %% 7],
                   (ARRAY['male','female','other'])[1 + n %% 3], 1 + n %% 90,
                   '+9198' || lpad(n::text, 8, '0'), n || ', MG Road', now(), now()
            FROM generate_series(1, %(patients)s) n
            """,
            {"patients": patients},
        )
        # The MRN counter continues after the seeded patients, as the app expects.
        ex(
            "INSERT INTO counters (name, value) VALUES ('patient_mrn', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            (patients,),
        )
        patient_ids = [row[0] for row in ex("SELECT id FROM patients ORDER BY id")]
        reception_id = ex("SELECT id FROM users WHERE username = 'bench-reception'").fetchone()[0]
        if completed_history:
            _seed_completed_yesterday(conn, doctor_ids, patient_ids, reception_id, completed_history)
        if queue_length:
            _seed_today_queues(conn, doctor_ids, patient_ids, reception_id, queue_length)
    return Seed("bench-admin", "bench-reception", PASSWORD, doctor_ids, patient_ids, department_ids)


def _seed_completed_yesterday(conn, doctor_ids, patient_ids, creator_id, per_doctor) -> None:
    """COMPLETED consultations of 5..19 minutes, yesterday, tokens 1..per_doctor."""
    conn.execute(
        """
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, created_by_id, created_at, waiting_since, entry_time,
                                  exit_time, updated_at)
        SELECT (%(patients)s::int[])[1 + (d.i * 97 + t) %% %(patient_count)s], d.id, day, 'NEW', 'COMPLETED', t,
               NULL, %(creator)s, day + time '08:00', day + time '08:00',
               day + time '09:00' + t * interval '15 minutes',
               day + time '09:00' + t * interval '15 minutes' + (5 + (t * 7) %% 15) * interval '1 minute',
               now()
        FROM unnest(%(doctors)s::int[]) WITH ORDINALITY AS d(id, i),
             generate_series(1, %(per_doctor)s) t,
             (SELECT (now() AT TIME ZONE 'UTC')::date - 1 AS day) y
        """,
        {
            "patients": patient_ids,
            "patient_count": len(patient_ids),
            "creator": creator_id,
            "doctors": doctor_ids,
            "per_doctor": per_doctor,
        },
    )
    conn.execute(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT id, (now() AT TIME ZONE 'UTC')::date - 1, %(per_doctor)s, 3 * %(per_doctor)s
        FROM unnest(%(doctors)s::int[]) AS d(id)
        """,
        {"doctors": doctor_ids, "per_doctor": per_doctor},
    )


def _seed_today_queues(conn, doctor_ids, patient_ids, creator_id, length) -> None:
    conn.execute(
        """
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, chief_complaint, created_by_id, created_at, waiting_since,
                                  entry_time, updated_at)
        SELECT (%(patients)s::int[])[1 + (d.i * 131 + t * 7) %% %(patient_count)s], d.id,
               (now() AT TIME ZONE 'UTC')::date, 'NEW',
               CASE WHEN t = 1 THEN 'IN_CONSULTATION' ELSE 'WAITING' END, t, t, 'Fever and cough',
               %(creator)s, now() - interval '2 hours' + t * interval '1 minute',
               now() - interval '2 hours' + t * interval '1 minute',
               CASE WHEN t = 1 THEN now() - interval '5 minutes' END, now()
        FROM unnest(%(doctors)s::int[]) WITH ORDINALITY AS d(id, i), generate_series(1, %(length)s) t
        """,
        {
            "patients": patient_ids,
            "patient_count": len(patient_ids),
            "creator": creator_id,
            "doctors": doctor_ids,
            "length": length,
        },
    )
    conn.execute(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT id, (now() AT TIME ZONE 'UTC')::date, %(length)s, 3 * %(length)s + 1
        FROM unnest(%(doctors)s::int[]) AS d(id)
        """,
        {"doctors": doctor_ids, "length": length},
    )


def get_token(base: str, username: str, password: str = PASSWORD) -> str:
    """A bearer token from POST /api/auth/token."""
    request = urllib.request.Request(
        base + "/api/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["access_token"]


# --- environment and results -------------------------------------------------------------


@contextmanager
def worktree(rev: str) -> Iterator[tuple[str, Path]]:
    """An older revision checked out in a temporary git worktree, removed afterwards:
    (its short hash, its folder), for before-and-after runs."""
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hms-base-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), short],
                       check=True)  # fmt: skip
        try:
            yield short, tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else ""
    )


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return float("nan")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(dsn: str | None = None) -> dict:
    """Date, machine and software versions, and the load average (a noise indicator)."""
    postgres, connections = "unknown", None
    if dsn:
        with psycopg.connect(dsn) as conn:
            postgres = conn.execute("SHOW server_version").fetchone()[0]
            # Other work on the same server shows here (and can exhaust max_connections).
            connections = conn.execute(
                "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
            ).fetchone()
    redis_version = _first_line(["redis-server", "--version"])
    match = re.search(r"v=(\S+)", redis_version)
    git = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(_first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": int(_first_line(["nproc"]) or os.cpu_count() or 0),
        "memory_gib": _memory_gib(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": match.group(1) if match else redis_version,
        "packages": {name: _package_version(name) for name in PACKAGES},
        "git": f"{git}{' (with uncommitted changes)' if dirty else ''}",
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "postgres_connections_at_start": f"{connections[0]} of {connections[1]}" if connections else None,
    }


def command_line() -> str:
    """How this run was started (`make bench ...` when run through the Makefile)."""
    invoked = " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    module = Path(sys.argv[0]).stem
    direct = f".venv/bin/python -m bench.{module} {invoked}".strip()
    via = os.environ.get("BENCH_VIA")
    return f"{via}  →  {direct}" if via else direct


def write_result(
    section: str,
    *,
    title: str,
    order: int,
    renderer: str,
    data: dict,
    env: dict,
    ok: bool = True,
    notes: list[str] | None = None,
) -> Path:
    """Store one section's results as bench/results/<section>.json.

    `renderer` is "module:function": a function(result dict) -> Markdown that
    bench/report.py imports (so its module must be cheap to import) to build the
    section of BENCHMARKS.md. Sections without a fresh run keep their old JSON.
    """
    env = {**env, "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    result = {
        "section": section,
        "title": title,
        "order": order,
        "renderer": renderer,
        "command": command_line(),
        "ok": ok,
        "notes": notes or [],
        "environment": env,
        "data": data,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{section}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def plot_percentiles(steps: list[dict], path: Path, title: str, *, connect: bool = True) -> Path | None:
    """p50/p95/p99 (ms, log scale) per step as a PNG; steps are dicts with `label`,
    `p50_ms`, `p95_ms`, `p99_ms`. `connect=False` draws markers only (for steps that
    are separate scenarios, not a ramp). None (and a message) if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (requirements-bench.txt): no plot", flush=True)
        return None
    labels = [step["label"] for step in steps]
    positions = range(len(steps))
    figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(steps)), 4))
    for key, marker in (("p50_ms", "o"), ("p95_ms", "s"), ("p99_ms", "^")):
        axes.plot(
            positions,
            [step[key] for step in steps],
            marker=marker,
            linestyle="-" if connect else "none",
            label=key.removesuffix("_ms"),
        )
    axes.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
