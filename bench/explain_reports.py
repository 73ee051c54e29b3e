"""Reports on a big history: how long each takes and the plans of the SQL it runs.

    .venv/bin/python -m bench.explain_reports [--appointments 1000000] [--runs 10] [--reuse]

A fresh `hms_bench_reports` database (migrations), filled by bench.lib.history with
INSERT ... SELECT generate_series: 40 doctors seeing 60 patients a day, 1,000,000
appointments over 417 days (the last 4 ahead of today), 200,000 patients, one bill per
appointment with two items, 4 cashiers' payments by every method, refunds, and unpaid
and part-paid bills over the whole history; then VACUUM ANALYZE. `--reuse` keeps a
database this script filled before (it only migrates it, which adds a new index).

Inside an app context of `hms.create_app()` (production settings, DATABASE_URL at that
database) it calls hms.reports.service: `daily` for the busiest past day, `cash_up` for
that day (every cashier, then one), `receivables` as of today over the last 90 days.
Each call is timed: the first call (a new connection pool, statements not yet prepared)
and the median, minimum and maximum of `--runs` warm calls. A before_cursor_execute hook
records every statement each call runs; each is run again as EXPLAIN (ANALYZE, BUFFERS)
with its parameters, and planned generic (bench.lib.plans).

Exit status 1 (after writing the results) if a plan the server would run reads
appointments, bills or payments with a Seq Scan, if a call fails, or if the daily
report's warm median is 200 ms or more. `--prefer-indexes` EXPLAINs with enable_seqscan
off: on a tiny dataset (the test's), where PostgreSQL rightly reads a small table whole,
a Seq Scan then remains only where no index can serve the query.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg

from bench.lib import plans, results, services
from bench.lib.history import History, generate

SECTION = "reports"
TITLE = "Reports on 1,000,000 appointments: timings and query plans"
ORDER = 22
ACCEPTS = ("schema",)
GUARDED_TABLES = ("appointments", "bills", "payments")
DEFAULT_DATABASE = "hms_bench_reports"
DAILY_LIMIT_MS = 200.0
RECEIVABLES_DAYS = 90


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=1_000_000)
    parser.add_argument("--doctors", type=int, default=40)
    parser.add_argument("--per-day", type=int, default=60, help="appointments a doctor a day")
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=10, help="warm calls of each report timed")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data of an earlier run in the database (only migrate it) instead of generating",
    )
    parser.add_argument(
        "--prefer-indexes",
        action="store_true",
        help="EXPLAIN with enable_seqscan off (tiny datasets: a Seq Scan remains only where no index serves)",
    )
    parser.add_argument(
        "--schema",
        choices=("migrations", "models"),
        default="migrations",
        help="build the schema with the migrations (default) or from the models (db.create_all)",
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    return parser.parse_args(argv)


# --- the data ----------------------------------------------------------------------------


def _generated_before(name: str) -> dict | None:
    """The row counts this script left as the database's comment, if it filled it."""
    with psycopg.connect(services.dsn_for("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    if not row or not row[0]:
        return None
    try:
        counts = json.loads(row[0])
    except json.JSONDecodeError:
        return None
    return counts if isinstance(counts, dict) and "appointments" in counts else None


def prepare(args: argparse.Namespace) -> tuple[str, dict, list[str]]:
    """The database filled (or reused): (its URL, row counts, migration drift)."""
    history = History(
        appointments=args.appointments,
        doctors=args.doctors,
        patients=args.patients,
        per_day=args.per_day,
        days_ahead=4,
    )
    earlier = _generated_before(args.database) if args.reuse else None
    if earlier and earlier["appointments"] == args.appointments:
        dsn = services.dsn_for(args.database)
        drift = services.build_schema(dsn, None, args.schema) if args.schema == "migrations" else []
        print(f"reusing {args.database}: {earlier}", flush=True)
        return dsn, {**earlier, "reused": True}, drift
    dsn = services.fresh_database(args.database)
    drift = services.build_schema(dsn, None, args.schema)
    print(f"generating {history} ...", flush=True)
    counts = generate(dsn, history)
    print(f"generated {counts}", flush=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        comment = json.dumps(counts)
        conn.execute(f"COMMENT ON DATABASE {args.database} IS '{comment}'")
    return dsn, counts, drift


def pick_days(dsn: str) -> dict:
    """Today, the busiest past day (the latest of them) and a cashier who took money that day."""
    with psycopg.connect(dsn) as conn:
        today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
        busy_day, booked = conn.execute(
            "SELECT appointment_date, count(*) FROM appointments WHERE appointment_date < %s "
            "GROUP BY appointment_date ORDER BY count(*) DESC, appointment_date DESC LIMIT 1",
            (today,),
        ).fetchone()
        cashier = conn.execute(
            "SELECT min(id) FROM users WHERE role = 'cashier'",
        ).fetchone()[0]
    return {"today": today, "busy_day": busy_day, "booked_that_day": booked, "cashier": cashier}


# --- calling the reports ----------------------------------------------------------------------


def report_cases(days: dict) -> list[tuple[str, str, Callable[[], dict]]]:
    """(label, arguments, call) of each report timed and EXPLAINed."""
    from hms.reports import service

    today, day, cashier = days["today"], days["busy_day"], days["cashier"]
    start = today - timedelta(days=RECEIVABLES_DAYS - 1)  # 90 clinic days, today the last
    return [
        ("daily (the busiest day)", f"daily({day}, {day})", lambda: service.daily(day, day)),
        ("cash-up (that day, every cashier)", f"cash_up({day}, {day})", lambda: service.cash_up(day, day)),
        ("cash-up (that day, one cashier)", f"cash_up({day}, {day}, cashier_id={cashier})",
         lambda: service.cash_up(day, day, cashier_id=cashier)),
        (f"receivables ({RECEIVABLES_DAYS} days, as of today)", f"receivables({today}, {start}, {today})",
         lambda: service.receivables(today, start, today)),
    ]  # fmt: skip


@contextmanager
def app_environment(dsn: str) -> Iterator[None]:
    """A production HMS process's environment against `dsn`, restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(services.app_env(dsn, None))
    os.environ.pop("REDIS_URL", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _shape(answer) -> str:
    """What a report answered, briefly: each key with its length or value."""
    if not isinstance(answer, dict):
        return type(answer).__name__
    parts = []
    for key, value in answer.items():
        if isinstance(value, list | tuple | dict):
            parts.append(f"{key}: {len(value)}")
        else:
            parts.append(f"{key}: {str(value)[:24]}")
    return ", ".join(parts)[:300]


def run_reports(dsn: str, days: dict, runs: int) -> list[dict]:
    """Each report timed (first call, then `runs` warm calls) and its statements captured:
    [{label, arguments, timings, answer, statements, error}]."""
    with app_environment(dsn):
        from hms import create_app

        app = create_app()
        db = app.extensions["sqlalchemy"]
        out = []
        try:
            with app.app_context():
                for label, arguments, call in report_cases(days):
                    entry = {"label": label, "arguments": arguments, "error": None, "statements": []}
                    try:
                        started = time.perf_counter()
                        answer = call()
                        first = (time.perf_counter() - started) * 1000
                        db.session.remove()
                        warm = []
                        for _ in range(runs):
                            started = time.perf_counter()
                            call()
                            warm.append((time.perf_counter() - started) * 1000)
                            db.session.remove()
                        with plans.recording() as captured:
                            call()
                        db.session.remove()
                    except Exception as error:  # noqa: BLE001 - reported as the case's failure
                        db.session.remove()
                        entry["error"] = f"{type(error).__name__}: {error}"[:300]
                        out.append(entry)
                        continue
                    entry["timings"] = {
                        "first_ms": round(first, 2),
                        "median_ms": round(statistics.median(warm), 2) if warm else None,
                        "min_ms": round(min(warm), 2) if warm else None,
                        "max_ms": round(max(warm), 2) if warm else None,
                        "runs": runs,
                    }
                    entry["answer"] = _shape(answer)
                    entry["statements"] = plans.distinct(captured)
                    entry["statement_count"] = len(captured)
                    print(f"{label}: {entry['timings']}", flush=True)
                    out.append(entry)
        finally:
            with app.app_context():
                db.engine.dispose()
    return out


def timing_failures(cases: list[dict]) -> list[str]:
    """The daily report's warm median must stay under DAILY_LIMIT_MS."""
    found = []
    for case in cases:
        median = (case.get("timings") or {}).get("median_ms")
        if case["label"].startswith("daily") and median is not None and median >= DAILY_LIMIT_MS:
            found.append(f"{case['label']}: median {median} ms, not under {DAILY_LIMIT_MS:g} ms")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    dsn, counts, drift = prepare(args)
    env = results.environment(dsn)
    days = pick_days(dsn)
    called = run_reports(dsn, days, args.runs)
    # jit off: a disabled Seq Scan costs 1e10, which would otherwise JIT-compile every plan.
    setup = ("SET LOCAL enable_seqscan = off", "SET LOCAL jit = off") if args.prefer_indexes else ()
    cases, failures = plans.explain_all(dsn, called, GUARDED_TABLES, setup)
    failures += timing_failures(cases)
    notes = list(failures)
    if drift:
        notes.append("The migration lacks what the models declare: " + "; ".join(drift))
    data = {
        "rows": counts,
        "days": {key: str(value) for key, value in days.items()},
        "migration_drift": drift,
        "schema": args.schema,
        "prefer_indexes": args.prefer_indexes,
        "runs": args.runs,
        "cases": cases,
    }
    path = results.write_result(
        SECTION,
        title=TITLE,
        order=ORDER,
        renderer="bench.explain_reports:render",
        data=data,
        env=env,
        ok=not failures,
        notes=notes,
    )
    print(f"wrote {path}")
    if failures:
        print("FAIL:", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    return 0


# --- BENCHMARKS.md ------------------------------------------------------------------------


def _ms(value) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def render(result: dict) -> str:
    data = result["data"]
    rows, days = data["rows"], data["days"]
    generated = f"in {rows.get('seconds', '?')} s, then VACUUM ANALYZE"
    if rows.get("reused"):
        generated += ", by an earlier run of this script (--reuse)"
    lines = [
        f"Generated: {rows['appointments']:,} appointments, {rows['bills']:,} bills, "
        f"{rows['bill_items']:,} bill items, {rows['payments']:,} payments and refunds, "
        f"{rows['patients']:,} patients ({generated}; schema from the {data.get('schema', 'migrations')}). "
        f"The busiest past day: {days['busy_day']} ({int(days['booked_that_day']):,} appointments); "
        f"today: {days['today']}. Each report called through `hms.reports.service` in an app context: the "
        f"first call (new connections, nothing prepared yet), then {data['runs']} warm calls. The daily "
        f"report must answer in under {DAILY_LIMIT_MS:g} ms (warm median).",
        "",
        "| report | call | statements | first call ms | warm median ms | warm min–max ms | answered |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for case in data["cases"]:
        timing = case.get("timings") or {}
        answered = (case.get("answer") or case.get("error") or "").replace("|", "\\|")
        lines.append(
            f"| {case['label']} | `{case['arguments']}` | {case.get('statement_count', '-')} "
            f"| {_ms(timing.get('first_ms'))} | {_ms(timing.get('median_ms'))} "
            f"| {_ms(timing.get('min_ms'))}–{_ms(timing.get('max_ms'))} | {answered} |"
        )
    lines += [
        "",
        "Every statement a report ran (captured with a before_cursor_execute hook) run again as EXPLAIN "
        "(ANALYZE, BUFFERS) with its parameters, and planned generic (as after psycopg prepares it)"
        + (", with enable_seqscan off" if data.get("prefer_indexes") else "")
        + ". Seq Scans on appointments, bills or payments are in bold and fail the run.",
        "",
    ]
    lines += plans.render_cases(data["cases"], GUARDED_TABLES)
    failures = [failure for case in data["cases"] for failure in case["failures"]] + timing_failures(
        data["cases"]
    )
    verdict = (
        f"no Seq Scan on the guarded tables; the daily report under {DAILY_LIMIT_MS:g} ms."
        if not failures
        else "**FAILED**"
    )
    lines += ["", "Verdict: " + verdict]
    lines += [f"- {failure}" for failure in failures]
    if data.get("migration_drift"):
        lines += ["", "Migration drift (the models declare more): " + "; ".join(data["migration_drift"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
