"""What each step of a clinic day costs the server: SQL statements, Redis commands and
CPU time per request, for this code and for an older revision (before and after).

    .venv/bin/python -m bench.step_cost                       # this tree vs the default base
    .venv/bin/python -m bench.step_cost --base 752e65b --patients 300
    .venv/bin/python -m bench.step_cost --base none           # this tree only

One client drives the app in-process (Flask's test client, no network, no gunicorn)
through the steps of the day replay, patient after patient: register, book, call next,
prescribe, complete, pay (with an Idempotency-Key), plus a display's snapshot read after
each visit. Per request it counts the SQL statements (SQLAlchemy's before_cursor_execute),
the Redis commands (redis-py's execute_command and pipelines) and the CPU time of this
process (time.process_time: the app's Python work and the client's, not PostgreSQL's or
Redis's). One client and no contention: the figures are cost, not latency, and barely
move with other load on the machine.

The base revision runs in a temporary git worktree (`git worktree add --detach`), with
the same script and the same steps: `--app-root` points the child process at that tree.
Both runs get a fresh PostgreSQL database (`hms_bench_steps`, schema from that tree's
models), Redis DB 8 emptied, the production configuration (Redis cache, pub/sub broker).
The default base (BASE_DEFAULT) is main before the third round of fixes (Core statements
on the hot paths); `--base 752e65b` compares with main before the first round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SECTION = "step_cost"
TITLE = "Cost per step: SQL statements, Redis commands and CPU per request, before and after (issue 6)"
ORDER = 65
ACCEPTS: tuple[str, ...] = ()
ROOT = Path(__file__).resolve().parent.parent
# main before the Core-statement fixes of the hot paths (2026-11-28, third session)
BASE_DEFAULT = "783d5f5"
DATABASE = "hms_bench_steps"
REDIS_URL = "redis://127.0.0.1:6379/8"
STEPS = ("register", "book", "next", "prescribe", "complete", "snapshot (display)", "pay")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=300, help="patients through the steps")
    parser.add_argument("--base", default=BASE_DEFAULT, help="git revision to compare with ('none': skip)")
    parser.add_argument("--app-root", default=None, help=argparse.SUPPRESS)  # child: the tree to measure
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the measurement (runs in a child process, against --app-root) ------------------------


def measure(app_root: Path, patients: int) -> dict:
    """In the child: the environment already names a fresh database and Redis DB."""
    sys.path.insert(0, str(app_root))
    from sqlalchemy import event, text

    from hms import create_app
    from hms.extensions import db

    app = create_app("production")
    with app.app_context():
        with db.engine.begin() as conn:  # what the migration does first
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        db.create_all()
        tokens, doctor_id, medicine_id = _seed(db)
    statements: list[str] = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    redis_commands = _count_redis_commands()
    client = app.test_client()
    totals = {step: [0, 0, 0, 0.0] for step in STEPS}  # requests, statements, redis, cpu seconds

    def call(step: str, role: str, method: str, url: str, *, json_body: dict, headers: dict | None = None):
        before_sql, before_redis = len(statements), len(redis_commands)
        started = time.process_time()
        response = client.open(
            url,
            method=method,
            json=json_body,
            headers={"Authorization": f"Bearer {tokens[role]}", **(headers or {})},
        )
        cpu = time.process_time() - started
        if response.status_code >= 300:
            raise RuntimeError(f"{step}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        row = totals[step]
        row[0] += 1
        row[1] += len(statements) - before_sql
        row[2] += len(redis_commands) - before_redis
        row[3] += cpu
        return response.get_json()

    prescription = {
        "notes": "Rest",
        "items": [
            {
                "medicine_id": medicine_id,
                "dosage": "1 tablet",
                "frequency": "bd",
                "duration_days": 5,
                "quantity": 10,
            }
        ],
    }
    waiting: list[dict] = []
    for number in range(patients):
        patient = call("register", "reception", "POST", "/api/patients", json_body={
            "name": f"Asha Kumar {number}", "gender": "female", "age": 30, "phone": f"+9198{number:08d}"})  # fmt: skip
        waiting.append(call("book", "reception", "POST", "/api/appointments", json_body={
            "patient_id": patient["id"], "doctor_id": doctor_id, "appointment_type": "NEW",
            "chief_complaint": "fever"}))  # fmt: skip
        if len(waiting) < 5 and number < patients - 1:
            continue  # a short queue, as in the day replay
        while waiting:
            booking = waiting.pop(0)
            snapshot = call("next", "doctor", "POST", f"/api/queue/{doctor_id}/next", json_body=None)
            appointment_id = snapshot["in_consultation"]["appointment_id"]
            call("prescribe", "doctor", "POST", f"/api/appointments/{appointment_id}/prescriptions",
                 json_body=prescription)  # fmt: skip
            call("complete", "doctor", "PATCH", f"/api/appointments/{appointment_id}/status",
                 json_body={"status": "COMPLETED"})  # fmt: skip
            call("snapshot (display)", "display", "GET", f"/api/queue/{doctor_id}", json_body=None)
            call("pay", "cashier", "POST", f"/api/bills/{booking['bill_id']}/payments",
                 json_body={"amount": "600.00", "method": "CASH", "reference": "step-cost"},
                 headers={"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip
    rows = {
        step: {
            "requests": n,
            "sql_per_request": round(sql / n, 2),
            "redis_per_request": round(redis / n, 2),
            "cpu_ms_per_request": round(1000 * cpu / n, 2),
        }
        for step, (n, sql, redis, cpu) in totals.items()
        if n
    }
    per_patient = sum(row["cpu_ms_per_request"] * row["requests"] for row in rows.values()) / patients
    return {"steps": rows, "cpu_ms_per_patient": round(per_patient, 1), "patients": patients}


def _seed(db) -> tuple[dict[str, str], int, int]:
    from werkzeug.security import generate_password_hash

    from hms.auth.models import User
    from hms.auth.service import issue_token, load_identity
    from hms.reference.models import Category, Medicine

    password_hash = generate_password_hash("step-cost", method="scrypt:1024:8:1")
    ids = {}
    for role in ("reception", "cashier", "display", "doctor"):
        fees = {"consultation_fee": "500.00", "hospital_fee": "100.00"} if role == "doctor" else {}
        user = User(
            username=f"steps-{role}", password_hash=password_hash, name=f"Steps {role}", role=role, **fees
        )
        db.session.add(user)
        db.session.flush()
        ids[role] = user.id
    db.session.add_all([Category(name="Consultation"), Category(name="Hospital fee")])
    medicine = Medicine(name="Paracetamol", generic_name="Paracetamol", form="tablet", strength="500 mg",
                        unit_price="2.00")  # fmt: skip
    db.session.add(medicine)
    db.session.commit()
    tokens = {role: issue_token(load_identity(user_id))["access_token"] for role, user_id in ids.items()}
    return tokens, ids["doctor"], medicine.id


def _count_redis_commands() -> list[str]:
    import redis

    commands: list[str] = []
    execute = redis.Redis.execute_command
    pipeline_execute = redis.client.Pipeline.execute

    def counted(self, *args, **kwargs):
        commands.append(str(args[0]))
        return execute(self, *args, **kwargs)

    def counted_pipeline(self, *args, **kwargs):
        commands.append("PIPELINE")  # one round trip
        return pipeline_execute(self, *args, **kwargs)

    redis.Redis.execute_command = counted
    redis.client.Pipeline.execute = counted_pipeline
    return commands


# --- the driver ------------------------------------------------------------------------------


def _run_child(app_root: Path, patients: int) -> dict:
    from bench import harness

    dsn = harness.fresh_database(DATABASE)
    harness.flush_redis(REDIS_URL)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    command = [sys.executable, str(Path(__file__).resolve()), "--app-root", str(app_root),
               "--patients", str(patients), "--child-out", str(out_path)]  # fmt: skip
    env = harness.app_env(dsn, REDIS_URL, PYTHONPATH=str(app_root))
    subprocess.run(command, cwd=app_root, env=env, check=True)
    try:
        return json.loads(out_path.read_text())
    finally:
        out_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.app_root:  # child
        result = measure(Path(args.app_root), args.patients)
        Path(args.child_out).write_text(json.dumps(result))
        return 0
    from bench import harness

    harness.ensure_services()
    env = harness.environment()
    runs = {"current": {"revision": env["git"], **_run_child(ROOT, args.patients)}}
    print(f"current: {runs['current']['cpu_ms_per_patient']} ms CPU per patient", flush=True)
    if args.base.lower() != "none":
        with harness.worktree(args.base) as (base, tree):
            runs["base"] = {"revision": base, **_run_child(tree, args.patients)}
        print(f"base {base}: {runs['base']['cpu_ms_per_patient']} ms CPU per patient", flush=True)
    path = harness.write_result(
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
    else:
        lines += ["| step | SQL | Redis | CPU ms |", "|---|---:|---:|---:|"]
        for step, now in current["steps"].items():
            lines.append(
                f"| {step} | {now['sql_per_request']} | {now['redis_per_request']} | {now['cpu_ms_per_request']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
