"""A cached queue read while sign-ins run, on one gevent worker: before and after the
password check moved off the event loop (issue 17).

    .venv/bin/python -m bench.sign_in_load                     # this tree against BASE_DEFAULT
    .venv/bin/python -m bench.sign_in_load --base none --signers 16 --duration 10

One gunicorn worker (gevent), PostgreSQL + Redis, one doctor with a queue of 10. One
client reads GET /api/queue/<doctor> (a cached snapshot) back to back, first alone
(`quiet`), then while `--signers` threads sign in with the right password in a loop
(`signing in`), each for `--duration` seconds. Before: every scrypt check (production
cost) ran on the worker's one event loop and stopped every other request for its
duration. After: it runs in gevent's thread pool. The base revision runs from a
temporary git worktree against the same schema (this tree's migrations; the base
ignores the table it does not know). Successful sign-ins are not limited here
(the sign-in limits are raised for this server).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.lib import results, services
from bench.lib.http import Http, get_token
from bench.lib.processes import Server, _wait_until_ready, free_port
from bench.lib.seed import seed_clinic

SECTION = "sign_in_load"
TITLE = "A cached read while sign-ins run: the password check off the event loop (issue 17)"
ORDER = 67
ACCEPTS: tuple[str, ...] = ()
# The last commit with the password check on the event loop.
BASE_DEFAULT = "8883e93"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default=BASE_DEFAULT, help="git revision to compare with ('none': skip)")
    parser.add_argument("--signers", type=int, default=16, help="threads signing in at once")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each phase")
    parser.add_argument("--database", default=services.DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=services.DEFAULT_REDIS_URL)
    return parser.parse_args(argv)


def _start(tree: Path, dsn: str, redis_url: str) -> Server:
    """One gevent worker of the HMS in `tree` (its own code and gunicorn.conf.py)."""
    port = free_port()
    env = services.app_env(
        dsn,
        redis_url,
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        GUNICORN_LOGLEVEL="warning",
        # In-flight sign-ins hold their slots until checked: 16 at once from one address.
        LOGIN_LIMIT_PER_USERNAME_AND_CLIENT="100000 per minute",
        LOGIN_LIMIT_PER_CLIENT="100000 per minute",
        LOGIN_LIMIT_PER_USERNAME="100000 per hour",
    )
    results.OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = results.OUT_DIR / f"sign_in_load-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(tree / "gunicorn.conf.py"), "wsgi:app"],
            cwd=tree,
            env={**env, "PYTHONPATH": str(tree)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server("hms", "wsgi:app", port, 1, process, log_path)
    try:
        _wait_until_ready(server, "/readyz")
    except BaseException:
        server.stop()
        raise
    return server


def _reads(base: str, token: str, doctor_id: int, seconds: float) -> list[float]:
    """Milliseconds of each cached queue read, back to back for `seconds`."""
    http = Http.to(base, token)
    took = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            answer = http.request("GET", f"/api/queue/{doctor_id}")
            if answer.status != 200:
                raise RuntimeError(f"queue read: {answer.brief()}")
            took.append(1000 * answer.elapsed)
    finally:
        http.close()
    return took


def _sign_in_loop(base: str, username: str, password: str, stop: threading.Event, done: list[int]) -> None:
    http = Http.to(base)
    try:
        while not stop.is_set():
            answer = http.request("POST", "/api/auth/token", {"username": username, "password": password})
            if answer.status != 200:
                raise RuntimeError(f"sign-in: {answer.brief()}")
            done.append(1)
    finally:
        http.close()


def _summary(took: list[float]) -> dict:
    ordered = sorted(took)
    return {
        "reads": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def measure(tree: Path, args: argparse.Namespace) -> dict:
    dsn = services.fresh_database(args.database)
    services.flush_redis(args.redis_url)
    services.build_schema(dsn, args.redis_url)
    seed = seed_clinic(dsn, doctors=1, patients=20, queue_length=10, completed_history=0)
    server = _start(tree, dsn, args.redis_url)
    try:
        token = get_token(server.base, seed.reception, seed.password)
        doctor = seed.doctor_ids[0]
        _reads(server.base, token, doctor, 1.0)  # warm: the snapshot cached
        quiet = _reads(server.base, token, doctor, args.duration)
        stop, done = threading.Event(), []
        signers = [
            threading.Thread(
                target=_sign_in_loop, args=(server.base, seed.reception, seed.password, stop, done)
            )
            for _ in range(args.signers)
        ]
        for thread in signers:
            thread.start()
        time.sleep(0.5)
        busy = _reads(server.base, token, doctor, args.duration)
        stop.set()
        for thread in signers:
            thread.join(timeout=30)
    finally:
        server.stop()
    return {
        "quiet": _summary(quiet),
        "signing_in": {**_summary(busy), "sign_ins_per_s": round(len(done) / (args.duration + 0.5), 1)},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    env = results.environment()
    runs = {}
    if args.base.lower() != "none":
        with results.worktree(args.base) as (base, tree):
            runs["before"] = {"revision": base, **measure(tree, args)}
        print("before:", runs["before"], flush=True)
    runs["after"] = {"revision": env["git"], **measure(results.ROOT, args)}
    print("after:", runs["after"], flush=True)
    path = results.write_result(
        SECTION,
        title=TITLE,
        order=ORDER,
        renderer="bench.sign_in_load:render",
        data={"signers": args.signers, "duration": args.duration, "runs": runs},
        env=env,
    )
    print(f"wrote {path}")
    return 0


def render(result: dict) -> str:
    data = result["data"]
    lines = [
        f"One gevent worker, PostgreSQL + Redis, production password hashing (scrypt). One client reads a "
        f"doctor's cached queue back to back for {data['duration']:g} s alone, then for {data['duration']:g} s "
        f"while {data['signers']} threads sign in in a loop.",
        "",
        "| revision | phase | reads | p50 ms | p95 ms | max ms | sign-ins/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, run in data["runs"].items():
        for phase, name in (("quiet", "alone"), ("signing_in", "while signing in")):
            row = run[phase]
            lines.append(
                f"| {run['revision']} ({label}) | {name} | {row['reads']} | {row['p50_ms']} | {row['p95_ms']} "
                f"| {row['max_ms']} | {row.get('sign_ins_per_s', '')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
