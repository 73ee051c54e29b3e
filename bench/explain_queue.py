"""Query plans (issue 3): the SQL the app really runs, EXPLAINed on a realistic volume.

    .venv/bin/python -m bench.explain_queue [--appointments 100000] [--events 1000000]

A fresh `hms_bench_explain` database (migrations), filled by bench.lib.history with
INSERT ... SELECT generate_series: 100 doctors, 20,000 patients, 100,000 appointments
over 50 days (45 past, today, 4 ahead; 20 a doctor a day; past days 82% COMPLETED, 9%
CANCELLED, 9% NO_SHOW; today 8 completed, 1 in the room, 11 waiting; ahead all WAITING),
1,000,000 appointment events, one consultation bill per appointment with two items,
payments and refunds; then VACUUM ANALYZE (what autovacuum leaves a busy table in).

Through the API (Flask's test client on `hms.create_app()`, signed in as reception) the
app serves what a clinic asks most (the queue snapshot with its estimated waits,
appointment lists, an events page, bill lists, a booking, calling the next patient); a
before_cursor_execute hook records every statement each request runs and its parameters,
and each is run again as EXPLAIN (ANALYZE, BUFFERS) inside a transaction that is
rolled back. Each is also planned as a generic plan (PREPARE + plan_cache_mode =
force_generic_plan): psycopg prepares a statement on a connection after 5 executions,
and PostgreSQL then switches to the generic plan when it does not look costlier.

Exit status 1 (after writing the results) if a plan the server would run reads
appointments, appointment_events or bills with a Seq Scan: the custom plan, or the
generic plan when its estimated cost is not above the custom plan's.
"""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from bench.lib import plans, results, services
from bench.lib.history import History, generate

SECTION = "explain"
TITLE = "Query plans on 100,000 appointments and 1,000,000 events (issue 3)"
ORDER = 20
ACCEPTS = ("schema",)
GUARDED_TABLES = ("appointments", "appointment_events", "bills")
DEFAULT_DATABASE = "hms_bench_explain"
PASSWORD = "explain-password"  # the reception account's, to sign in through the API
DOCTORS = 100
PATIENTS = 20_000
PER_DAY = 20
DAYS_AHEAD = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        default="migrations",
        help="build the schema with the migrations (default) or from the models (db.create_all)",
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    return parser.parse_args(argv)


# --- the data ----------------------------------------------------------------------------


def history(appointments: int, events: int) -> History:
    return History(
        appointments=appointments,
        events=events,
        doctors=DOCTORS,
        patients=PATIENTS,
        per_day=PER_DAY,
        days_ahead=DAYS_AHEAD,
        password=PASSWORD,
    )


def sample_ids(dsn: str) -> dict:
    """A doctor with a queue today, a patient with history, an appointment with events."""
    with psycopg.connect(dsn) as conn:
        today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
        doctor = conn.execute(
            "SELECT doctor_id FROM appointments WHERE appointment_date = %s AND status = 'WAITING' "
            "ORDER BY doctor_id LIMIT 1",
            (today,),
        ).fetchone()[0]
        patient = conn.execute(
            "SELECT patient_id FROM appointments GROUP BY patient_id ORDER BY count(*) DESC, patient_id LIMIT 1"
        ).fetchone()[0]
        appointment = conn.execute(
            "SELECT id FROM appointments WHERE status = 'COMPLETED' ORDER BY id LIMIT 1"
        ).fetchone()[0]
        reception = conn.execute("SELECT id FROM users WHERE username = 'reception'").fetchone()[0]
    return {
        "today": today,
        "doctor": doctor,
        "patient": patient,
        "appointment": appointment,
        "reception": reception,
    }


# --- capturing the app's SQL ----------------------------------------------------------------


def http_cases(ids: dict) -> list[tuple[str, str, str, dict | None]]:
    """(label, method, path, body) of each request whose SQL is EXPLAINed."""
    today, doctor, patient, appointment = ids["today"], ids["doctor"], ids["patient"], ids["appointment"]
    page = "page=1&limit=20"
    return [
        ("queue snapshot with estimated waits (one doctor, today)", "GET", f"/api/queue/{doctor}", None),
        ("appointments by doctor + date + status", "GET",
         f"/api/appointments?doctor_id={doctor}&date={today}&status=WAITING&{page}", None),
        ("appointments by status (WAITING)", "GET", f"/api/appointments?status=WAITING&{page}", None),
        # The most common status: the page's count reads most of the table.
        ("appointments by status (COMPLETED)", "GET", f"/api/appointments?status=COMPLETED&{page}", None),
        ("appointments by patient", "GET", f"/api/patients/{patient}/appointments?{page}", None),
        ("appointments by patient (list filter)", "GET", f"/api/appointments?patient_id={patient}&{page}", None),
        ("events page of one appointment", "GET", f"/api/appointments/{appointment}/events?{page}", None),
        ("bills by appointment", "GET", f"/api/appointments/{appointment}/bills?{page}", None),
        ("bills by patient", "GET", f"/api/patients/{patient}/bills?{page}", None),
        ("bills by status (UNPAID)", "GET", f"/api/bills?status=UNPAID&{page}", None),
        ("bills by status (PARTIALLY_PAID)", "GET", f"/api/bills?status=PARTIALLY_PAID&{page}", None),
        ("bills by status (PAID, the most common)", "GET", f"/api/bills?status=PAID&{page}", None),
        ("overdue bills", "GET", f"/api/bills?overdue=true&{page}", None),
        ("booking (writes; the counters and queue lock)", "POST", "/api/appointments",
         {"patient_id": patient, "doctor_id": doctor, "appointment_type": "NEW"}),
        ("call the next patient (writes)", "POST", f"/api/queue/{doctor}/next", None),
    ]  # fmt: skip


