"""PostgreSQL and Redis for a benchmark: started when they are down, a database of its
own recreated, migrated (or built from the models), a Redis database flushed, and the
environment of a production HMS process pointed at them.

Nothing here touches a database other than the one it is given: the defaults are
`hms_bench` (PostgreSQL) and Redis DB 7.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import psycopg

from bench.lib.results import ROOT

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
DEFAULT_DATABASE = os.environ.get("BENCH_DATABASE", "hms_bench")
DEFAULT_REDIS_URL = os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:{REDIS_PORT}/7")
SECRET_KEY = "bench-only-not-secret"
# Databases a benchmark must never drop.
PROTECTED_DATABASES = {"postgres", "template0", "template1", "test"}


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
        # A benchmark signs in every desk, doctor and display from one address at its start.
        "LOGIN_SUCCESS_LIMIT_PER_CLIENT": "100000 per minute",
        # A benchmark drives thousands of calls a second through a few accounts from one
        # address: the API rate limits are off unless a run turns them on (extra).
        "RATE_LIMIT_PER_ACCOUNT": "0",
        "RATE_LIMIT_PER_ADDRESS": "0",
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


# The app's own Flask-SQLAlchemy extension, as the app registered it (no import of hms
# internals: the app factory is the seam).
_CREATE_FROM_MODELS = """
from sqlalchemy import text
from hms import create_app
app = create_app()
db = app.extensions["sqlalchemy"]
with app.app_context():
    with db.engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
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
