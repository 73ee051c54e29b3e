"""EXPLAIN of the SQL the app really runs: the statements a call emits, captured with
SQLAlchemy's before_cursor_execute hook (`recording`), each run again as EXPLAIN
(ANALYZE, BUFFERS, FORMAT JSON) inside a rolled-back transaction and planned generic
(PREPARE + plan_cache_mode = force_generic_plan: psycopg prepares a statement on a
connection after 5 executions, and PostgreSQL then switches to the generic plan when it
does not look costlier), summarized, and checked for Seq Scans on the tables a benchmark
guards. Used by bench/explain_queue.py and bench/explain_reports.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg
from psycopg import sql

# PostgreSQL adds this much (cpu_operator_cost * 1000 per relation) to a custom plan's
# cost when it compares it with the generic plan; a few units, so "not costlier" it is.
GENERIC_SLACK = 5.0


@contextmanager
def recording() -> Iterator[list[tuple[str, object]]]:
    """Every statement (and its parameters) any SQLAlchemy engine runs inside the block."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    captured: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            captured.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield captured
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def distinct(captured: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The first run of each distinct statement text, in order."""
    seen, statements = set(), []
    for statement, parameters in captured:
        if statement not in seen:
            seen.add(statement)
            statements.append((statement, parameters))
    return statements


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


def summarize_plan(explained: list, guarded: tuple[str, ...]) -> dict:
    top = explained[0]
    plan = top["Plan"]
    nodes = [_describe(node) for node in _walk(plan) if "Relation Name" in node or "Index Name" in node]
    seq = [node["Relation Name"] for node in _walk(plan) if node["Node Type"] == "Seq Scan"]
    return {
        "scans": nodes,
        "seq_scans": seq,
        "guarded_seq_scans": [table for table in seq if table in guarded],
        "cost": plan.get("Total Cost"),
        "rows": plan.get("Actual Rows"),
        "execution_ms": round(top["Execution Time"], 3) if "Execution Time" in top else None,
        "planning_ms": round(top["Planning Time"], 3) if "Planning Time" in top else None,
        "shared_hit": plan.get("Shared Hit Blocks"),
        "shared_read": plan.get("Shared Read Blocks"),
    }


def positional(statement: str, parameters) -> tuple[str, list]:
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


def explain(
    conn: psycopg.Connection,
    statement: str,
    parameters,
    number: int,
    guarded: tuple[str, ...],
    setup: tuple[str, ...] = (),
) -> dict:
    """The custom plan and the generic plan of one captured statement. `conn` is in
    autocommit without automatic prepared statements; `setup` runs (SET LOCAL ...) in the
    transaction of each EXPLAIN."""
    out: dict = {}
    plan, note = _explain_json(conn, sql.SQL(statement), parameters or None, setup=setup)
    out["custom"] = summarize_plan(plan, guarded) | ({"not_analyzed": note} if note else {})
    text, values = positional(statement, parameters)
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
            setup=(*setup, "SET LOCAL plan_cache_mode = force_generic_plan"),
        )
        out["generic"] = summarize_plan(plan, guarded) | ({"not_analyzed": note} if note else {})
    except psycopg.Error as error:
        out["generic"] = {"error": str(error).splitlines()[0]}
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    return out


def explain_all(
    dsn: str, captured: list[dict], guarded: tuple[str, ...], setup: tuple[str, ...] = ()
) -> tuple[list[dict], list[str]]:
    """EXPLAIN every statement of every captured case ({label, statements, error});
    (cases with their plans and failures, every failure)."""
    cases, failures = [], []
    # autocommit: each EXPLAIN runs in its own explicit, rolled-back transaction; no
    # automatic prepared statements on this connection (PREPARE is done by hand).
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        numbers = iter(range(1_000_000))
        for case in captured:
            statements = []
            for statement, parameters in case["statements"]:
                plans = explain(conn, statement, parameters, next(numbers), guarded, setup)
                params = parameters.values() if isinstance(parameters, dict) else parameters or ()
                statements.append(
                    {
                        "sql": brief_sql(statement, width=300),
                        "params": [_short(value) for value in params],
                        **plans,
                    }
                )
            entry = {**case, "statements": statements}
            entry["failures"] = failures_of(entry)
            failures += entry["failures"]
            cases.append(entry)
            total = sum((s["custom"].get("execution_ms") or 0) for s in statements)
            print(f"{case['label']}: {len(statements)} statements, {total:.2f} ms", flush=True)
    return cases, failures


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


# --- Markdown -----------------------------------------------------------------------------


def plan_cell(plan: dict | None) -> str:
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


def render_cases(cases: list[dict], guarded: tuple[str, ...]) -> list[str]:
    """The two tables: per call (statements, time, indexes, Seq Scans), then per statement."""
    lines = [
        "| service call | statements | exec ms (sum) | indexes used | Seq Scans |",
        "|---|---:|---:|---|---|",
    ]
    for case in cases:
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
        marked = [f"**{table}**" if table in guarded else table for table in seq]
        executed = sum(item["custom"].get("execution_ms") or 0 for item in case["statements"])
        lines.append(
            f"| {case['label']} | {len(case['statements'])} | {executed:.2f} | {', '.join(indexes) or '-'} "
            f"| {', '.join(marked) or 'none'} |"
        )
    lines += [
        "",
        "Every statement (custom plan = EXPLAIN ANALYZE with the captured parameters; generic = the plan of "
        "the prepared statement; *same* when it reads the same way):",
        "",
        "| service call | statement | custom plan: scans | exec ms | generic plan: scans |",
        "|---|---|---|---:|---|",
    ]
    for case in cases:
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
                f"| {case['label']} | `{statement}` | {plan_cell(custom)} | {exec_cell} "
                f"| {'same' if same else plan_cell(generic)} |"
            )
    return lines
