"""bench/explain_reports.py end to end on a tiny generated history (PostgreSQL only), so
the script cannot rot: the data generator, the timed report calls, the captured
statements and their plans. With --prefer-indexes (enable_seqscan off) a Seq Scan on
appointments, bills or payments remains only where no index serves the query, and then
the script exits 1 and this test fails.

It times nothing itself: the timings are the script's, for BENCHMARKS.md (a tiny
history answers far below the daily report's limit).
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import psycopg
import pytest

from bench import explain_reports
from bench.lib import results, services
from tests.conftest import uses_postgres

pytestmark = pytest.mark.skipif(
    not uses_postgres(), reason="the plans are PostgreSQL's (set TEST_DATABASE_URL)"
)


@pytest.fixture
def bench_database(monkeypatch):
    """A database of the test's own next to TEST_DATABASE_URL's, dropped afterwards."""
    url = urlsplit(os.environ["TEST_DATABASE_URL"])
    monkeypatch.setattr(services, "PG_HOST", url.hostname or "127.0.0.1")
    monkeypatch.setattr(services, "PG_PORT", url.port or 5432)
    monkeypatch.setattr(services, "PG_USER", url.username or "postgres")
    name = f"{url.path.lstrip('/')}_explain_reports"
    yield name
    with psycopg.connect(services.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_reports_are_timed_and_their_plans_use_indexes(bench_database, tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    argv = ["--database", bench_database, "--appointments", "3000", "--doctors", "3", "--per-day", "10",
            "--patients", "500", "--runs", "2", "--prefer-indexes"]  # fmt: skip
    status = explain_reports.main(argv)
    result = json.loads((tmp_path / "reports.json").read_text())
    failures = [failure for case in result["data"]["cases"] for failure in case["failures"]]
    assert status == 0, failures or result["notes"]
    assert result["ok"] and not result["notes"]
    cases = result["data"]["cases"]
    assert [case["label"].split(" ")[0] for case in cases] == ["daily", "cash-up", "cash-up", "receivables"]
    for case in cases:
        assert case["statements"], case["label"]
        assert case["timings"]["runs"] == 2 and case["timings"]["median_ms"] > 0
        for statement in case["statements"]:
            assert statement["custom"]["scans"], statement["sql"]
    rows = result["data"]["rows"]
    assert rows["appointments"] == 3000 and rows["bills"] == 3000
    # 3000 appointments at 30 a day: 100 days, so the receivables window has bills to age.
    assert int(result["data"]["days"]["booked_that_day"]) == 30
    assert "| daily (the busiest day) |" in explain_reports.render(result)
