"""Prometheus metrics, the per-request log line and the slow-query log (docs/operations.md).

Every metric of HMS is defined here, with the small functions the rest of the code
calls to record one (`cache_result`, `stream_refused`, `rate_limited`...). Labels carry
only bounded values: route templates (`request.url_rule.rule`, never the raw path),
methods, statuses, cache names, statement kinds, limit names; never an id, a path, a
query string or a name.

Under gunicorn every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode; gunicorn.conf.py sets the directory, cleans it at
start and marks each dead worker's files), and `render()` reads them all, so one scrape
shows every worker together. Without that directory (tests, `flask run`) the client's
ordinary in-process registry is used. Which mode applies is decided when
prometheus_client is first imported, i.e. from the environment the worker was started
with.

Per request (`init_metrics`): a WSGI wrapper takes the start time and counts the request
in flight; an after-request hook counts it by route, method and status, observes its
latency, and writes the request's log line (`hms.request`). Nothing else runs per
request: the pool, slow-query, cache and stream metrics are recorded where those things
happen.
"""

from __future__ import annotations

import logging
import os
import re
from time import perf_counter, time

from flask import Flask, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import event

from hms.extensions import db

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

REQUESTS = Counter(
    "hms_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "hms_http_request_duration_seconds",
    "Time from receiving a request to handing its response to the server (a stream: its opening)",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge(
    "hms_http_requests_in_flight",
    "Requests being handled now (open streams not included)",
    multiprocess_mode="livesum",
)
STREAMS_OPEN = Gauge(
    "hms_sse_streams_open", "Open Server-Sent Events streams, per worker process", multiprocess_mode="liveall"
)
STREAM_REFUSALS = Counter("hms_sse_refusals", "Streams refused (429) by the limit that was full", ["reason"])
BROKER_MESSAGES = Counter(
    "hms_broker_messages", "Queue change messages published and received by this app's workers", ["direction"]
)
DELIVERY_LAG = Histogram(
    "hms_broker_delivery_lag_seconds",
    "From a change's publication (right after its commit) to a stream handing its event to the server",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CACHE = Counter("hms_cache_requests", "Cache reads by cache and result (hit or miss)", ["cache", "result"])
POOL_CHECKED_OUT = Gauge(
    "hms_db_pool_checked_out",
    "Database connections in use, all workers together",
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "hms_db_pool_overflow",
    "Database connections open beyond DB_POOL_SIZE, all workers",
    multiprocess_mode="livesum",
)
POOL_WAIT = Histogram(
    "hms_db_pool_wait_seconds",
    "Waits for a free database connection (the count is the number of waits)",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
QUERY_TIME = Histogram(
    "hms_db_query_duration_seconds",
    "SQL statement time, from the cursor's execute to its return",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
POOL_TIMEOUTS = Counter("hms_db_pool_timeouts", "Waits for a connection that timed out (the request got 503)")
SLOW_QUERIES = Counter("hms_db_slow_queries", "Statements slower than SLOW_QUERY_MS, by kind", ["kind"])
TRANSACTIONS = Counter("hms_db_transactions", "Units of work committed and rolled back", ["result"])
RATE_LIMITED = Counter(
    "hms_rate_limit_refusals", "Requests refused by a rate limit (429), by limit", ["limit"]
)

request_log = logging.getLogger("hms.request")
slow_log = logging.getLogger("hms.slowquery")
START_KEY = "hms.started"
UNMATCHED = "(unmatched)"  # 404/405: no route, and the raw path is never a label
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
KINDS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})

# Bound label children, so a request does not validate and look up its labels each time.
_request_children: dict[tuple[str, str, int], tuple] = {}
_cache_children: dict[tuple[str, bool], object] = {}


# --- per request -------------------------------------------------------------------------


class _Timing:
    """The outermost WSGI layer: the request's start time, and the in-flight gauge."""

    __slots__ = ("wsgi_app",)

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        environ[START_KEY] = perf_counter()
        IN_FLIGHT.inc()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            IN_FLIGHT.dec()


def _record(response):
    """After-request hook: count and time the request, and log its line."""
    environ = request.environ
    elapsed = perf_counter() - environ[START_KEY]
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = environ["REQUEST_METHOD"]
    if method not in METHODS:
        method = "other"
    status = response.status_code
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (
            REQUESTS.labels(route, method, str(status)),
            LATENCY.labels(route, method),
        )
    children[0].inc()
    children[1].observe(elapsed)
    if request_log.isEnabledFor(logging.INFO):
        identity = g.get("identity")
        account = getattr(identity, "id", None)
        duration_ms = round(elapsed * 1000, 2)
        request_log.info(
            "%s %s %s %.2f ms account=%s",
            method,
            route,
            status,
            duration_ms,
            account if account is not None else "-",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "account_id": account,
            },
        )
    return response


def init_metrics(app: Flask) -> None:
    """Time and count every request, and watch the app's database engine."""
    app.wsgi_app = _Timing(app.wsgi_app)
    app.after_request(_record)
    with app.app_context():
        watch_engine(db.engine, app.config)


# --- the database ------------------------------------------------------------------------


def statement_kind(statement: str) -> str:
    word = statement.lstrip()[:6].upper()
    return word if word in KINDS else "other"


def watch_engine(engine, config) -> None:
    """Every statement's time (hms_db_query_duration_seconds); slow ones, over
    config["SLOW_QUERY_MS"], logged and counted."""

    def before(conn, cursor, statement, parameters, context, executemany):
        context._hms_started = perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        elapsed = perf_counter() - context._hms_started
        QUERY_TIME.observe(elapsed)
        elapsed_ms = elapsed * 1000
        if elapsed_ms > config["SLOW_QUERY_MS"]:
            slow_query(statement, elapsed_ms)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


def pool_changed(checked_out: int, overflow: int) -> None:
    """The pool (hms/core/dbpool.py) after a connection was taken or given back."""
    POOL_CHECKED_OUT.set(checked_out)
    POOL_OVERFLOW.set(max(0, overflow))


def slow_query(statement: str, elapsed_ms: float) -> None:
    """Count and log a slow statement: its SQL with placeholders, never its parameters
    (they hold patient data). The request id comes with the log record."""
    kind = statement_kind(statement)
    SLOW_QUERIES.labels(kind).inc()
    slow_log.warning(
        "slow query %.1f ms: %s",
        elapsed_ms,
        statement,
        extra={"duration_ms": round(elapsed_ms, 1), "kind": kind, "sql": statement},
    )


def pool_waited(seconds: float, timed_out: bool) -> None:
    POOL_WAIT.observe(seconds)
    if timed_out:
        POOL_TIMEOUTS.inc()


def transaction_ended(committed: bool) -> None:
    TRANSACTIONS.labels("committed" if committed else "rolled_back").inc()


# --- caches, streams, limits ---------------------------------------------------------------


def cache_result(cache: str, hit: bool) -> None:
    """One read of the named cache (a fixed name per cache: "reference", "identity"...)."""
    child = _cache_children.get((cache, hit))
    if child is None:
        child = _cache_children[(cache, hit)] = CACHE.labels(cache, "hit" if hit else "miss")
    child.inc()


def stream_opened() -> None:
    STREAMS_OPEN.inc()


def stream_closed() -> None:
    STREAMS_OPEN.dec()


def stream_refused(reason: str) -> None:
    STREAM_REFUSALS.labels(reason).inc()


def broker_message(direction: str) -> None:
    BROKER_MESSAGES.labels(direction).inc()


def delivered(published_at: float) -> None:
    """A stream handed out an event announced at `published_at` (time.time())."""
    DELIVERY_LAG.observe(max(0.0, time() - published_at))


def rate_limited(limit_name: str) -> None:
    """A request refused by the rate limit `limit_name` (a fixed name, never a key)."""
    RATE_LIMITED.labels(limit_name).inc()


# --- the scrape ----------------------------------------------------------------------------

_LIVE_FILE = re.compile(r"^gauge_livesum_(\d+)\.db$")


class WorkerProcesses:
    """Memory, open files and CPU time of every live worker, read from /proc at scrape
    time (Linux), labelled by pid. In multiprocess mode the client's own process
    collector would report only the worker that answers the scrape. A worker is live
    while its livesum file exists: gunicorn.conf.py's child_exit removes it."""

    def __init__(self, directory: str):
        self.directory = directory

    def pids(self) -> list[int]:
        found = {os.getpid()}
        try:
            names = os.listdir(self.directory)
        except OSError:
            names = []
        for name in names:
            match = _LIVE_FILE.match(name)
            if match:
                found.add(int(match.group(1)))
        return sorted(found)

    def collect(self):
        memory = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of a worker", labels=["pid"]
        )
        files = GaugeMetricFamily("process_open_fds", "Open file descriptors of a worker", labels=["pid"])
        cpu = CounterMetricFamily(
            "process_cpu_seconds", "CPU time (user and system) of a worker", labels=["pid"]
        )
        page = os.sysconf("SC_PAGE_SIZE")
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/statm") as statm:
                    rss = int(statm.read().split()[1]) * page
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile, or not Linux
            label = [str(pid)]
            memory.add_metric(label, rss)
            files.add_metric(label, fds)
            cpu.add_metric(label, (int(fields[11]) + int(fields[12])) / ticks)
        yield memory
        yield files
        yield cpu


def render() -> tuple[bytes, str]:
    """The metrics of every worker (multiprocess mode) or of this process, as Prometheus text."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        registry.register(WorkerProcesses(MULTIPROC_DIR))
    else:
        registry = REGISTRY  # with the client's own process collector
    return generate_latest(registry), CONTENT_TYPE_LATEST
