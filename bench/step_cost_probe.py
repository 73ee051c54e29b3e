"""The measuring side of bench/step_cost.py, run as a child process against one tree.

    python -P bench/step_cost_probe.py --app-root TREE --patients N --out OUT.json

It imports nothing from bench/ and, of the app, only its public seams: `hms.create_app`,
the app's registered Flask-SQLAlchemy extension (the schema from the models), the
`flask create-user` command (the first admin) and the HTTP API through Flask's test
client (everything else). So the same file measures this tree and an older revision
checked out elsewhere, whatever either keeps inside its packages. The environment names
a fresh PostgreSQL database and an empty Redis database (bench/step_cost.py sees to it).

Per request of each step it counts the SQL statements (SQLAlchemy's
before_cursor_execute on every Engine), the Redis commands (redis-py's execute_command
and pipelines) and the CPU time of this process (time.process_time: the app's Python
work and the test client's, not PostgreSQL's or Redis's).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from pathlib import Path

STEPS = ("register", "book", "next", "prescribe", "complete", "snapshot (display)", "pay")
PASSWORD = "step-cost-password"
ROLES = ("reception", "cashier", "display", "doctor")


class Steps:
    """The test client, signed in as each role, and the running totals per step."""

    def __init__(self, client, tokens: dict[str, str], statements: list, redis_commands: list):
        self.client, self.tokens = client, tokens
        self.statements, self.redis_commands = statements, redis_commands
        self.totals = {step: [0, 0, 0, 0.0] for step in STEPS}  # requests, statements, redis, cpu seconds

    def call(
        self,
        step: str,
        role: str,
        method: str,
        url: str,
        body: dict | None = None,
        headers: dict | None = None,
    ):
        before_sql, before_redis = len(self.statements), len(self.redis_commands)
        started = time.process_time()
        response = self.client.open(
            url,
            method=method,
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[role]}", **(headers or {})},
        )
        cpu = time.process_time() - started
        if response.status_code >= 300:
            raise RuntimeError(f"{step}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        row = self.totals[step]
        row[0] += 1
        row[1] += len(self.statements) - before_sql
        row[2] += len(self.redis_commands) - before_redis
        row[3] += cpu
        return response.get_json()


def _prescription(medicine_id: int) -> dict:
    item = {
        "medicine_id": medicine_id,
        "dosage": "1 tablet",
        "frequency": "bd",
        "duration_days": 5,
        "quantity": 10,
    }
    return {"notes": "Rest", "items": [item]}


def patient_day(steps: Steps, doctor_id: int, medicine_id: int, patients: int) -> None:
    """The day replay's steps, patient after patient, with a short queue (5) as in the replay."""
    waiting: list[dict] = []
    for number in range(patients):
        patient = steps.call("register", "reception", "POST", "/api/patients", {
            "name": f"Asha Kumar {number}", "gender": "female", "age": 30, "phone": f"+9198{number:08d}"})  # fmt: skip
        waiting.append(steps.call("book", "reception", "POST", "/api/appointments", {
            "patient_id": patient["id"], "doctor_id": doctor_id, "appointment_type": "NEW",
            "chief_complaint": "fever"}))  # fmt: skip
        if len(waiting) < 5 and number < patients - 1:
            continue
        while waiting:
            booking = waiting.pop(0)
            snapshot = steps.call("next", "doctor", "POST", f"/api/queue/{doctor_id}/next")
            appointment_id = snapshot["in_consultation"]["appointment_id"]
            steps.call("prescribe", "doctor", "POST", f"/api/appointments/{appointment_id}/prescriptions",
                       _prescription(medicine_id))  # fmt: skip
            steps.call("complete", "doctor", "PATCH", f"/api/appointments/{appointment_id}/status",
                       {"status": "COMPLETED"})  # fmt: skip
            steps.call("snapshot (display)", "display", "GET", f"/api/queue/{doctor_id}")
            steps.call("pay", "cashier", "POST", f"/api/bills/{booking['bill_id']}/payments",
                       {"amount": "600.00", "method": "CASH", "reference": "step-cost"},
                       {"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip


def _ok(response, what: str) -> dict:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    return response.get_json()


def _token(client, username: str) -> str:
    answer = client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
    return _ok(answer, f"sign-in as {username}")["access_token"]


def seed(app) -> tuple[dict[str, str], int, int]:
    """An admin (flask create-user), then through the API: one account per role (the
    doctor's fees 500 + 100), the two fee categories and a medicine. (tokens, doctor id,
    medicine id)."""
    created = app.test_cli_runner().invoke(
        args=[
            "create-user",
            "steps-admin",
            "--role",
            "admin",
            "--name",
            "Steps admin",
            "--password",
            PASSWORD,
        ]
    )
    if created.exit_code != 0:
        raise RuntimeError(f"flask create-user failed: {created.output}")
    client = app.test_client()
    admin = {"Authorization": f"Bearer {_token(client, 'steps-admin')}"}
    ids = {}
    for role in ROLES:
        fees = {"consultation_fee": "500.00", "hospital_fee": "100.00"} if role == "doctor" else {}
        body = {
            "username": f"steps-{role}",
            "password": PASSWORD,
            "name": f"Steps {role}",
            "role": role,
            **fees,
        }
        ids[role] = _ok(client.post("/api/staff", json=body, headers=admin), f"creating {role}")["id"]
    for name in ("Consultation", "Hospital fee"):
        _ok(client.post("/api/categories", json={"name": name}, headers=admin), f"category {name}")
    medicine = {"name": "Paracetamol", "generic_name": "Paracetamol", "form": "tablet", "strength": "500 mg",
                "unit_price": "2.00"}  # fmt: skip
    medicine_id = _ok(client.post("/api/medicines", json=medicine, headers=admin), "medicine")["id"]
    tokens = {role: _token(client, f"steps-{role}") for role in ROLES}
    return tokens, ids["doctor"], medicine_id


def _count_statements() -> list[str]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []
    event.listen(Engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


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


def _create_schema(app) -> None:
    """The schema from this tree's models (what the migration does first: pg_trgm)."""
    from sqlalchemy import text

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        db.create_all()


def measure(app_root: Path, patients: int, without_request_metrics: bool = False) -> dict:
    sys.path.insert(0, str(app_root))
    import hms
    from hms import create_app

    if without_request_metrics:
        # The ablation (bench/step_cost.py --ablate): the same tree without the per-request
        # metrics (the WSGI timing, the request counter and histogram, the statement hooks)
        # and without the per-request log line. Trees before issue 16 have neither.
        hms.init_metrics = lambda app: None
    app = create_app("production")
    if without_request_metrics:
        logging.getLogger("hms.request").setLevel(logging.WARNING)
    _create_schema(app)
    tokens, doctor_id, medicine_id = seed(app)
    steps = Steps(app.test_client(), tokens, _count_statements(), _count_redis_commands())
    patient_day(steps, doctor_id, medicine_id, patients)
    rows = {
        step: {
            "requests": n,
            "sql_per_request": round(sql / n, 2),
            "redis_per_request": round(redis / n, 2),
            "cpu_ms_per_request": round(1000 * cpu / n, 2),
        }
        for step, (n, sql, redis, cpu) in steps.totals.items()
        if n
    }
    per_patient = sum(row["cpu_ms_per_request"] * row["requests"] for row in rows.values()) / patients
    return {"steps": rows, "cpu_ms_per_patient": round(per_patient, 1), "patients": patients}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-root", required=True, type=Path, help="the tree whose hms/ is measured")
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--without-request-metrics",
        action="store_true",
        help="the ablation: no request metrics, no request log line",
    )
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.app_root, args.patients, args.without_request_metrics)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
