"""BENCHMARKS.md, rebuilt from bench/results/*.json: one section per results file.

Each results file (written by bench.lib.results.write_result) names its renderer,
"module:function", which turns the file's dict into the section's Markdown; this
module adds the heading and the facts every figure needs (command, date, machine,
software versions, load average), and a last section with the plots that span sections
(bench/plots.py). A section whose script was not re-run keeps its
last results, with their own date and command. Sections appear by their `order`.

    .venv/bin/python -m bench.report      # rewrite BENCHMARKS.md from the stored results
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"

HEADER = """\
# Benchmarks

Performance is measured, not asserted: every figure below comes from a script under
`bench/`, with the command that produced it, the date, the machine and the software
versions. Ratios compare an endpoint with the hello-world baseline (`bench/hello_app.py`,
same gunicorn settings) measured in the same run, which takes out most of the machine's
speed and noise.

Reproduce everything with one command (PostgreSQL and Redis are started if they are down;
the benchmarks use their own databases `hms_bench`, `hms_bench_explain` and
`hms_bench_reports`, and Redis DB 7):

    make bench                                          # every section, default durations
    make bench BENCH_ARGS="--only api --duration 3"     # one section, shorter runs
    .venv/bin/python -m bench.run --list                # the sections there are
    make bench BENCH_ARGS="--schema models"             # schema from the models, not the migrations
                                                        # (only while the migration lags the models)

`make bench` installs `requirements-bench.txt` into `.venv`, runs `bench/run.py`, which
runs each section's script and then rewrites this file from `bench/results/*.json`
(generated: edit the scripts, not this file). Figures taken while other work shares the
machine are noisy; the load average at the start and end of each run is recorded to
show it.

Adding a section: a script `bench/<name>.py` with module-level `SECTION = "<key>"`,
`ORDER = <int>` and `ACCEPTS = (...)` (the `bench/run.py` options it takes, e.g.
`"duration"`), a `main(argv) -> exit status` that calls `bench.lib.results.write_result(...)`
with `renderer="bench.<name>:render"`, and a `render(result) -> Markdown` function in a
module that is cheap to import. `bench/run.py` finds it by itself.
"""


def load_results(results_dir: Path = RESULTS_DIR) -> list[dict]:
    results = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            print(f"skipping {path}: {error}", file=sys.stderr)
            continue
        if isinstance(result, dict) and "section" in result:
            results.append(result)
    return sorted(results, key=lambda result: (result.get("order", 100), result["section"]))


def _facts(result: dict) -> list[str]:
    env = result.get("environment", {})
    packages = ", ".join(f"{name} {version}" for name, version in env.get("packages", {}).items())
    return [
        f"- Command: `{result.get('command', '?')}`",
        f"- Date: {env.get('date', '?')}; code: {env.get('git', '?')}",
        f"- Machine: {env.get('cores', '?')} cores ({env.get('cpu', '?')}), {env.get('memory_gib', '?')} GiB, "
        f"Linux {env.get('kernel', '?')}; load average (1 min) {env.get('load_average_1m_at_start', '?')} at the "
        f"start, {env.get('load_average_1m_at_end', '?')} at the end; PostgreSQL connections in use at the "
        f"start: {env.get('postgres_connections_at_start', '?')}",
        f"- Software: Python {env.get('python', '?')}, PostgreSQL {env.get('postgresql', '?')}, "
        f"Redis {env.get('redis', '?')}; {packages}",
    ]


def _fallback(result: dict) -> str:
    text = json.dumps(result.get("data"), indent=1)
    if len(text) > 4000:
        text = text[:4000] + "\n..."
    return f"```json\n{text}\n```"


def render_section(result: dict) -> str:
    lines = [f"## {result.get('title', result['section'])}", ""]
    if not result.get("ok", True):
        lines += ["**This run failed:**", ""] + [f"- {note}" for note in result.get("notes", [])] + [""]
    lines += _facts(result) + [""]
    renderer = result.get("renderer", "")
    module_name, _, function_name = renderer.partition(":")
    try:
        body = getattr(importlib.import_module(module_name), function_name)(result)
    except Exception as error:  # noqa: BLE001 - a broken renderer must not lose the other sections
        body = f"(renderer {renderer!r} failed: {type(error).__name__}: {error})\n\n{_fallback(result)}"
    lines.append(body)
    return "\n".join(lines)


def render_all(results: list[dict], plots: list | None = None) -> str:
    sections = [render_section(result) for result in results] or ["No results yet: run `make bench`."]
    if plots is not None and results:
        from bench.plots import render as render_plots

        sections.append("## Plots\n\n" + render_plots(plots, ROOT))
    return HEADER + "\n" + "\n\n".join(sections) + "\n"


def write(path: Path = BENCHMARKS, results_dir: Path = RESULTS_DIR) -> Path:
    from bench.plots import draw

    results = load_results(results_dir)
    path.write_text(render_all(results, draw(results, results_dir)))
    return path


if __name__ == "__main__":
    print(f"wrote {write()}")
