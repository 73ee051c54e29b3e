"""The cross-section plots' data and the step-cost table, from synthetic results."""

from bench import plots, step_cost


def _capacity(streams: int, system: str, p50, p99) -> dict:
    return {
        "system": system,
        "streams": streams,
        "changes": [{"via": "api", "rate": 100.0, "delivery": {"from_start_ms": {"p50": p50, "p99": p99}}}],
    }


def test_stream_points_gather_every_measured_delivery():
    results = [
        {
            "section": "stream_capacity",
            "data": {
                "aims": {"p99_ms": 500},
                "scenarios": [
                    _capacity(10000, "hms", 30.0, 400.0),
                    _capacity(1000, "hms", 10.0, 90.0),
                    _capacity(10000, "flask-sse", None, None),  # failed: no point
                ],
            },
        },
        {
            "section": "day_replay_5000",
            "data": {
                "steps": {"book": {"p50_ms": 1, "p95_ms": 2, "p99_ms": 3}},
                "stream": {"displays": 1000, "delivery": {"p50_ms": 50.0, "p99_ms": 700.0}},
            },
        },
    ]
    series = plots.stream_points(results)
    assert series == {
        "hms, changes via api at 100/s": [(1000, 10.0, 90.0), (10000, 30.0, 400.0)],
        "hms, day replay displays": [(1000, 50.0, 700.0)],
    }


def test_step_cost_table_compares_before_and_after():
    row = {"requests": 10, "sql_per_request": 8.0, "redis_per_request": 5.0, "cpu_ms_per_request": 10.0}
    faster = {**row, "sql_per_request": 6.0, "cpu_ms_per_request": 7.5}
    result = {
        "data": {
            "patients": 10,
            "runs": {
                "current": {"revision": "new", "steps": {"next": faster}, "cpu_ms_per_patient": 7.5},
                "base": {"revision": "old", "steps": {"next": row}, "cpu_ms_per_patient": 10.0},
            },
        }
    }
    text = step_cost.render(result)
    assert "| next | 8.0 → 6.0 | 5.0 → 5.0 | 10.0 → 7.5 | -25% |" in text
    assert "10.0 ms at old (before) → 7.5 ms at new (after)" in text


def test_delivery_table_shows_both_revisions():
    from bench import delivery_ab

    def run(revision, answer_p99):
        stats = {"p50_ms": 9.0, "p95_ms": 27.0, "p99_ms": answer_p99}
        return {"revision": revision, "ok": True, "errors": 0, "wall_seconds": 82.0, "rps": 219.1,
                "server_cpu_ms_per_request": 5.4, "missed": 0, "delivery_from_request": stats,
                "delivery_from_answer": stats}  # fmt: skip

    result = {
        "data": {
            "patients": 3000,
            "doctors": 50,
            "displays": 1000,
            "runs": {"base": run("old", 6842.0), "current": run("new", 39.8)},
        }
    }
    text = delivery_ab.render(result)
    assert "| old (before) | 82.0 | 219.1 | 0 | 0 | 5.4 | 9 / 27 / 6,842 | 9 / 27 / 6,842 |" in text
    assert "| new (after) |" in text and "9 / 27 / 40 |" in text
