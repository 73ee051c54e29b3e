"""Live streams at 10,000, before and after a revision: `bench.stream_capacity` run on an
older tree and on this one, one after the other, with the same arguments.

    .venv/bin/python -m bench.stream_ab                        # base: DEFAULT_BASE, one run each
    .venv/bin/python -m bench.stream_ab --base ded6069 --runs 2 --streams 10000 --duration 20

Each leg is `bench.stream_capacity --systems hms --streams N --rate R --direct-rate R
--idle I --duration D` (fresh database, a private Redis, 2 gevent workers, 2 reader
processes). The base leg runs in a temporary git worktree of the base revision with ITS
OWN bench code and app (`python -m bench.stream_capacity` from that folder), since the
benchmark's direct changes use whatever the app of its day offered; the current leg runs
from this tree. With --runs > 1 the legs alternate, base then current, so a noisy moment
of the machine does not land on one side only.

Each leg writes its raw result to bench/out/stream_ab/ (git-ignored; the path is recorded
in the result); this script keeps the figures compared here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.lib import results, services
from bench.stream_report import DIRECT_METHODS

SECTION = "stream_ab"
TITLE = "Live streams at 10,000, before and after the refactor (base revision against this tree)"
ORDER = 62
ACCEPTS = ("duration", "workers", "schema")
ROOT = Path(__file__).resolve().parent.parent
# main when the unit-of-work / queue-package / bench/lib refactor started from it
DEFAULT_BASE = "ded6069"
AIMS = {"streams": 10_000, "kb_per_stream": 32, "p99_ms": 500, "rate": 100}
LABELS = {"base": "before", "current": "after"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"git revision to compare with ({DEFAULT_BASE})")
    parser.add_argument("--runs", type=int, default=1, help="runs of each leg, alternating (default 1)")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="API changes/s (default 100)")
    parser.add_argument("--direct-rate", type=float, default=100.0, help="direct changes/s (default 100)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds after the opens (default 5)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each change phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--schema", choices=("migrations", "models"), default="migrations")
    parser.add_argument(
        "--database", default="hms_streams_ab", help="PostgreSQL database both legs recreate (hms_streams_ab)"
    )
    parser.add_argument(
        "--result-file",
        default=None,
        help="write the result here instead of bench/results/stream_ab.json (a trial run)",
    )
    return parser.parse_args(argv)


def capacity_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The one stream_capacity command line both legs run (from their own tree)."""
    return [
        sys.executable, "-m", "bench.stream_capacity", "--systems", "hms", "--streams", str(args.streams),
        "--rate", f"{args.rate:g}", "--direct-rate", f"{args.direct_rate:g}", "--idle", f"{args.idle:g}",
        "--duration", f"{args.duration:g}", "--workers", str(args.workers), "--schema", args.schema,
        "--database", args.database, "--result-file", str(out),
    ]  # fmt: skip


def _leg(args: argparse.Namespace, number: int, label: str, revision: str, tree: Path) -> dict:
    """One stream_capacity run from `tree`; the row kept (figures, exit status, raw file)."""
    out_dir = results.OUT_DIR / "stream_ab"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"run{number}-{label}-{revision.split()[0]}.json"
    out.unlink(missing_ok=True)
    # The leg imports `bench` and `hms` from its own folder (python -m puts the cwd first).
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    print(f"== run {number}, {label} ({revision}) ==", flush=True)
    finished = subprocess.run(capacity_command(args, out), cwd=tree, env=env, check=False)
    row = {"run": number, "leg": label, "revision": revision, "exit": finished.returncode,
           "result_file": str(out.relative_to(ROOT))}  # fmt: skip
    if out.exists():
        row.update(summary(json.loads(out.read_text()), args.rate, args.direct_rate))
    return row


def _phase(scenario: dict, via: str, rate: float) -> dict | None:
    phases = [p for p in scenario.get("changes") or [] if p.get("via", "api") == via]
    exact = [p for p in phases if p["rate"] == rate]
    return (exact or phases or [None])[0]


