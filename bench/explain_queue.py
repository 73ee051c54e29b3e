"""Query plans (issue 3): the SQL the app really runs, EXPLAINed on a realistic volume.

    .venv/bin/python -m bench.explain_queue [--appointments 100000] [--events 1000000]

A fresh `hms_bench_explain` database (migrations), filled with INSERT ... SELECT
generate_series: 100 doctors, 20,000 patients, 100,000 appointments over 50 days (45
past, today, 4 ahead; 20 a doctor a day; past days 82% COMPLETED, 9% CANCELLED, 9%
NO_SHOW; today 8 completed, 1 in the room, 11 waiting; ahead all WAITING), 1,000,000
appointment events, one consultation bill per appointment with two items, payments for
the paid ones; then VACUUM ANALYZE (what autovacuum leaves a busy table in).

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
import re
import sys
import time
from datetime import date

import psycopg
from psycopg import sql
from werkzeug.security import generate_password_hash

from bench.lib import results, services
from bench.lib.seed import search_columns

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
# PostgreSQL adds this much (cpu_operator_cost * 1000 per relation) to a custom plan's
# cost when it compares it with the generic plan; a few units, so "not costlier" it is.
GENERIC_SLACK = 5.0


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


def generate(dsn: str, appointments: int, events: int) -> dict:
    """Fill the database; returns row counts and seconds taken."""
    days = max(DAYS_AHEAD + 2, -(-appointments // (DOCTORS * PER_DAY)))
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        ex = conn.execute
        reception, first_doctor = _generate_people(ex)
        _generate_appointments(ex, appointments, days, reception, first_doctor)
        _generate_events(ex, max(1, events // appointments), reception)
        _generate_bills(ex)
        counts = {
            table: ex(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("appointments", "appointment_events", "bills", "bill_items", "payments", "patients")
        }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    counts["seconds"] = round(time.perf_counter() - started, 1)
    return counts


def _generate_people(ex) -> tuple[int, int]:
    """Departments, the fee categories, a reception account (PASSWORD), the doctors and
    the patients; (reception id, first doctor id)."""
    ex(
        "INSERT INTO departments (name, created_at) SELECT 'Department ' || n, now() FROM generate_series(1, 8) n"
    )
    ex("INSERT INTO categories (name, created_at) VALUES ('Consultation', now()), ('Hospital fee', now())")
    ex(
        """
        INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee, hospital_fee,
                           is_available, active, token_epoch, created_at, updated_at)
        SELECT 'reception', %(hash)s, 'Reception', 'reception', NULL, NULL, NULL, true, true, 0, now(), now()
        UNION ALL
        SELECT 'doctor-' || n, 'x', 'Dr. ' || n, 'doctor', 1 + mod(n, 8), 500, 100, true, true, 0, now(), now()
        FROM generate_series(1, %(doctors)s) n
        """,
        {"doctors": DOCTORS, "hash": generate_password_hash(PASSWORD, method="scrypt")},
    )
    folded, folded_values = search_columns(ex.__self__)
    ex(
        f"""
        INSERT INTO patients (mrn, name, gender, age, phone, created_at, updated_at{folded})
        SELECT 'P' || lpad(n::text, 6, '0'), name, (ARRAY['male','female','other'])[1 + n %% 3],
               1 + n %% 90, phone, now(), now(){folded_values}
        FROM (
            SELECT n, 'Patient ' || n AS name, '+9198' || lpad(n::text, 8, '0') AS phone
            FROM generate_series(1, %(patients)s) n
        ) generated
        """,
        {"patients": PATIENTS},
    )
    reception = ex("SELECT id FROM users WHERE username = 'reception'").fetchone()[0]
    first_doctor = ex("SELECT min(id) FROM users WHERE role = 'doctor'").fetchone()[0]
    return reception, first_doctor


def _generate_appointments(ex, appointments: int, days: int, reception: int, first_doctor: int) -> None:
    """The appointments over `days` days (see the module docstring) and their queue days."""
    first_day = f"(now() AT TIME ZONE 'UTC')::date - {days - DAYS_AHEAD - 1}"
    ex("SELECT setseed(0.42)")
    ex(
        f"""
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, chief_complaint, created_by_id, created_at, waiting_since,
                                  entry_time, exit_time, updated_at)
        SELECT patient_id, doctor_id, day, appointment_type, status, token,
               CASE WHEN status IN ('WAITING', 'IN_CONSULTATION')
                    THEN CASE WHEN day = today THEN token - 8 ELSE token END END,
               'Fever', {reception}, booked, booked,
               CASE WHEN status = 'COMPLETED' THEN day + time '09:00' + token * interval '15 minutes'
                    WHEN status = 'IN_CONSULTATION' THEN now() - interval '5 minutes' END,
               CASE WHEN status = 'COMPLETED'
                    THEN day + time '09:00' + token * interval '15 minutes' + (5 + mod(g, 15)) * interval '1 minute'
               END,
               booked
        FROM (
            SELECT g, 1 + mod(g * 7919, {PATIENTS}) AS patient_id, {first_doctor} + mod(g, {DOCTORS}) AS doctor_id, day, today,
                   token, CASE WHEN mod(g, 3) = 0 THEN 'FOLLOW_UP' ELSE 'NEW' END AS appointment_type,
                   CASE WHEN day < today THEN
                            CASE WHEN r < 0.82 THEN 'COMPLETED' WHEN r < 0.91 THEN 'CANCELLED' ELSE 'NO_SHOW' END
                        WHEN day = today THEN
                            CASE WHEN token <= 8 THEN 'COMPLETED' WHEN token = 9 THEN 'IN_CONSULTATION'
                                 ELSE 'WAITING' END
                        ELSE 'WAITING' END AS status,
                   least(now() - mod(g, 86400) * interval '1 second',
                         day + time '08:00' + token * interval '2 minutes' + mod(g, {DOCTORS}) * interval '1 second')
                       AS booked
            FROM (
                SELECT g, random() AS r, {first_day} + (g / {DOCTORS}) / {PER_DAY} AS day,
                       (now() AT TIME ZONE 'UTC')::date AS today, 1 + mod(g / {DOCTORS}, {PER_DAY}) AS token
                FROM generate_series(0, %(appointments)s - 1) g
            ) numbered
        ) shaped
        """,
        {"appointments": appointments},
    )
    ex(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT doctor_id, appointment_date, max(token), 2 * count(*) FROM appointments
        GROUP BY doctor_id, appointment_date
        """
    )


