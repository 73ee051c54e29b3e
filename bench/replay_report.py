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
    lines += render_server_metrics(results.get("server_metrics"))
    if not results["verification"]["ok"]:
        lines += ["", "Problems: " + "; ".join(results["verification"]["problems"][:10])]
    if results["error_samples"]:
        first_of_kind: dict[str, str] = {}
        for sample in results["error_samples"]:
            first_of_kind.setdefault(sample.split(":", 1)[0], sample)
        counts = ", ".join(f"{kind} {count:,}" for kind, count in results["errors_by_step"].items())
        lines += ["", f"Errors: {counts}. The first of each kind: " + "; ".join(first_of_kind.values())]
    return "\n".join(lines) + "\n"


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: interpolated within the bucket holding rank q."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            if count == previous_count:
                return le
            return previous_le + (le - previous_le) * (rank - previous_count) / (count - previous_count)
        previous_le, previous_count = le, count
    return previous_le


def server_metrics(text: str, top: int = 12) -> dict:
    """The server's own counts from a /metrics scrape (its whole run: set-up and checks too):
    requests and p95 by route, 5xx answers, pool waits and timeouts, slow queries."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[str, float] = {}
    errors = 0.0
    buckets: dict[str, dict[float, float]] = {}
    found: dict[str, float] = {}
    slow: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "hms_http_requests_total":
                requests[labels["route"]] = requests.get(labels["route"], 0) + value
                if labels["status"].startswith("5"):
                    errors += value
            elif name == "hms_http_request_duration_seconds_bucket":
                by_le = buckets.setdefault(labels["route"], {})
                le = float(labels["le"])
                by_le[le] = by_le.get(le, 0) + value
            elif name == "hms_db_slow_queries_total":
                slow[labels["kind"]] = slow.get(labels["kind"], 0) + value
            elif name in (
                "hms_db_pool_wait_seconds_count",
                "hms_db_pool_wait_seconds_sum",
                "hms_db_pool_timeouts_total",
            ):
                found[name] = found.get(name, 0) + value
    routes = sorted(requests, key=lambda route: -requests[route])[:top]
    p95 = {route: histogram_quantile(0.95, list(buckets.get(route, {}).items())) for route in routes}
    return {
        "requests": int(sum(requests.values())),
        "server_errors": int(errors),
        "routes": [
            {
                "route": route,
                "requests": int(requests[route]),
                "p95_ms": round(p95[route] * 1000, 1) if p95[route] else None,
            }
            for route in routes
        ],
        "pool_waits": int(found.get("hms_db_pool_wait_seconds_count", 0)),
        "pool_wait_seconds": round(found.get("hms_db_pool_wait_seconds_sum", 0), 2),
        "pool_timeouts": int(found.get("hms_db_pool_timeouts_total", 0)),
        "slow_queries": {kind: int(count) for kind, count in sorted(slow.items())},
    }


def render_server_metrics(server: dict | None) -> list[str]:
    if not server:
        return []
    if "unavailable" in server:
        return ["", f"Server metrics: not scraped ({server['unavailable']})."]
    slow = ", ".join(f"{kind} {count:,}" for kind, count in server["slow_queries"].items()) or "none"
    lines = [
        "",
        f"The server's /metrics at the end (set-up and checks included): {server['requests']:,} requests, "
        f"{server['server_errors']:,} answered 5xx; {server['pool_waits']:,} waits for a database connection "
        f"({_fmt(server['pool_wait_seconds'], 2)} s in all), {server['pool_timeouts']:,} pool timeouts; "
        f"slow queries: {slow}.",
    ]
    if server["pool_timeouts"]:
        lines += ["", f"**This run saw {server['pool_timeouts']:,} database pool timeouts (503s).**"]
    lines += ["", "| route (server side) | requests | p95 ms (histogram) |", "|---|---:|---:|"]
    lines += [
        f"| `{row['route']}` | {_fmt(row['requests'])} | {_fmt(row['p95_ms'])} |" for row in server["routes"]
    ]
    return lines


def title_of(data: dict) -> str:
    cfg = data["config"]
    return (
        f"A clinic day through the API: {cfg['patients']:,} patients, {cfg['doctors']:,} doctors, "
        f"{cfg['displays']:,} displays"
    )
