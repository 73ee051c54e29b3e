"""The day replay (bench/day_replay.py) as a smoke test: a small clinic day through a live
gunicorn, then the final state checked straight in the database. Timings are not
asserted, only that nothing failed and that the day ended as a day must end. Also the
replay's delivery matching, on made-up streams."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from bench.replay_report import histogram_quantile, percentile, render_server_metrics, server_metrics
from bench.replay_streams import Change, Display, SnapshotBook, change_versions, delivery_latencies
from tests.conftest import ROOT

PATIENTS, DOCTORS, DISPLAYS = 200, 5, 10


def test_a_small_day_replayed_ends_with_empty_queues_and_paid_bills(app, live_server, make_user, tmp_path):
    make_user("admin", username="replay-admin", password="replay-admin-pass")
    out = tmp_path / "day_replay.json"
    command = [
        sys.executable,
        *("-m", "bench.day_replay"),
        *("--base-url", live_server, "--admin-user", "replay-admin", "--admin-password", "replay-admin-pass"),
        *("--patients", str(PATIENTS), "--doctors", str(DOCTORS), "--displays", str(DISPLAYS)),
        *("--concurrency", "10", "--out", str(out), "--no-progress"),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    data = json.loads(out.read_text())["data"]
    assert data["ok"] and data["errors"] == 0, data["error_samples"]
    assert data["verification"] == {"ok": True, "problems": [], "bills_checked": PATIENTS}
    server = data["server_metrics"]  # the server's own /metrics at the end
    assert server["requests"] >= data["requests"] and server["pool_timeouts"] == 0
    assert "/api/appointments" in {row["route"] for row in server["routes"]}
    assert {step: row["count"] for step, row in data["steps"].items()} == dict.fromkeys(
        data["steps"], PATIENTS
    )
    stream = data["stream"]
    assert (stream["connected"], stream["reconnects"], stream["missed"]) == (DISPLAYS, 0, 0)
    # Each display follows one doctor: it sees that doctor's 3 changes per patient.
    assert stream["delivery"]["count"] == 3 * PATIENTS * DISPLAYS // DOCTORS

    # The final state, read from the database rather than from the replay's own checks.
    from hms.appointments.models import Appointment
    from hms.billing.models import Bill, Payment
    from hms.extensions import db
    from hms.patients.models import Patient
    from hms.prescriptions.models import Prescription

    with app.app_context():
        appointments = db.session.execute(
            select(Appointment.doctor_id, Appointment.appointment_date, Appointment.token, Appointment.status)
        ).all()
        assert len(appointments) == PATIENTS
        assert Counter(row.status for row in appointments) == {"COMPLETED": PATIENTS}
        per_queue: dict[tuple, list[int]] = {}
        for row in appointments:
            per_queue.setdefault((row.doctor_id, row.appointment_date), []).append(row.token)
        assert len(per_queue) == DOCTORS
        for tokens in per_queue.values():
            assert sorted(tokens) == list(range(1, len(tokens) + 1))
        bills = db.session.execute(select(Bill.status, Bill.total_amount, Bill.paid_amount)).all()
        assert len(bills) == PATIENTS
        assert all(bill.status == "PAID" and bill.paid_amount == bill.total_amount > 0 for bill in bills)
        assert db.session.scalar(select(func.count()).select_from(Payment)) == PATIENTS
        assert db.session.scalar(select(func.count()).select_from(Prescription)) == PATIENTS
        assert db.session.scalar(select(func.count()).select_from(Patient)) == PATIENTS


def _display(doctor_id: int, received: list[tuple[int, float]], book: SnapshotBook) -> Display:
    display = Display(0, doctor_id, "127.0.0.1", 1, "token", book)
    for version, at in received:
        display.versions.append(version)
        display.times.append(at)
    return display


def test_delivery_matching_counts_a_coalesced_snapshot_for_every_older_change():
    book = SnapshotBook()
    # Doctor 7's queue as the displays saw it: appointment 1 booked (v1), 2 booked (v2),
    # 1 called in (v3), 1 completed (v4) and 2 called in (v5) sent as one snapshot (v5).
    book.ids[7] = {1: frozenset({1}), 2: frozenset({1, 2}), 3: frozenset({1, 2}), 5: frozenset({2})}
    changes = [
        Change("book", 7, 10.0, 1),
        Change("book", 7, 11.0, 2),
        Change("call", 7, 12.0, 1, version=3, answered=12.5),  # the display had it 0.2 s before
        Change("complete", 7, 13.0, 1, call_version=3),
        Change("call", 7, 13.5, 2, version=5),
    ]
    change_versions(changes, book, {7: [(3, 1), (5, 2)]})
    assert [change.version for change in changes] == [1, 2, 3, 5, 5]

    on_time = _display(7, [(1, 10.1), (2, 11.2), (3, 12.3), (5, 14.0)], book)
    joined_late = _display(7, [(5, 20.0)], book)  # one snapshot delivers all five changes
    found = delivery_latencies(changes, [on_time, joined_late])
    assert (found.missed, found.unknown) == (0, 0)
    assert found.by_kind["book"] == pytest.approx([0.1, 0.2, 10.0, 9.0])
    assert found.by_kind["call"] == pytest.approx([0.3, 0.5, 8.0, 6.5])
    assert found.by_kind["complete"] == pytest.approx([1.0, 7.0])
    assert found.after_answer == pytest.approx([-0.2, 7.5])


def test_a_display_that_never_shows_a_change_is_a_missed_delivery():
    book = SnapshotBook()
    book.ids[7] = {1: frozenset({1}), 2: frozenset({1})}
    changes = [Change("book", 7, 1.0, 1), Change("call", 7, 2.0, 1, version=2)]
    change_versions(changes, book, {7: [(2, 1)]})
    stuck = _display(7, [(1, 1.5)], book)  # never got version 2
    found = delivery_latencies(changes, [stuck, _display(7, [(1, 1.2), (2, 2.5)], book)])
    assert (found.missed, found.unknown) == (1, 0)
    assert found.by_kind["book"] == pytest.approx([0.5, 0.2])
    assert found.by_kind["call"] == pytest.approx([0.5])
    # A completion no display saw and no later call-in dates has no version: reported, not guessed.
    lost = [Change("complete", 7, 3.0, 1, call_version=2)]
    change_versions(lost, book, {7: [(2, 1)]})
    found = delivery_latencies(lost, [stuck])
    assert (found.missed, found.unknown) == (0, 1)
    # Nobody follows doctor 8: its changes need no delivery at all.
    assert delivery_latencies([Change("call", 8, 1.0, 5, version=1)], [stuck]).unknown == 0


def test_percentile_is_nearest_rank():
    values = sorted(float(n) for n in range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


def test_the_report_reads_the_servers_metrics_and_says_when_the_pool_timed_out():
    text = """# TYPE hms_http_requests counter
