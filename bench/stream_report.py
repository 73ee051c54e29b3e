"""bench.stream_capacity's results as the BENCHMARKS.md section: the method, the summary
per system and size, HMS against flask-sse, the change phases, and the aims checked
(cheap to import: bench/report.py renders stored results with it).
"""

from __future__ import annotations

SYSTEMS = ("hms", "flask-sse")
# How the driver made a direct change, by what the run recorded (older runs recorded nothing).
DIRECT_METHODS = {
    None: "the driver commits a version bump itself and calls the app's `invalidate_queue` and "
    "`notify_queue_changed`, as a service does after its commit, which builds the snapshot's events once in "
    "the publisher, here the driver, and sends them with the message: the fan-out without the cost of an API "
    "write",
    "hms.queue.touch_queues_of_doctor": "the driver calls `hms.queue.touch_queues_of_doctor` in a unit of "
    "work, the public function a rename uses: a version bump and, while streams watch, the snapshot read "
    "before the commit; after it the cache tag replaced and the broker told with the events: the fan-out "
    "without the cost of an API write",
}


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "—"
    return f"{a / b:.2f}×"


def _p50_p99(delivery: dict) -> str:
    return f"{_fmt(delivery['from_start_ms']['p50'], 1)} / {_fmt(delivery['from_start_ms']['p99'], 1)}"


def main_phase(scenario: dict, rate: float, via: str = "api") -> dict | None:
    """The change phase at the aim's rate (through the API, or direct; the baseline has only
    its publish route), else the fastest one run that way."""
    phases = [
        p for p in scenario.get("changes") or [] if p.get("via", "api") == via or scenario["system"] != "hms"
    ]
    exact = [phase for phase in phases if phase["rate"] == rate]
    return exact[0] if exact else (max(phases, key=lambda phase: phase["rate"]) if phases else None)


def _method(settings: dict) -> str:
    rates = ", ".join(f"{rate:g}" for rate in settings["rates"]) or "—"
    direct_rates = ", ".join(f"{rate:g}" for rate in settings.get("direct_rates", [])) or "—"
    return (
        f"{settings['workers']} gevent workers (gunicorn.conf.py), {settings['per_doctor']} streams per doctor, "
        "a private redis-server with its default settings (maxclients 10000) per run (the benchmark keeps 2 "
        "connections of its own there, so 9,998 remain for the system measured), "
        f"{settings['reader_processes']} reader processes (bench/sse_client.py: raw gevent sockets). After the "
        f"opens, {settings['idle']:g} s idle (HMS heartbeat every {settings['heartbeat_seconds']} s), then "
        f"{settings['duration']:g} s of queue changes per phase from a separate open-loop driver, round-robin "
        "over the doctors, each change reaching that doctor's 20 streams: HMS through the API at "
        f"{rates}/s (`POST /api/queue/<id>/next`); HMS direct at {direct_rates}/s "
        f"({DIRECT_METHODS[settings.get('direct_changes')]}); flask-sse through its publish route "
        "(`sse.publish` of a message the size of HMS's snapshots) at each of those rates. RSS per stream = growth of "
        "the workers' summed VmRSS from before the first stream to after all are open, over the streams held. "
        "Delivery = event arrival − start of the change request (includes the request's own work; the commit "
        "lies between its start and its answer)."
    )


def _summary_row(scenario: dict, aims: dict) -> str:
    if "error" in scenario:
        return f"| {scenario['system']} | {_fmt(scenario['streams'])} | run failed: {scenario['error']} | | | | | | | |"
    phase = main_phase(scenario, aims["rate"])
    delivery = phase["delivery"] if phase else None
    label = "" if not phase or phase["rate"] == aims["rate"] else f" (at {phase['rate']:g}/s)"
    direct = main_phase(scenario, aims["rate"], "direct")
    if direct is None or scenario["system"] != "hms":
        fan_out = "same as through the API" if scenario["system"] != "hms" else "—"
    else:
        fan_out = _p50_p99(direct["delivery"]) + (
            "" if direct["rate"] == aims["rate"] else f" (at {direct['rate']:g}/s)"
        )
    heartbeat = (
        f"{_fmt(scenario['streams_with_ping_in_idle_window'])} streams"
        if scenario["heartbeat_seconds"]
        else "none sent"
    )
    if delivery and not phase["ok"]:
        delivered = f"none: {_fmt(phase['ok'])} of {_fmt(phase['sent'])} changes went out | — | "
    elif delivery:
        delivered = (
            f"{_p50_p99(delivery)}{label} | {_fmt(delivery['undelivered'])} of {_fmt(delivery['pairs'])} | "
        )
    else:
        delivered = "— | — | "
    return (
        f"| {scenario['system']} | {_fmt(scenario['streams'])} | {_fmt(scenario['held_to_end'])} | "
        f"{_fmt(scenario['rss_per_stream_kb'], 1)} | {_fmt(scenario['redis_clients'])} | "
        + delivered
        + f"{fan_out} | {heartbeat} | {scenario['worker_cpu_idle_percent_of_one_core']}% of a core |"
    )