def capture(dsn: str, ids: dict) -> list[dict]:
    """Each case as an HTTP request through Flask's test client, signed in as reception;
    [{label, statements, error}] with every distinct statement the request ran."""
    os.environ.update(
        {"HMS_ENV": "production", "SECRET_KEY": "bench-only", "DATABASE_URL": dsn, "CLINIC_TIMEZONE": "UTC"}
    )
    os.environ.pop("REDIS_URL", None)
    from hms import create_app

    app = create_app()
    client = app.test_client()
    signed_in = client.post("/api/auth/token", json={"username": "reception", "password": PASSWORD})
    if signed_in.status_code != 200:
        raise RuntimeError(
            f"sign-in as reception failed: {signed_in.status_code} {signed_in.get_data(as_text=True)}"
        )
    headers = {"Authorization": f"Bearer {signed_in.get_json()['access_token']}"}
    client.get("/api/auth/me", headers=headers)  # the account now cached, as in a running server
    results = []
    try:
        with plans.recording() as captured:
            for label, method, path, body in http_cases(ids):
                captured.clear()
                response = client.open(path, method=method, json=body, headers=headers)
                error = None
                if response.status_code >= 400:
                    error = f"HTTP {response.status_code}: {response.get_data(as_text=True)[:200]}"
                results.append({"label": label, "statements": plans.distinct(captured), "error": error})
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    dsn = services.fresh_database(args.database)
    drift = services.build_schema(dsn, None, args.schema)
    print(f"generating {args.appointments} appointments, {args.events} events ...", flush=True)
    counts = generate(dsn, history(args.appointments, args.events))
    print(f"generated {counts}", flush=True)
    env = results.environment(dsn)
    ids = sample_ids(dsn)
    captured = capture(dsn, ids)
    cases, failures = plans.explain_all(dsn, captured, GUARDED_TABLES)
    notes = list(failures)
    if drift:
        notes.append("The migration lacks what the models declare: " + "; ".join(drift))
    data = {
        "rows": counts,
        "sample_ids": {key: str(value) for key, value in ids.items()},
        "migration_drift": drift,
        "schema": args.schema,
        "cases": cases,
    }
    path = results.write_result(
        SECTION,
        title=TITLE,
        order=ORDER,
        renderer="bench.explain_queue:render",
        data=data,
        env=env,
        ok=not failures,
        notes=notes,
    )
    print(f"wrote {path}")
    if failures:
        print("FAIL: sequential scans on guarded tables (or failed calls):", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    return 0


# --- BENCHMARKS.md ------------------------------------------------------------------------


def render(result: dict) -> str:
    data = result["data"]
    rows = data["rows"]
    lines = [
        f"Generated: {rows['appointments']:,} appointments, {rows['appointment_events']:,} events, "
        f"{rows['bills']:,} bills, {rows['bill_items']:,} bill items, {rows['payments']:,} payments, "
        f"{rows['patients']:,} patients (in {rows['seconds']} s, then VACUUM ANALYZE; schema from the "
        f"{data.get('schema', 'migrations')}). Every statement the "
        "service call emitted (captured with a before_cursor_execute hook) run as EXPLAIN (ANALYZE, BUFFERS) "
        "with its parameters, and planned generic (as after psycopg prepares it). "
        "Seq Scans on appointments, appointment_events or bills are in bold and fail the run.",
        "",
    ]
    lines += plans.render_cases(data["cases"], GUARDED_TABLES)
    failures = [failure for case in data["cases"] for failure in case["failures"]]
    lines += ["", "Verdict: " + ("no Seq Scan on the guarded tables." if not failures else "**FAILED**")]
    lines += [f"- {failure}" for failure in failures]
    if data.get("migration_drift"):
        lines += ["", "Migration drift (the models declare more): " + "; ".join(data["migration_drift"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