def _generate_events(ex, per_appointment: int, reception: int) -> None:
    ex(
        """
        INSERT INTO appointment_events (appointment_id, event_type, from_status, to_status, description,
                                        performed_by_id, performed_at)
        SELECT a.id, (ARRAY['CREATED','ENTERED_ROOM','CONSULTATION_COMPLETED','PAYMENT_RECEIVED',
                            'PRESCRIPTION_ADDED','RETURNED_TO_QUEUE','APPOINTMENT_CANCELLED','NO_SHOW'])[1 + (k - 1) %% 8],
               NULL, NULL, NULL, %(reception)s, a.created_at + k * interval '3 minutes'
        FROM appointments a CROSS JOIN generate_series(1, %(per)s) k
        """,
        {"per": per_appointment, "reception": reception},
    )


def _generate_bills(ex) -> None:
    """One consultation bill per appointment with two items, and the payments of the paid ones."""
    ex(
        """
        INSERT INTO bills (number, patient_id, appointment_id, status, total_amount, paid_amount, due_amount,
                           due_date, void_reason, created_by_id, created_at, updated_at)
        SELECT 'S-' || lpad(id::text, 9, '0'), patient_id, id, bill_status, 600,
               CASE bill_status WHEN 'PAID' THEN 600 WHEN 'PARTIALLY_PAID' THEN 300 ELSE 0 END,
               CASE bill_status WHEN 'PAID' THEN 0 WHEN 'PARTIALLY_PAID' THEN 300 ELSE 600 END,
               appointment_date, CASE WHEN bill_status = 'VOID' THEN 'Cancelled' END, created_by_id, created_at, created_at
        FROM (
            SELECT a.*, CASE WHEN status = 'COMPLETED' THEN
                                 CASE WHEN mod(id, 20) < 17 THEN 'PAID' WHEN mod(id, 20) < 19 THEN 'PARTIALLY_PAID'
                                      ELSE 'UNPAID' END
                             WHEN status = 'CANCELLED' THEN 'VOID' ELSE 'UNPAID' END AS bill_status
            FROM appointments a
        ) a
        """
    )
    ex(
        """
        INSERT INTO bill_items (bill_id, category_id, description, quantity, unit_price, amount, created_at)
        SELECT b.id, k, CASE k WHEN 1 THEN 'Consultation fee' ELSE 'Hospital fee' END, 1,
               CASE k WHEN 1 THEN 500 ELSE 100 END, CASE k WHEN 1 THEN 500 ELSE 100 END, b.created_at
        FROM bills b CROSS JOIN generate_series(1, 2) k
        """
    )
    ex(
        """
        INSERT INTO payments (bill_id, kind, amount, method, received_by_id, created_at)
        SELECT id, 'PAYMENT', paid_amount, 'CASH', created_by_id, created_at + interval '1 hour'
        FROM bills WHERE paid_amount > 0
        """
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
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

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
    captured: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            captured.append((statement, parameters))

    results = []
    event.listen(Engine, "before_cursor_execute", record)
    try:
        for label, method, path, body in http_cases(ids):
            captured.clear()
            response = client.open(path, method=method, json=body, headers=headers)
            error = None
            if response.status_code >= 400:
                error = f"HTTP {response.status_code}: {response.get_data(as_text=True)[:200]}"
            seen, statements = set(), []
            for statement, parameters in captured:
                if statement not in seen:
                    seen.add(statement)
                    statements.append((statement, parameters))
            results.append({"label": label, "statements": statements, "error": error})
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    return results


# --- EXPLAIN -----------------------------------------------------------------------------


def _walk(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


def _describe(plan: dict) -> str:
    node = plan["Node Type"]
    if "Index Name" in plan:
        node += f" using {plan['Index Name']}"
    if "Relation Name" in plan:
        node += f" on {plan['Relation Name']}"
    return node


def summarize_plan(explained: list) -> dict:
    top = explained[0]
    plan = top["Plan"]
    nodes = [_describe(node) for node in _walk(plan) if "Relation Name" in node or "Index Name" in node]
    seq = [node["Relation Name"] for node in _walk(plan) if node["Node Type"] == "Seq Scan"]
    return {
        "scans": nodes,
        "seq_scans": seq,
        "guarded_seq_scans": [table for table in seq if table in GUARDED_TABLES],
        "cost": plan.get("Total Cost"),
        "rows": plan.get("Actual Rows"),
        "execution_ms": round(top["Execution Time"], 3) if "Execution Time" in top else None,
        "planning_ms": round(top["Planning Time"], 3) if "Planning Time" in top else None,
        "shared_hit": plan.get("Shared Hit Blocks"),
        "shared_read": plan.get("Shared Read Blocks"),
    }


def _positional(statement: str, parameters) -> tuple[str, list]:
    """'... %(name)s ...' with a dict -> '... $1 ...' and the values in order."""
    if isinstance(parameters, dict):
        order: list[str] = []

        def number(match: re.Match) -> str:
            name = match.group(1)
            if name not in order:
                order.append(name)
            return f"${order.index(name) + 1}"

        text = re.sub(r"%\((\w+)\)s", number, statement)
        values = [parameters[name] for name in order]
    else:
        values = list(parameters or ())
        counter = iter(range(1, len(values) + 1))
        text = re.sub(r"%s", lambda _: f"${next(counter)}", statement)
    return text.replace("%%", "%"), values


def _explain_json(
    conn: psycopg.Connection, query, parameters, *, setup: tuple = ()
) -> tuple[list, str | None]:
    """EXPLAIN (ANALYZE, BUFFERS) in a rolled-back transaction; if running the statement
    fails (an INSERT that would now hit a unique key), its plan without running it."""
    note = None
    try:
        with conn.transaction(force_rollback=True):
            for statement in setup:
                conn.execute(statement)
            row = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(query), parameters
            ).fetchone()
        return row[0], note
    except psycopg.Error as error:
        note = str(error).splitlines()[0]
    with conn.transaction(force_rollback=True):
        for statement in setup:
            conn.execute(statement)
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), parameters).fetchone()
    return row[0], note


