"""What each step of a clinic day costs the server: SQL statements, Redis commands and
CPU time per request, for this code and for an older revision (before and after).

    .venv/bin/python -m bench.step_cost                       # this tree vs the default base
    .venv/bin/python -m bench.step_cost --base 752e65b --patients 300
    .venv/bin/python -m bench.step_cost --base none           # this tree only

One client drives the app in-process (Flask's test client, no network, no gunicorn)
through the steps of the day replay, patient after patient: register, book, call next,
prescribe, complete, pay (with an Idempotency-Key), plus a display's snapshot read after
each visit. Per request it counts the SQL statements (SQLAlchemy's before_cursor_execute),
the Redis commands (redis-py's execute_command and pipelines) and the CPU time of the
process (time.process_time: the app's Python work and the client's, not PostgreSQL's or
Redis's). One client and no contention: the figures are cost, not latency, and barely
move with other load on the machine.

The measuring runs in a child process, bench/step_cost_probe.py, which reaches the app
only through its public seams (the app factory, `flask create-user`, the HTTP API), so
the same probe measures both trees. The base revision runs in a temporary git worktree
(`git worktree add --detach`): `--app-root` points the probe at that tree.
Both runs get a fresh PostgreSQL database (`hms_bench_steps`, schema from that tree's
models), Redis DB 8 emptied, the production configuration (Redis cache, pub/sub broker).
The default base (BASE_DEFAULT) is main before issue 13's reshaping (the unit of work,
the queue package, realtime as bytes); `--base 783d5f5` compares with main before the
Core statements on the hot paths, `--base 752e65b` with main before the first round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.lib import results, services

SECTION = "step_cost"
TITLE = (
    "Cost per step: SQL statements, Redis commands and CPU per request, before and after (issues 6, 13, 16)"
)
ORDER = 65
ACCEPTS: tuple[str, ...] = ()
ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "step_cost_probe.py"
# main before the unit of work, the queue package and realtime as bytes (issue 13)
BASE_DEFAULT = "ded6069"
DATABASE = "hms_bench_steps"
REDIS_URL = "redis://127.0.0.1:6379/8"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=300, help="patients through the steps")
    parser.add_argument("--base", default=BASE_DEFAULT, help="git revision to compare with ('none': skip)")
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also run this tree without its request metrics and request log line (their cost alone)",
    )
    parser.add_argument(
        "--database", default=DATABASE, help=f"PostgreSQL database, recreated (default {DATABASE})"
    )
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help=f"Redis database, emptied (default {REDIS_URL})"
    )
    return parser.parse_args(argv)


def _run_child(
    app_root: Path, patients: int, database: str = DATABASE, redis_url: str = REDIS_URL, *probe_args: str
) -> dict:
    """bench/step_cost_probe.py (this tree's copy) against the hms/ of `app_root`."""
    dsn = services.fresh_database(database)
    services.flush_redis(redis_url)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    # -P: the probe's own folder (bench/) is not put on sys.path; PYTHONPATH: the tree measured.
    command = [sys.executable, "-P", str(PROBE), "--app-root", str(app_root), "--patients", str(patients),
               "--out", str(out_path), *probe_args]  # fmt: skip
    env = services.app_env(dsn, redis_url, PYTHONPATH=str(app_root))
    subprocess.run(command, cwd=app_root, env=env, check=True)
    try:
        return json.loads(out_path.read_text())
    finally:
        out_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    env = results.environment()
    runs = {
        "current": {"revision": env["git"], **_run_child(ROOT, args.patients, args.database, args.redis_url)}
    }
    print(f"current: {runs['current']['cpu_ms_per_patient']} ms CPU per patient", flush=True)
    if args.ablate:
        runs["ablated"] = {
            "revision": env["git"],
            **_run_child(ROOT, args.patients, args.database, args.redis_url, "--without-request-metrics"),
        }
        print(
            f"without request metrics: {runs['ablated']['cpu_ms_per_patient']} ms CPU per patient", flush=True
        )
    if args.base.lower() != "none":
        with results.worktree(args.base) as (base, tree):
            runs["base"] = {
                "revision": base,
                **_run_child(tree, args.patients, args.database, args.redis_url),
            }
        print(f"base {base}: {runs['base']['cpu_ms_per_patient']} ms CPU per patient", flush=True)
    path = results.write_result(
        SECTION,
        title=TITLE,
        order=ORDER,
        renderer="bench.step_cost:render",
        data={"patients": args.patients, "runs": runs},
        env=env,
    )
    print(f"wrote {path}")
    return 0


def render(result: dict) -> str:
    data = result["data"]
    current, base = data["runs"]["current"], data["runs"].get("base")
    lines = [
        f"{data['patients']} patients, one client in-process (Flask test client), PostgreSQL + Redis, production "
        "configuration. Per request: SQL statements, Redis commands, and CPU time of the process (the app's "
        "Python work plus the test client's; not PostgreSQL's or Redis's).",
        "",
    ]
    if base:
        lines += [
            "| step | SQL before → after | Redis before → after | CPU ms before → after | CPU change |",
            "|---|---:|---:|---:|---:|",
        ]
        for step, now in current["steps"].items():
            then = base["steps"].get(step)
            if then is None:
                continue
            change = (now["cpu_ms_per_request"] / then["cpu_ms_per_request"] - 1) * 100
            lines.append(
                f"| {step} | {then['sql_per_request']} → {now['sql_per_request']} "
                f"| {then['redis_per_request']} → {now['redis_per_request']} "
                f"| {then['cpu_ms_per_request']} → {now['cpu_ms_per_request']} | {change:+.0f}% |"
            )
        lines += [
            "",
            f"CPU per patient (all steps): {base['cpu_ms_per_patient']} ms at {base['revision']} (before) → "
            f"{current['cpu_ms_per_patient']} ms at {current['revision']} (after).",
        ]
    ablated = data["runs"].get("ablated")
    if ablated:
        lines += [
            "",
            "The same tree in the same run without its request metrics (WSGI timing, request counter and "
            "histogram, statement hooks) and without the per-request log line (`--ablate`): what they cost alone.",
            "",
            "| step | CPU ms without → with | cost per request |",
            "|---|---:|---:|",
        ]
        for step, now in current["steps"].items():
            off = ablated["steps"].get(step)
            if off is not None:
                cost = now["cpu_ms_per_request"] - off["cpu_ms_per_request"]
                lines.append(
                    f"| {step} | {off['cpu_ms_per_request']} → {now['cpu_ms_per_request']} | {cost:+.2f} ms |"
                )
        lines += [
            "",
            f"CPU per patient: {ablated['cpu_ms_per_patient']} ms without → {current['cpu_ms_per_patient']} ms with.",
        ]
    if not base and not ablated:
        lines += ["| step | SQL | Redis | CPU ms |", "|---|---:|---:|---:|"]
        for step, now in current["steps"].items():
            lines.append(
                f"| {step} | {now['sql_per_request']} | {now['redis_per_request']} | {now['cpu_ms_per_request']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
