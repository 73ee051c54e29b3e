"""The plots of BENCHMARKS.md that span sections, drawn from the stored results.

- `day_replay_<N>_steps.png`: p50/p95/p99 of each step of a day replay (one per size run);
- `stream_latency.png`: delivery latency (p50 and p99) against the number of open
  streams: HMS and flask-sse from the stream capacity section, and HMS's displays in
  each day replay, with the aim (p99 < 500 ms) drawn across.

`bench/report.py` calls `draw(results)` each time it rewrites BENCHMARKS.md, so the
plots always show the same results as the tables. Without matplotlib
(requirements-bench.txt) there are no plots, and the section says so.
"""

from __future__ import annotations

from pathlib import Path

from bench.lib.results import RESULTS_DIR, plot_percentiles

STREAM_PLOT = "stream_latency.png"
STEP_ORDER = ("register", "search", "book", "next", "call", "prescribe", "complete", "pay")


def _day_replays(results: list[dict]) -> list[dict]:
    return [r for r in results if r["section"].startswith("day_replay") and r.get("data", {}).get("steps")]


def _stream_capacity(results: list[dict]) -> dict | None:
    return next((r for r in results if r["section"] == "stream_capacity"), None)


def _step_plot(result: dict, results_dir: Path) -> tuple[Path, str] | None:
    data = result["data"]
    steps = data["steps"]
    ordered = sorted(
        steps, key=lambda name: STEP_ORDER.index(name) if name in STEP_ORDER else len(STEP_ORDER)
    )
    rows = [{"label": name, **steps[name]} for name in ordered if steps[name].get("p50_ms") is not None]
    if not rows:
        return None
    config = data.get("config", {})
    title = (
        f"Day replay: {config.get('patients', '?'):,} patients, {config.get('doctors', '?')} doctors, "
        f"{config.get('displays', '?'):,} displays (per-step latency)"
    )
    path = plot_percentiles(rows, results_dir / f"{result['section']}_steps.png", title)
    return (path, title) if path else None


def stream_points(results: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    """series label -> [(streams, p50 ms, p99 ms)], from every result that measured delivery."""
    series: dict[str, list[tuple[int, float, float]]] = {}
    capacity = _stream_capacity(results)
    for scenario in (capacity or {}).get("data", {}).get("scenarios", []):
        for change in scenario.get("changes", []):
            latency = change.get("delivery", {}).get("from_start_ms", {})
            if latency.get("p50") is None or latency.get("p99") is None:
                continue
            label = (
                f"{scenario['system']}, changes via {change.get('via', '?')} at {change.get('rate', 0):g}/s"
            )
            series.setdefault(label, []).append((scenario["streams"], latency["p50"], latency["p99"]))
    for result in _day_replays(results):
        stream = result["data"].get("stream", {})
        delivery = stream.get("delivery", {})
        if delivery.get("p50_ms") is None:
            continue
        series.setdefault("hms, day replay displays", []).append(
            (stream.get("displays", 0), delivery["p50_ms"], delivery["p99_ms"])
        )
    return {label: sorted(points) for label, points in series.items()}


def _stream_plot(results: list[dict], results_dir: Path) -> tuple[Path, str] | None:
    series = stream_points(results)
    if not series:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        streams = [p[0] for p in points]
        line = axes.plot(streams, [p[1] for p in points], marker="o", label=f"{label}: p50")[0]
        axes.plot(
            streams,
            [p[2] for p in points],
            marker="^",
            linestyle="--",
            color=line.get_color(),
            label=f"{label}: p99",
        )
    capacity = _stream_capacity(results)
    aim = (capacity or {}).get("data", {}).get("aims", {}).get("p99_ms", 500)
    axes.axhline(aim, color="grey", linewidth=1, linestyle=":", label=f"aim: p99 < {aim} ms")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("open streams (log scale)")
    axes.set_ylabel("change -> client (ms, log scale)")
    title = "Stream delivery latency against the number of open streams"
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path = results_dir / STREAM_PLOT
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path, title


def draw(results: list[dict], results_dir: Path = RESULTS_DIR) -> list[tuple[Path, str]]:
    """Draw every plot the results allow; [(png path, caption)]."""
    drawn = [_step_plot(result, results_dir) for result in _day_replays(results)]
    drawn.append(_stream_plot(results, results_dir))
    return [item for item in drawn if item]


def render(plots: list[tuple[Path, str]], root: Path) -> str:
    if not plots:
        return "No plots: matplotlib is missing (requirements-bench.txt) or no results have latencies yet."
    lines = []
    for path, caption in plots:
        lines += [f"![{caption}]({path.relative_to(root)})", ""]
    lines.append(
        "Drawn by `bench/plots.py` from the results above each time BENCHMARKS.md is rewritten; "
        "stream latency is measured from the start of the request that made the change."
    )
    return "\n".join(lines)