def explain(conn: psycopg.Connection, statement: str, parameters, number: int) -> dict:
    """The custom plan and the generic plan of one captured statement."""
    out: dict = {}
    plan, note = _explain_json(conn, sql.SQL(statement), parameters or None)
    out["custom"] = summarize_plan(plan) | ({"not_analyzed": note} if note else {})
    text, values = _positional(statement, parameters)
    if not values:
        return out
    name = sql.Identifier(f"bench_generic_{number}")
    try:
        conn.execute(sql.SQL("PREPARE {} AS {}").format(name, sql.SQL(text)))
    except psycopg.Error as error:
        out["generic"] = {"error": str(error).splitlines()[0]}
        return out
    try:
        literals = sql.SQL(", ").join(sql.Literal(value) for value in values)
        plan, note = _explain_json(
            conn,
            sql.SQL("EXECUTE {}({})").format(name, literals),
            None,
            setup=("SET LOCAL plan_cache_mode = force_generic_plan",),
        )
        out["generic"] = summarize_plan(plan) | ({"not_analyzed": note} if note else {})
    except psycopg.Error as error:
        out["generic"] = {"error": str(error).splitlines()[0]}
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    return out


def failures_of(case: dict) -> list[str]:
    found = []
    for item in case["statements"]:
        custom, generic = item["custom"], item.get("generic") or {}
        if custom["guarded_seq_scans"]:
            found.append(
                f"{case['label']}: Seq Scan on {', '.join(custom['guarded_seq_scans'])}: {item['sql'][:120]}"
            )
        if generic.get("guarded_seq_scans") and generic["cost"] <= custom["cost"] + GENERIC_SLACK:
            found.append(
                f"{case['label']}: generic plan (cost {generic['cost']} <= custom {custom['cost']}) "
                f"Seq Scan on {', '.join(generic['guarded_seq_scans'])}: {item['sql'][:120]}"
            )
    if case.get("error"):
        found.append(f"{case['label']}: the service call failed: {case['error']}")
    return found


