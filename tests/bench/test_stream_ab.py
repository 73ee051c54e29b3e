"""bench.stream_ab's figures from a stream_capacity result, and its table, from synthetic results."""

from bench import stream_ab


def _phase(via: str, rate: float, p50: float, p99: float, cpu_seconds: float = 2.0) -> dict:
    return {"via": via, "rate": rate, "ok": 200, "sent": 200, "answer_ms": {"p50": 5.0, "p99": 20.0},
            "worker_cpu_seconds": cpu_seconds,
            "delivery": {"from_start_ms": {"p50": p50, "p90": p99, "p99": p99, "max": p99},
                         "undelivered": 0, "pairs": 4000}}  # fmt: skip


def _capacity(method: str | None, rss: float, api_p99: float) -> dict:
    settings = {"rates": [100.0], "direct_rates": [100.0]}
    if method:
        settings["direct_changes"] = method
    scenario = {"system": "hms", "streams": 10000, "held_to_end": 10000, "rss_per_stream_kb": rss,
                "changes": [_phase("api", 100.0, 30.0, api_p99), _phase("direct", 100.0, 12.0, 80.0, 1.0)]}  # fmt: skip
    return {
        "environment": {"load_average_1m_at_start": 1.0},
        "data": {"settings": settings, "scenarios": [scenario]},
    }


def _result(streams: int = 10000) -> dict:
    base = stream_ab.summary(_capacity(None, 35.2, 640.0), 100.0, 100.0)
    current = stream_ab.summary(_capacity("hms.queue.touch_queues_of_doctor", 24.1, 180.0), 100.0, 100.0)
    runs = [
        {"run": 1, "leg": "base", "revision": "ded6069", "exit": 0, "result_file": "bench/out/a.json", **base},
        {"run": 1, "leg": "current", "revision": "22ea94a", "exit": 0, "result_file": "bench/out/b.json", **current},
        {"run": 2, "leg": "base", "revision": "ded6069", "exit": 1, "result_file": "bench/out/c.json"},
    ]  # fmt: skip
    settings = {
        "streams": streams,
        "rate": 100.0,
        "direct_rate": 100.0,
        "idle": 5.0,
        "duration": 20.0,
        "workers": 2,
    }
    return {
        "data": {
            "base": "ded6069",
            "current": "22ea94a",
            "settings": settings,
            "aims": stream_ab.AIMS,
            "runs": runs,
        }
    }


def test_summary_keeps_the_compared_figures():
    figures = stream_ab.summary(_capacity(None, 35.2, 640.0), 100.0, 100.0)
    assert figures["held"] == 10000 and figures["rss_per_stream_kb"] == 35.2
    assert figures["api"]["delivery_ms"] == {"p50": 30.0, "p99": 640.0}
    assert figures["api"]["worker_cpu_ms_per_change"] == 10.0
    assert figures["direct"]["worker_cpu_ms_per_change"] == 5.0
    assert figures["direct_method"] is None


def test_table_compares_both_revisions_and_checks_the_aims():
    text = stream_ab.render(_result())
    assert (
        "| 1 | ded6069 (before) | 10,000 of 10,000 | 35.2 | 30.0 / 640.0 | 12.0 / 80.0 | 10.0 / 5.0 "
        "| 0 of 4,000 / 0 of 4,000 | ✘ ≤ 32 KB/stream, ✘ p99 < 500 ms at 100/s |"
    ) in text
    assert "| 1 | 22ea94a (after) | 10,000 of 10,000 | 24.1 | 30.0 / 180.0 |" in text
    assert "✔ ≤ 32 KB/stream, ✔ p99 < 500 ms at 100/s |" in text
    assert "| 2 | ded6069 (before) | failed: exit 1 |" in text
    # The two drivers' methods are named, and the raw files listed.
    assert "- ded6069 (before): the driver commits a version bump itself" in text
    assert "- 22ea94a (after): the driver calls `hms.queue.touch_queues_of_doctor`" in text
    assert "`bench/out/a.json`, `bench/out/b.json`, `bench/out/c.json`" in text
    assert "indicative only" not in text


def test_a_small_run_says_its_aim_checks_are_indicative():
    assert "indicative only" in stream_ab.render(_result(streams=200))