hms_http_requests_total{route="/api/x",method="GET",status="200"} 90
hms_http_requests_total{route="/api/x",method="GET",status="503"} 10
# TYPE hms_http_request_duration_seconds histogram
hms_http_request_duration_seconds_bucket{route="/api/x",method="GET",le="0.01"} 50
hms_http_request_duration_seconds_bucket{route="/api/x",method="GET",le="0.1"} 100
hms_http_request_duration_seconds_bucket{route="/api/x",method="GET",le="+Inf"} 100
hms_http_request_duration_seconds_count{route="/api/x",method="GET"} 100
hms_http_request_duration_seconds_sum{route="/api/x",method="GET"} 3
# TYPE hms_db_pool_timeouts counter
hms_db_pool_timeouts_total 10
# TYPE hms_db_slow_queries counter
hms_db_slow_queries_total{kind="SELECT"} 4
"""
    server = server_metrics(text)
    assert server["requests"] == 100 and server["server_errors"] == 10 and server["pool_timeouts"] == 10
    assert server["routes"] == [{"route": "/api/x", "requests": 100, "p95_ms": 91.0}]
    assert server["slow_queries"] == {"SELECT": 4}
    assert "10 database pool timeouts" in "\n".join(render_server_metrics(server))
    assert histogram_quantile(0.5, [(0.01, 50.0), (0.1, 100.0), (float("inf"), 100.0)]) == 0.01