def _short(value) -> str:
    text = repr(value) if not isinstance(value, date) else value.isoformat()
    return text if len(text) <= 40 else text[:37] + "..."


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    dsn = services.fresh_database(args.database)
    drift = services.build_schema(dsn, None, args.schema)
    print(f"generating {args.appointments} appointments, {args.events} events ...", flush=True)
    counts = generate(dsn, args.appointments, args.events)
    print(f"generated {counts}", flush=True)
    env = results.environment(dsn)
    ids = sample_ids(dsn)
    captured = capture(dsn, ids)
    cases, failures = [], []
    # autocommit: each EXPLAIN runs in its own explicit, rolled-back transaction; no
    # automatic prepared statements on this connection (PREPARE is done by hand).
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        numbers = iter(range(1_000_000))
        for case in captured:
            statements = []
            for statement, parameters in case["statements"]:
                plans = explain(conn, statement, parameters, next(numbers))
                params = parameters.values() if isinstance(parameters, dict) else parameters or ()
                statements.append(
                    {
                        "sql": brief_sql(statement, width=300),
                        "params": [_short(value) for value in params],
                        **plans,
                    }
                )
            entry = {"label": case["label"], "error": case["error"], "statements": statements}
            entry["failures"] = failures_of(entry)
            failures += entry["failures"]
            cases.append(entry)
            total = sum((s["custom"].get("execution_ms") or 0) for s in statements)
            print(f"{case['label']}: {len(statements)} statements, {total:.2f} ms", flush=True)
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


