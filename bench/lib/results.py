"""Where results go and the facts every figure needs.

- `environment()` records date, cores, memory, versions and the load average (a noise
  indicator); `write_result()` stores a section's results as small JSON under
  bench/results/, from which bench/report.py rebuilds BENCHMARKS.md.
- `worktree(rev)` checks an older revision out for before-and-after runs.
- `plot_percentiles()` draws p50/p95/p99 per step as a PNG (matplotlib, optional).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench" / "results"
# Logs, profiles and flame graphs: git-ignored.
OUT_DIR = ROOT / "bench" / "out"
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


def package_version(name: str) -> str:
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
        "packages": {name: package_version(name) for name in PACKAGES},
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