def _phase_figures(phase: dict | None) -> dict | None:
    if phase is None:
        return None
    delivery = phase["delivery"]
    cpu = round(1000 * phase["worker_cpu_seconds"] / phase["ok"], 1) if phase["ok"] else None
    return {
        "rate": phase["rate"],
        "ok": phase["ok"],
        "sent": phase["sent"],
        "answer_ms": phase["answer_ms"],
        "delivery_ms": {key: delivery["from_start_ms"][key] for key in ("p50", "p99")},
        "undelivered": delivery["undelivered"],
        "pairs": delivery["pairs"],
        "worker_cpu_ms_per_change": cpu,
    }


def summary(result: dict, rate: float, direct_rate: float) -> dict:
    """The figures compared here, from one stream_capacity result."""
    data = result["data"]
    scenario = next(s for s in data["scenarios"] if s["system"] == "hms")
    method = data["settings"].get("direct_changes")
    if "error" in scenario:
        return {"error": scenario["error"], "direct_method": method}
    return {
        "streams": scenario["streams"],
        "held": scenario["held_to_end"],
        "rss_per_stream_kb": scenario["rss_per_stream_kb"],
        "api": _phase_figures(_phase(scenario, "api", rate)),
        "direct": _phase_figures(_phase(scenario, "direct", direct_rate)),
        "direct_method": method,
        "load_average_1m": [
            result["environment"].get(f"load_average_1m_at_{end}") for end in ("start", "end")
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    services.ensure_services()
    env = results.environment(services.dsn_for("postgres"))
    runs: list[dict] = []
    with results.worktree(args.base) as (base, tree):
        env["base"] = base
        for number in range(1, args.runs + 1):
            runs.append(_leg(args, number, "base", base, tree))
            runs.append(_leg(args, number, "current", env["git"], ROOT))
    settings = {
        key: getattr(args, key) for key in ("streams", "rate", "direct_rate", "idle", "duration", "workers")
    }
    data = {"base": env["base"], "current": env["git"], "settings": settings, "aims": AIMS, "runs": runs}
    ok = all(row["exit"] == 0 and "held" in row for row in runs)
    path = _write(args, data, env, ok)
    print(f"\nwrote {path}", flush=True)
    print(render(json.loads(path.read_text())), flush=True)
    return 0 if ok else 1


def _write(args: argparse.Namespace, data: dict, env: dict, ok: bool) -> Path:
    """bench/results/stream_ab.json, or --result-file with the same content."""
    fields = {"title": TITLE, "order": ORDER, "renderer": "bench.stream_ab:render", "data": data, "ok": ok}
    if not args.result_file:
        return results.write_result(SECTION, env=env, **fields)
    path = Path(args.result_file)
    env = {**env, "load_average_1m_at_end": round(os.getloadavg()[0], 2)}
    result = {
        "section": SECTION,
        **fields,
        "command": results.command_line(),
        "notes": [],
        "environment": env,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


# --- BENCHMARKS.md ----------------------------------------------------------------------------


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _p50_p99(phase: dict | None) -> str:
    if not phase:
        return "—"
    return f"{_num(phase['delivery_ms']['p50'], 1)} / {_num(phase['delivery_ms']['p99'], 1)}"


def aim_checks(row: dict, aims: dict) -> list[tuple[str, bool]]:
    """(aim, met) for one leg: memory per stream, and p99 through the API (at the run's rate,
    which the notes flag when it is not the aim's)."""
    api = row.get("api")
    p99, rate = (api["delivery_ms"]["p99"], api["rate"]) if api else (None, aims["rate"])
    return [
        (
            f"≤ {aims['kb_per_stream']} KB/stream",
            (row.get("rss_per_stream_kb") or 1e9) <= aims["kb_per_stream"],
        ),
        (f"p99 < {aims['p99_ms']} ms at {rate:g}/s", p99 is not None and p99 < aims["p99_ms"]),
    ]


def _rev(revision: str) -> str:
    return revision.replace(" (with uncommitted changes)", "+")


def _row(row: dict, aims: dict) -> str:
    name = f"{row['run']} | {_rev(row['revision'])} ({LABELS[row['leg']]})"
    if "held" not in row:
        reason = row.get("error") or f"exit {row['exit']}"
        return f"| {name} | failed: {reason} | | | | | | | |"
    api, direct = row.get("api"), row.get("direct")
    cpu = " / ".join(_num(phase and phase["worker_cpu_ms_per_change"], 1) for phase in (api, direct))
    undelivered = " / ".join(
        f"{_num(phase['undelivered'])} of {_num(phase['pairs'])}" if phase else "—" for phase in (api, direct)
    )
    verdict = ", ".join(f"{'✔' if met else '✘'} {name}" for name, met in aim_checks(row, aims))
    return (
        f"| {name} | {_num(row['held'])} of {_num(row['streams'])} | {_num(row['rss_per_stream_kb'], 1)} "
        f"| {_p50_p99(api)} | {_p50_p99(direct)} | {cpu} | {undelivered} | {verdict} |"
    )


def _notes(data: dict) -> list[str]:
    settings, aims = data["settings"], data["aims"]
    methods = {row["leg"]: row.get("direct_method") for row in data["runs"] if "direct_method" in row}
    lines = [
        "",
        "The fan-out column is not the same work on both sides: the two trees' drivers make a direct change "
        "differently (bench/stream_report.py, DIRECT_METHODS).",
    ]
    for leg in ("base", "current"):
        if leg in methods:
            lines.append(
                f"- {_rev(data[leg])} ({LABELS[leg]}): {DIRECT_METHODS.get(methods[leg], methods[leg])}."
            )
    if settings["streams"] != aims["streams"] or settings["rate"] != aims["rate"]:
        lines += ["", f"This run used {settings['streams']:,} streams at {settings['rate']:g} changes/s; the aims "
                  f"are set at {aims['streams']:,} streams and {aims['rate']} changes/s, so the checks above are "
                  "indicative only."]  # fmt: skip
    lines += ["", "Raw results (bench/out/, git-ignored): "
              + ", ".join(f"`{row['result_file']}`" for row in data["runs"]) + "."]  # fmt: skip
    return lines


def render(result: dict) -> str:
    data = result["data"]
    settings, aims = data["settings"], data["aims"]
    dirty = "; + = with uncommitted changes" if _rev(data["current"]) != data["current"] else ""
    lines = [
        f"`bench.stream_capacity --systems hms --streams {settings['streams']} --rate {settings['rate']:g} "
        f"--direct-rate {settings['direct_rate']:g} --idle {settings['idle']:g} --duration {settings['duration']:g}` "
        f"({settings['workers']} gevent workers) run on the base revision {data['base']} (a git worktree, with "
        f"its own bench code and app) and on this tree ({_rev(data['current'])}{dirty}), "
        "one after the other, alternating when there are several runs. "
        "Delivery = event arrival − start of the change request; through the API = `POST /api/queue/<id>/next` "
        f"at {settings['rate']:g}/s; fan-out only = direct changes (no HTTP) at {settings['direct_rate']:g}/s. "
        f"Aims: at most {aims['kb_per_stream']} KB per stream, p99 under {aims['p99_ms']} ms at "
        f"{aims['rate']} changes/s through the API.",
        "",
        "| run | revision | held | RSS per stream (KB) | delivery p50 / p99 ms (API) "
        "| fan-out only p50 / p99 ms (direct) | worker CPU per change ms (API / direct) "
        "| undelivered (API / direct) | aims |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        *(_row(row, aims) for row in data["runs"]),
    ]
    return "\n".join(lines + _notes(data)) + "\n"


if __name__ == "__main__":
    sys.exit(main())