def _plan_cell(plan: dict | None) -> str:
    if not plan:
        return "-"
    if "error" in plan:
        return f"n/a ({plan['error'][:60]})"
    scans = [scan for scan in plan["scans"] if not scan.startswith(("Result", "Limit"))]
    text = "<br>".join(dict.fromkeys(scans)) or plan.get("note", "no table")
    if plan["guarded_seq_scans"]:
        text = f"**{text}**"
    return text


def brief_sql(statement: str, width: int = 150) -> str:
    """The statement with long select lists elided, so its FROM and WHERE show."""

    def elide(match: re.Match) -> str:
        columns = match.group(1)
        return f"SELECT {columns} FROM" if len(columns) <= 30 else "SELECT … FROM"

    text = re.sub(r"%\((\w+)\)s(?:::\w+)?", r":\1", " ".join(statement.split()))
    text = re.sub(r"SELECT ((?:(?!\bFROM\b).)+?) FROM", elide, text)
    text = re.sub(r"\((?::\w+, ){3,}:\w+\)", "(…)", text)
    return text if len(text) <= width else text[: width - 1] + "…"


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
        "| service call | statements | exec ms (sum) | indexes used | Seq Scans |",
        "|---|---:|---:|---|---|",
    ]
    for case in data["cases"]:
        plans = [item["custom"] for item in case["statements"]]
        plans += [item["generic"] for item in case["statements"] if item.get("generic", {}).get("scans")]
        indexes = sorted(
            {
                scan.split(" using ", 1)[1].split(" on ")[0]
                for p in plans
                for scan in p["scans"]
                if " using " in scan
            }
        )
        seq = sorted({table for p in plans for table in p["seq_scans"]})
        guarded = [f"**{table}**" if table in GUARDED_TABLES else table for table in seq]
        executed = sum(item["custom"].get("execution_ms") or 0 for item in case["statements"])
        lines.append(
            f"| {case['label']} | {len(case['statements'])} | {executed:.2f} | {', '.join(indexes) or '-'} "
            f"| {', '.join(guarded) or 'none'} |"
        )
    lines += [
        "",
        "Every statement (custom plan = EXPLAIN ANALYZE with the captured parameters; generic = the plan of "
        "the prepared statement; *same* when it reads the same way):",
        "",
        "| service call | statement | custom plan: scans | exec ms | generic plan: scans |",
        "|---|---|---|---:|---|",
    ]
    for case in data["cases"]:
        if case.get("error"):
            lines.append(f"| {case['label']} | **failed: {case['error'][:120]}** | | | |")
        for item in case["statements"]:
            statement = brief_sql(item["sql"]).replace("|", "\\|")
            custom = item["custom"]
            executed = custom.get("execution_ms")
            exec_cell = f"{executed:.3f}" if executed is not None else "not run"
            generic = item.get("generic")
            same = generic and generic.get("scans") == custom["scans"]
            lines.append(
                f"| {case['label']} | `{statement}` | {_plan_cell(custom)} | {exec_cell} "
                f"| {'same' if same else _plan_cell(generic)} |"
            )
    failures = [failure for case in data["cases"] for failure in case["failures"]]
    lines += ["", "Verdict: " + ("no Seq Scan on the guarded tables." if not failures else "**FAILED**")]
    lines += [f"- {failure}" for failure in failures]
    if data.get("migration_drift"):
        lines += ["", "Migration drift (the models declare more): " + "; ".join(data["migration_drift"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
