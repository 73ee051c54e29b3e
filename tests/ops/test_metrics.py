"""GET /metrics: each metric driven by traffic and read back from the scrape; who may
scrape; nothing of a patient in it (in process: one worker, the client's own registry;
tests/ops/test_metrics_live.py runs gunicorn's workers together)."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hms.core import metrics
from hms.core.dbpool import FairQueuePool
from hms.core.uow import unit_of_work
from hms.extensions import db
from tests.queue.stream_helpers import StreamReader, booking, make_patient

Samples = dict[tuple[str, frozenset], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def scrape(client, **kwargs) -> Samples:
    res = client.get("/metrics", **kwargs)
    assert res.status_code == 200, res.get_data(as_text=True)
    assert res.mimetype == "text/plain"
    return parse(res.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


class Delta:
    """Scrape before and after some traffic; `of(name, **labels)` is what it added."""

    def __init__(self, client):
        self.client = client
        self.before = scrape(client)
        self.after: Samples = {}

    def of(self, name: str, **labels: str) -> float:
        if not self.after:
            self.after = scrape(self.client)
        return value(self.after, name, **labels) - value(self.before, name, **labels)


@pytest.fixture
def doctor_user(make_user):
    return make_user("doctor", name="Meera Rao")


# --- requests ----------------------------------------------------------------------------


def test_requests_are_counted_and_timed_by_route_template(app, client, reception):
    patient_id = make_patient(app, "Asha Kumar")
    delta = Delta(client)
    for _ in range(3):
        assert reception.get(f"/api/patients/{patient_id}").status_code == 200
    assert client.get("/api/patients/999999").status_code == 401
    route = "/api/patients/<id:patient_id>"
    assert delta.of("hms_http_requests_total", route=route, method="GET", status="200") == 3
    assert delta.of("hms_http_requests_total", route=route, method="GET", status="401") == 1
    assert delta.of("hms_http_request_duration_seconds_count", route=route, method="GET") == 4
    assert delta.of("hms_http_request_duration_seconds_bucket", route=route, method="GET", le="+Inf") == 4
    assert delta.of("hms_http_request_duration_seconds_sum", route=route, method="GET") > 0


def test_unmatched_paths_and_odd_methods_are_one_label_each(client):
    delta = Delta(client)
    assert client.get("/no/such/page/unlisted-path").status_code == 404
    assert client.open("/healthz", method="BREW").status_code == 405
    assert delta.of("hms_http_requests_total", route="(unmatched)", method="GET", status="404") == 1
    assert delta.of("hms_http_requests_total", route="(unmatched)", method="other", status="405") == 1
    assert "unlisted-path" not in client.get("/metrics").get_data(
        as_text=True
    )  # digits could match a timestamp


def test_the_request_in_flight_is_counted_while_it_runs(client):
    # The scrape itself is the request in flight; the one before it has ended.
    for _ in range(2):
        assert value(scrape(client), "hms_http_requests_in_flight") == 1


# --- streams and the broker ---------------------------------------------------------------


def _open(client, doctor_id):
    return client.get(f"/api/queue/{doctor_id}/stream", buffered=False)


def _reader(response) -> StreamReader:
    assert response.status_code == 200, response.get_data(as_text=True)
    return StreamReader(response, iter(response.response), in_process=True)


def _wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_open_streams_are_counted_and_given_back(app, client, reception, doctor_user):
    base = value(scrape(client), "hms_sse_streams_open")
    readers = [_reader(_open(reception, doctor_user.id)) for _ in range(2)]
    try:
        readers[0].next_event()
        assert value(scrape(client), "hms_sse_streams_open") == base + 2
    finally:
        for reader in readers:
            reader.close()
    assert _wait_for(lambda: value(scrape(client), "hms_sse_streams_open") == base)


def test_refused_streams_are_counted_by_the_limit_that_was_full(
    app, client, reception, doctor_user, make_user, monkeypatch
):
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_ACCOUNT", 1)
    monkeypatch.setitem(app.config, "SSE_MAX_CONNECTIONS_PER_DOCTOR", 1)
    other_doctor = make_user("doctor", name="Ravi Iyer")
    delta = Delta(client)
    reader = _reader(_open(reception, doctor_user.id))
    try:
        assert _open(reception, other_doctor.id).status_code == 429  # the account's one slot
        assert delta.of("hms_sse_refusals_total", reason="account") == 1
        assert delta.of("hms_sse_refusals_total", reason="doctor") == 0
    finally:
        reader.close()


def test_a_change_is_published_and_its_delivery_lag_observed(app, client, reception, doctor, doctor_user):
    from hms.realtime.broker import QueueBroker

    reader = _reader(_open(doctor, doctor_user.id))
    try:
        reader.next_event()
        broker = QueueBroker.get(app)
        if hasattr(broker, "connected"):  # Redis: the subscriber connects with the first stream
            assert broker.connected.wait(5)
        delta = Delta(client)
        assert (
            reception.post("/api/appointments", json=booking(make_patient(app), doctor_user.id)).status_code
            == 201
        )
        reader.next_event(timeout=3)
        # A booking changes the doctor's queue and opens a bill: two topics told.
        assert delta.of("hms_broker_messages_total", direction="published") == 2
        if hasattr(broker, "connected"):  # this process's subscriber heard it too
            assert delta.of("hms_broker_messages_total", direction="received") == 2
        assert delta.of("hms_broker_delivery_lag_seconds_count") == 1
        assert 0 < delta.of("hms_broker_delivery_lag_seconds_sum") < 3
    finally:
        reader.close()


# --- caches ---------------------------------------------------------------------------------


def test_cache_hits_and_misses_by_cache(app, client, reception, doctor_user):
    delta = Delta(client)
    for _ in range(2):
        assert reception.get("/api/departments").status_code == 200
        assert reception.get(f"/api/doctors/{doctor_user.id}").status_code == 200
        assert reception.get(f"/api/queue/{doctor_user.id}").status_code == 200
    for cache in ("reference", "doctor_profile", "queue_snapshot"):
        assert delta.of("hms_cache_requests_total", cache=cache, result="miss") == 1, cache
        assert delta.of("hms_cache_requests_total", cache=cache, result="hit") == 1, cache
    # Each of the six requests read the caller's identity; only the first one missed.
    assert delta.of("hms_cache_requests_total", cache="identity", result="hit") >= 5


# --- the database ------------------------------------------------------------------------------


def test_pool_checkouts_overflow_waits_and_timeouts(tmp_path, client):
    # A pool of one connection and one overflow, on a file of its own (both backends use
    # the same pool code; the app's own engine is watched the same way by init_metrics).
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.sqlite3'}",
        poolclass=FairQueuePool,
        pool_size=1,
        max_overflow=1,
        pool_timeout=0.2,
    )
    metrics.watch_engine(engine, {"SLOW_QUERY_MS": 1e9})
    delta = Delta(client)
    first, second = engine.connect(), engine.connect()
    now = scrape(client)
    assert value(now, "hms_db_pool_checked_out") == 2
    assert value(now, "hms_db_pool_overflow") == 1
    with pytest.raises(PoolTimeout):
        engine.connect()  # waits pool_timeout, then the 503 of the app's error handler
    threading.Timer(0.05, second.close).start()
    third = engine.connect()  # waits for the connection `second` gives back
    third.close()
    first.close()
    assert delta.of("hms_db_pool_timeouts_total") == 1
    assert delta.of("hms_db_pool_wait_seconds_count") == 2
    assert delta.of("hms_db_pool_wait_seconds_sum") >= 0.2
    after = scrape(client)
    assert value(after, "hms_db_pool_checked_out") == 0
    engine.dispose()


def test_transactions_committed_and_rolled_back(app, client):
    delta = Delta(client)
    with app.app_context():
        with unit_of_work():
            pass
        with pytest.raises(ValueError), unit_of_work():
            raise ValueError("nothing written")
    assert delta.of("hms_db_transactions_total", result="committed") == 1
    assert delta.of("hms_db_transactions_total", result="rolled_back") == 1


def test_every_statement_is_timed(app, client):
    executed = []
    with app.app_context():
        engine = db.engine

        def seen(conn, cursor, statement, *args):
            executed.append(statement)

        event.listen(engine, "after_cursor_execute", seen)
        try:
            delta = Delta(client)  # the scrape itself runs no SQL
            for _ in range(3):
                db.session.execute(text("SELECT 1"))
            db.session.rollback()
        finally:
            event.remove(engine, "after_cursor_execute", seen)
    assert executed.count("SELECT 1") == 3
    assert delta.of("hms_db_query_duration_seconds_count") == len(executed)
    assert delta.of("hms_db_query_duration_seconds_sum") > 0


def test_slow_queries_are_counted_by_kind(app, client, reception, monkeypatch):
    patient_id = make_patient(app, "Zed Quux")
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 0)  # every statement is slow
    delta = Delta(client)
    assert reception.get(f"/api/patients/{patient_id}").status_code == 200
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 1e9)
    assert delta.of("hms_db_slow_queries_total", kind="SELECT") >= 1


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT 1", "SELECT"),
        ("  insert INTO x VALUES (1)", "INSERT"),
        ("UPDATE x SET a = 1", "UPDATE"),
        ("DELETE FROM x", "DELETE"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "other"),
        ("BEGIN", "other"),
    ],
)
def test_statement_kinds(statement, kind):
    assert metrics.statement_kind(statement) == kind


# --- rate limits and processes ------------------------------------------------------------------


def test_sign_in_refusals_are_counted_by_limit(app, client, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_CLIENT", "2 per minute")
    make_user("reception", username="desk1")
    delta = Delta(client)
    statuses = [
        client.post("/api/auth/token", json={"username": "desk1", "password": "wrong-pass"}).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert delta.of("hms_rate_limit_refusals_total", limit="sign-in-client") == 1


def test_rate_limited_counts_a_named_limit(client):
    delta = Delta(client)
    metrics.rate_limited("api-writes")
    assert delta.of("hms_rate_limit_refusals_total", limit="api-writes") == 1


def test_process_memory_and_open_files(client):
    samples = scrape(client)
    assert value(samples, "process_resident_memory_bytes") > 10_000_000
    assert value(samples, "process_open_fds") > 2


def test_worker_processes_collector_reads_every_live_worker(tmp_path):
    import os
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (other.pid, os.getpid()):
            (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / "gauge_livesum_999999999.db").write_bytes(b"")  # no such process
        (tmp_path / "counter_424242.db").write_bytes(b"")  # a dead worker's counters
        families = {family.name: family for family in metrics.WorkerProcesses(str(tmp_path)).collect()}
        memory = {
            sample.labels["pid"]: sample.value for sample in families["process_resident_memory_bytes"].samples
        }
        assert set(memory) == {str(other.pid), str(os.getpid())}
        assert all(rss > 0 for rss in memory.values())
        assert len(families["process_open_fds"].samples) == 2
    finally:
        other.kill()
        other.wait()


# --- who may scrape, and what it never shows ------------------------------------------------------


def test_refused_off_loopback_without_the_token(app, client, monkeypatch):
    remote = {"environ_base": {"REMOTE_ADDR": "10.1.2.3"}}
    assert client.get("/metrics", **remote).status_code == 403
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-metrics-token")
    assert client.get("/metrics", **remote).status_code == 403
    wrong = {"Authorization": "Bearer s3cret-metrics-tokeX"}
    assert client.get("/metrics", headers=wrong, **remote).status_code == 403
    right = {"Authorization": "Bearer s3cret-metrics-token"}
    assert scrape(client, headers=right, **remote)
    assert scrape(client, environ_base={"REMOTE_ADDR": "::1"})


def test_a_request_forwarded_by_an_untrusted_proxy_is_not_loopback(app, client, monkeypatch):
    forwarded = {"headers": {"X-Forwarded-For": "203.0.113.9"}}
    assert client.get("/metrics", **forwarded).status_code == 403
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-metrics-token")
    headers = {**forwarded["headers"], "Authorization": "Bearer s3cret-metrics-token"}
    assert client.get("/metrics", headers=headers).status_code == 200


def test_no_patient_data_in_the_metrics(app, client, reception, doctor_user):
    patient_id = make_patient(app, "Zed Quux")
    assert reception.get(f"/api/patients/{patient_id}").status_code == 200
    assert reception.get("/api/patients?q=Quux").status_code == 200
    assert reception.post("/api/appointments", json=booking(patient_id, doctor_user.id)).status_code == 201
    assert reception.get(f"/api/queue/{doctor_user.id}").status_code == 200
    body = client.get("/metrics").get_data(as_text=True)
    for secret in ("Zed", "Quux", "q=", f"/api/patients/{patient_id}", f"/api/queue/{doctor_user.id}"):
        assert secret not in body
    assert 'route="/api/patients"' in body


def test_metrics_use_only_bounded_labels(client, reception):
    reception.get("/api/departments")
    allowed = {
        "route",
        "method",
        "status",
        "reason",
        "direction",
        "cache",
        "result",
        "kind",
        "limit",
        "le",
        "pid",
    }
    names = [name for name, _ in scrape(client) if name.startswith("hms_")]
    assert len(names) > 20
    for name, labels in scrape(client):
        if name.startswith("hms_"):
            assert {label for label, _ in labels} <= allowed, name


def test_engine_is_watched_on_the_app_database(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 0)
    delta = Delta(client)
    with app.app_context():
        from hms.extensions import db

        db.session.execute(text("SELECT 1"))
        db.session.remove()
    monkeypatch.setitem(app.config, "SLOW_QUERY_MS", 1e9)
    assert delta.of("hms_db_slow_queries_total", kind="SELECT") >= 1