def _summary(data: dict, aims: dict) -> list[str]:
    return [
        f"| system | streams | held | RSS per stream (KB) | Redis clients | delivery p50 / p99 ms at "
        f"{aims['rate']} changes/s through the API | undelivered | fan-out only (direct changes) p50 / p99 ms | "
        "heartbeats in idle window | worker CPU idle |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_summary_row(scenario, aims) for scenario in data["scenarios"]),
    ]


def _ratios(scenarios: list[dict], aims: dict) -> list[str]:
    """HMS ÷ flask-sse per size measured for both."""
    by_key = {(s["system"], s["streams"]): s for s in scenarios}
    rows = []
    for (system, streams), scenario in sorted(by_key.items(), key=lambda item: item[0][1]):
        base = by_key.get(("flask-sse", streams))
        if system != "hms" or base is None:
            continue
        mine, theirs = main_phase(scenario, aims["rate"]), main_phase(base, aims["rate"])
        direct = main_phase(scenario, aims["rate"], "direct")
        delivery = _delivery_ratio(mine, theirs) if mine and theirs else "—"
        fan_out = (
            _delivery_ratio(direct, theirs) if direct and theirs and direct["rate"] == theirs["rate"] else "—"
        )
        rows.append(
            f"| {_fmt(streams)} | {_ratio(scenario['held_to_end'], base['held_to_end'])} | "
            f"{_ratio(scenario['rss_per_stream_kb'], base['rss_per_stream_kb'])} | "
            f"{_ratio(scenario['redis_clients'], base['redis_clients'])} | {delivery} | {fan_out} |"
        )
    if not rows:
        return []
    return [
        "",
        "HMS ÷ flask-sse, measured in the same run:",
        "",
        "| streams | held | RSS per stream | Redis clients | delivery p50 / p99 (API) | "
        "delivery p50 / p99 (HMS direct changes) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def _delivery_ratio(mine: dict, theirs: dict) -> str:
    ours, base = mine["delivery"]["from_start_ms"], theirs["delivery"]["from_start_ms"]
    return f"{_ratio(ours['p50'], base['p50'])} / {_ratio(ours['p99'], base['p99'])}"


def _marginal_rss(scenarios: list[dict]) -> list[str]:
    marginal = []
    for system in SYSTEMS:
        sized = sorted((s for s in scenarios if s["system"] == system), key=lambda s: s["held_after_open"])
        if len(sized) >= 2 and sized[-1]["held_after_open"] > sized[0]["held_after_open"]:
            small, big = sized[0], sized[-1]
            slope = (big["rss_growth_kb"] - small["rss_growth_kb"]) / (
                big["held_after_open"] - small["held_after_open"]
            )
            marginal.append(f"{system} {slope:.1f} KB per extra stream ({_fmt(small['held_after_open'])} → "
                            f"{_fmt(big['held_after_open'])} held)")  # fmt: skip
    if not marginal:
        return []
    return ["", "Marginal RSS between the two sizes (fixed costs such as pooled connections cancel out): "
            + "; ".join(marginal) + "."]  # fmt: skip


def _phases(scenarios: list[dict]) -> list[str]:
    lines = [
        "",
        "Change phases:",
        "",
        "| system | streams | changes via | changes/s offered → started | ok / sent | answer p50 / p99 ms | "
        "delivery from start p50 / p90 / p99 / max ms | from answer p50 / p99 ms | undelivered | event bytes | "
        "worker CPU per change (ms) | workers' run-queue wait (s of the phase's s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        for phase in scenario.get("changes", []):
            via = {"api": "API" if scenario["system"] == "hms" else "publish route", "direct": "direct"}[
                phase.get("via", "api")
            ]
            start, answer = phase["delivery"]["from_start_ms"], phase["delivery"]["from_answer_ms"]
            lines.append(
                f"| {scenario['system']} | {_fmt(scenario['streams'])} | {via} | {phase['rate']:g} → "
                f"{_fmt(phase['started_per_second'], 1)} | {_fmt(phase['ok'])} / {_fmt(phase['sent'])} | "
                f"{_fmt(phase['answer_ms']['p50'], 1)} / {_fmt(phase['answer_ms']['p99'], 1)} | "
                f"{_fmt(start['p50'], 1)} / {_fmt(start['p90'], 1)} / {_fmt(start['p99'], 1)} / {_fmt(start['max'], 1)} | "
                f"{_fmt(answer['p50'], 1)} / {_fmt(answer['p99'], 1)} | "
                f"{_fmt(phase['delivery']['undelivered'])} of {_fmt(phase['delivery']['pairs'])} | "
                f"{_fmt(phase['mean_event_bytes'])} | "
                f"{_fmt(1000 * phase['worker_cpu_seconds'] / phase['ok'], 1) if phase['ok'] else '—'} | "
                f"{_fmt(phase.get('worker_runqueue_wait_seconds'), 1)} of {_fmt(phase.get('phase_seconds'), 1)} |"
            )
    return lines


def _aim_checks(scenario: dict, aims: dict) -> list[tuple[str, bool]]:
    """(aim, met) for one HMS scenario."""
    phase = main_phase(scenario, aims["rate"])
    p99 = phase["delivery"]["from_start_ms"]["p99"] if phase and phase["rate"] == aims["rate"] else None
    checks = [("all held", scenario["held_to_end"] == scenario["streams"])]
    if scenario["streams"] == aims["streams"]:  # the memory aim is set at that size only
        checks.append(
            (
                f"≤ {aims['kb_per_stream']} KB/stream",
                (scenario["rss_per_stream_kb"] or 1e9) <= aims["kb_per_stream"],
            )
        )
    checks += [
        (
            f"p99 < {aims['p99_ms']} ms at {aims['rate']}/s through the API",
            p99 is not None and p99 < aims["p99_ms"],
        ),
        ("nothing undelivered", bool(phase) and phase["delivery"]["undelivered"] == 0),
    ]
    direct = main_phase(scenario, aims["rate"], "direct")
    if direct is not None and direct["rate"] == aims["rate"]:
        p99_direct = direct["delivery"]["from_start_ms"]["p99"]
        checks.append(
            (f"fan-out p99 < {aims['p99_ms']} ms at {aims['rate']}/s (direct changes)",
             p99_direct is not None and p99_direct < aims["p99_ms"])
        )  # fmt: skip
    return checks


def _aims(scenarios: list[dict], aims: dict) -> list[str]:
    lines = ["", f"Aims: {aims['streams']:,} streams, at most {aims['kb_per_stream']} KB each, p99 under "
             f"{aims['p99_ms']} ms at {aims['rate']} changes/s."]  # fmt: skip
    for scenario in scenarios:
        if scenario["system"] == "hms":
            verdict = ", ".join(f"{name} {'✔' if met else '✘'}" for name, met in _aim_checks(scenario, aims))
            lines.append(f"- HMS at {_fmt(scenario['streams'])} streams: {verdict}.")
    return lines


def _findings(scenario: dict) -> str:
    """Failures, errors, Redis, memory and the server log of one scenario, as one line."""
    extra = []
    if scenario["failures"]:
        extra.append("stream failures: " + "; ".join(f"{n}× {r}" for r, n in scenario["failures"].items()))
    for phase in scenario.get("changes", []):
        if phase["errors"]:
            extra.append(f"change errors at {phase['rate']:g}/s ({phase.get('via', 'api')}): "
                         + "; ".join(f"{n}× {r}" for r, n in phase["errors"].items()))  # fmt: skip
    redis_after = scenario["redis_after_open"]
    extra.append(
        f"Redis after the opens: {redis_after['clients']} clients ({redis_after['pubsub_clients']} pub/sub) of "
        f"maxclients {redis_after['maxclients']}, {redis_after['rejected_connections']} rejected, used memory "
        f"{_fmt(scenario['redis_before']['used_memory_kb'])} → {_fmt(redis_after['used_memory_kb'])} KB"
    )
    extra.append(
        f"workers' RSS {_fmt(scenario['rss_before_kb'])} → {_fmt(scenario['rss_after_open_kb'])} KB "
        f"(after idle {_fmt(scenario['rss_after_idle_kb'])}); opens took {_fmt(scenario['open_seconds'], 1)} s; "
        f"longest silence of a stream p50 {scenario['longest_silence_s']['p50']} s, "
        f"max {scenario['longest_silence_s']['max']} s"
    )
    if scenario["server_log"].get("tracebacks"):
        top = list(scenario["server_log"].get("error_lines", {}).items())[:3]
        extra.append(
            f"server log: {scenario['server_log']['tracebacks']} tracebacks; most frequent error lines: "
            + ", ".join(f"{count}× `{line}`" for line, count in top)
        )
    return f"- {scenario['system']} at {_fmt(scenario['streams'])}: " + "; ".join(extra) + "."


def render(result: dict) -> str:
    """The BENCHMARKS.md section from bench/results/stream_capacity.json."""
    data = result["data"]
    aims = data["aims"]
    scenarios = [s for s in data["scenarios"] if "error" not in s]
    # bench/report.py adds the heading, the command, date, machine and software versions.
    lines = [_method(data["settings"]), "", *_summary(data, aims)]
    lines += _ratios(scenarios, aims) + _marginal_rss(scenarios) + _phases(scenarios) + _aims(scenarios, aims)
    lines += [_findings(scenario) for scenario in scenarios]
    lines += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"
