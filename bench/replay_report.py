"""The day replay's figures: nearest-rank percentiles of each step, and its results as
the Markdown tables of BENCHMARKS.md (cheap to import: bench/report.py renders with it).
"""

from __future__ import annotations

from bench.replay_streams import CHANGE_KINDS

STEPS = ("register", "book", "next", "prescribe", "complete", "pay")


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[index]


def summarize(values, errors: int = 0) -> dict:
    ordered = sorted(values)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "count": len(ordered),
        "errors": errors,
        "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else None,
        "p50_ms": ms(percentile(ordered, 50)),
        "p95_ms": ms(percentile(ordered, 95)),
        "p99_ms": ms(percentile(ordered, 99)),
        "max_ms": ms(ordered[-1]) if ordered else None,
    }


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def render_markdown(results: dict, heading: bool = True) -> str:
    """The run's results as Markdown tables (`heading`: with a ### title line)."""
    cfg, stream = results["config"], results["stream"]
    per_doctor = cfg["displays"] / cfg["doctors"]
    lines = []
    if heading:
        lines += [
            f"### Day replay: {cfg['patients']:,} patients, {cfg['doctors']:,} doctors, {cfg['displays']:,} displays",
            "",
            f"{results['generated_at']}, {results['machine']['cpus']} CPUs ({results['machine']['platform']}).",
            "",
        ]
    lines += [
        f"Server: {cfg['server']}. Clients: {cfg['concurrency']} reception, {cfg['cashiers']} cashier, one per "
        f"doctor (at most {cfg['max_waiting']} waiting per doctor), {cfg['displays']:,} display streams "
        f"({per_doctor:g} per doctor); they used {_fmt(results['client_cpu_percent'])} % of one core during "
        "the day, on the same machine as the server"
        + (
            f"; the gunicorn workers used {_fmt(results['server_cpu_seconds'])} s of CPU, "
            f"{_fmt(results['server_cpu_ms_per_request'])} ms per request (stream fan-out included)."
            if results.get("server_cpu_seconds") is not None
            else "."
        ),
        "",
        "| wall time | requests | requests/s | errors | final state |",
        "|---:|---:|---:|---:|---|",
        f"| {_fmt(results['wall_seconds'])} s | {_fmt(results['requests'])} | {_fmt(results['rps'])} "
        f"| {_fmt(results['errors'])} | {'correct' if results['verification']['ok'] else 'WRONG'} |",
        "",
        "| step | requests | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in STEPS:
        row = results["steps"][step]
        lines.append(
            f"| {step} | {_fmt(row['count'])} | {_fmt(row['errors'])} | {_fmt(row['p50_ms'])} "
            f"| {_fmt(row['p95_ms'])} | {_fmt(row['p99_ms'])} | {_fmt(row['max_ms'])} |"
        )
    lines += [
        "",
        "| stream delivery | deliveries | missed | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"book": "bookings", "call": "call-ins (`next`)", "complete": "completions"}
    rows = [("every change, from its request", stream["delivery"])]
    rows += [(f"{labels[kind]}, from the request", stream["by_change"][kind]) for kind in CHANGE_KINDS]
    if "after_answer" in stream:
        rows.append(("every change, from the answer (< 0: display first)", stream["after_answer"]))
    for label, row in rows:
        missed = _fmt(stream["missed"]) if row is stream["delivery"] else ""
        lines.append(
            f"| {label} | {_fmt(row['count'])} | {missed} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} "
            f"| {_fmt(row['p99_ms'])} | {_fmt(row['max_ms'])} |"
        )
    lines += [
        "",
        f"{stream['connected']:,} of {stream['displays']:,} displays connected "
        f"(first snapshot p50 {_fmt(stream['first_snapshot']['p50_ms'])} ms), "
        f"{stream['reconnects']:,} reconnects, {stream['events']:,} snapshots received.",
    ]
    if not results["verification"]["ok"]:
        lines += ["", "Problems: " + "; ".join(results["verification"]["problems"][:10])]
    if results["error_samples"]:
        first_of_kind: dict[str, str] = {}
        for sample in results["error_samples"]:
            first_of_kind.setdefault(sample.split(":", 1)[0], sample)
        counts = ", ".join(f"{kind} {count:,}" for kind, count in results["errors_by_step"].items())
        lines += ["", f"Errors: {counts}. The first of each kind: " + "; ".join(first_of_kind.values())]
    return "\n".join(lines) + "\n"


def title_of(data: dict) -> str:
    cfg = data["config"]
    return (
        f"A clinic day through the API: {cfg['patients']:,} patients, {cfg['doctors']:,} doctors, "
        f"{cfg['displays']:,} displays"
    )
