"""The benchmark machinery without running a benchmark: section discovery, option
forwarding, BENCHMARKS.md generation, and the plan checks of bench/lib/plans.py.

Nothing here measures speed (that belongs in bench/, not in tests) and nothing imports
bench.loadgen, which monkey-patches the process for gevent.
"""

from __future__ import annotations

import json
from argparse import Namespace

from bench import explain_reports, report, run
from bench.lib import plans


def test_discover_finds_sections_by_reading_files(tmp_path):
    (tmp_path / "mine.py").write_text(
        'SECTION = "mine"\nORDER = 5\nACCEPTS = ("duration",)\nraise SystemExit\n'
    )
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "broken.py").write_text("SECTION = (\n")
    sections = run.discover(tmp_path)
    assert [(s.key, s.module, s.order, s.accepts) for s in sections] == [
        ("mine", "bench.mine", 5, ("duration",))
    ]


def test_the_project_sections_are_found():
    keys = {section.key for section in run.discover()}
    assert {"api", "explain", "reports"} <= keys


def test_only_accepted_options_are_forwarded():
    section = run.Section("api", "bench.api_latency", 10, ("duration", "profile"))
    args = Namespace(duration=3.0, warmup=1.0, concurrency=None, workers=4, profile=True, schema="models")
    command = run.section_command(section, args)
    assert command[1:] == ["-m", "bench.api_latency", "--duration", "3", "--profile"]
    other = run.Section("explain", "bench.explain_queue", 20, ("schema",))
    assert run.section_command(other, args)[1:] == ["-m", "bench.explain_queue", "--schema", "models"]
    bare = run.Section("other", "bench.other", 30, ())
    assert run.section_command(bare, args)[1:] == ["-m", "bench.other"]


def test_unknown_section_is_an_error(capsys):
    assert run.main(["--only", "nope"]) == 2
    assert "unknown sections" in capsys.readouterr().err


def _result(section: str, order: int, renderer: str, ok: bool = True) -> dict:
    return {
        "section": section,
        "title": f"Title {section}",
        "order": order,
        "renderer": renderer,
        "command": f"make bench {section}",
        "ok": ok,
        "notes": ["something broke"] if not ok else [],
        "environment": {
            "date": "2026-01-01 00:00 UTC",
            "cores": 2,
            "memory_gib": 24,
            "packages": {"gevent": "1"},
        },
        "data": {"value": 42},
    }


def test_report_orders_sections_keeps_facts_and_survives_a_broken_renderer(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(_result("b", 20, "json:dumps")))
    (tmp_path / "a.json").write_text(json.dumps(_result("a", 30, "no_such_module:render", ok=False)))
    (tmp_path / "junk.json").write_text("{not json")
    text = report.render_all(report.load_results(tmp_path))
    assert text.index("## Title b") < text.index("## Title a")
    assert "- Command: `make bench b`" in text
    assert "2 cores" in text and "24 GiB" in text
    assert "renderer 'no_such_module:render' failed" in text and '"value": 42' in text
    assert "**This run failed:**" in text and "- something broke" in text


def test_positional_parameters_for_prepare():
    text, values = plans.positional(
        "SELECT 1 WHERE a = %(x)s AND b = %(y)s AND c = %(x)s AND d LIKE 'p%%'", {"x": 1, "y": "two"}
    )
    assert text == "SELECT 1 WHERE a = $1 AND b = $2 AND c = $1 AND d LIKE 'p%'"
    assert values == [1, "two"]


GUARDED = ("appointments", "appointment_events", "bills")


def _plan(node: dict, cost: float = 10.0) -> list:
    return [{"Plan": {"Total Cost": cost, **node}, "Execution Time": 1.5, "Planning Time": 0.1}]


def test_seq_scans_on_guarded_tables_fail_and_others_do_not():
    seq = plans.summarize_plan(_plan({"Node Type": "Seq Scan", "Relation Name": "appointments"}), GUARDED)
    assert seq["guarded_seq_scans"] == ["appointments"]
    small = plans.summarize_plan(_plan({"Node Type": "Seq Scan", "Relation Name": "categories"}), GUARDED)
    assert small["seq_scans"] == ["categories"] and small["guarded_seq_scans"] == []
    index = plans.summarize_plan(
        _plan(
            {
                "Node Type": "Limit",
                "Plans": [
                    {"Node Type": "Index Scan", "Relation Name": "bills", "Index Name": "ix_bills_status"}
                ],
            }
        ),
        GUARDED,
    )
    assert index["scans"] == ["Index Scan using ix_bills_status on bills"] and not index["guarded_seq_scans"]

    def case(custom, generic):
        return {
            "label": "c",
            "error": None,
            "statements": [{"sql": "SELECT", "custom": custom, "generic": generic}],
        }

    assert plans.failures_of(case(seq, index))
    # A generic Seq Scan counts only when PostgreSQL would pick it (not costlier than the custom plan).
    cheap_seq = plans.summarize_plan(
        _plan({"Node Type": "Seq Scan", "Relation Name": "bills"}, cost=12.0), GUARDED
    )
    costly_seq = plans.summarize_plan(
        _plan({"Node Type": "Seq Scan", "Relation Name": "bills"}, cost=900.0), GUARDED
    )
    assert plans.failures_of(case(index, cheap_seq))
    assert not plans.failures_of(case(index, costly_seq))


def test_the_daily_report_fails_the_reports_run_at_its_limit():
    def case(label, median):
        return {"label": label, "timings": {"median_ms": median}}

    assert explain_reports.timing_failures([case("daily (the busiest day)", 199.9)]) == []
    assert explain_reports.timing_failures([case("daily (the busiest day)", 200.0)]) == [
        "daily (the busiest day): median 200.0 ms, not under 200 ms"
    ]
    # Only the daily report has a limit; a failed call (no timings) fails through its plans' check.
    assert explain_reports.timing_failures([case("receivables (90 days)", 900.0), {"label": "daily"}]) == []
