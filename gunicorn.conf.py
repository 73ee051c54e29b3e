"""gunicorn settings, sized for Server-Sent Events on gevent workers.

Each open SSE stream is one gevent greenlet and one socket, not a thread, so a worker
holds thousands: worker_connections caps how many per worker (streams and ordinary
requests together). Raise the process's open-files limit above
workers x worker_connections (see the README). A stream holds no database connection
while it waits, so the SQLAlchemy pool is sized for the REST traffic only.

Without REDIS_URL the broker, the stream limit, the cache and the rate limits live in
the worker's memory, so the embedded default runs exactly one worker: a second one
would neither hear the first one's queue changes nor share its counts.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
if workers > 1 and not os.environ.get("REDIS_URL"):
    logging.getLogger("gunicorn.error").warning(
        "WEB_CONCURRENCY=%s without REDIS_URL: running 1 worker (the in-process broker, "
        "stream limit and cache cannot be shared between processes)",
        workers,
    )
    workers = 1
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# gevent workers notify the arbiter from their own loop, so long-lived streams do not
# trip the timeout; it only catches a worker whose loop is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On shutdown (SIGTERM, or a HUP reload) post_worker_init's watcher ends every open
# stream within about a second with a final comment; browsers reconnect after the
# `retry:` hint, to another worker or instance. The rest of this allowance is for
# ordinary requests still in flight.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket defaults to one path per user, which several instances on
# one host (tests, a blue/green switch) would fight over: off unless a path is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or None
control_socket_disable = control_socket is None
if control_socket is None:
    del control_socket


def _gc_thresholds(value: str) -> tuple[int, int, int] | None:
    """GC_THRESHOLDS="g0,g1,g2" (Python's own: 700,10,10), or "python" to keep Python's."""
    if value.strip().lower() == "python":
        return None
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or min(numbers) < 1:
        raise SystemExit(f"GC_THRESHOLDS must be three positive integers like 50000,20,100, not {value!r}")
    return numbers


# Python's cyclic garbage collector, tuned for a worker that holds thousands of streams.
# With Python's thresholds (700,10,10) a worker busy with requests ran a full collection
# every few seconds, each walking every object of every open stream: with 5,000 streams
# per worker that was 8% of its CPU and pauses of up to 290 ms, during which no stream
# was written and no request answered (measured when a write still cost the workers
# 14-16 ms; with today's cheaper writes bench.stream_gc shows no difference). Larger
# thresholds let request garbage die by reference counting before a collection ever
# looks at it, and gc.freeze() (after the app is loaded) keeps the imported modules out
# of every collection. Objects in reference cycles are still collected, later.
gc_thresholds = _gc_thresholds(os.environ.get("GC_THRESHOLDS", "50000,20,100"))


# Metrics (hms/core/metrics.py): each worker writes its values to files in
# PROMETHEUS_MULTIPROC_DIR, and a scrape of any worker reads them all. Without the
# variable, each start makes its own directory (removed at exit); with it, the directory
# is emptied at start (values of an earlier run would be added to this one's). A
# worker that exits has its live gauges' files removed; its counters stay counted.
_own_metrics_dir: str | None = None


def on_starting(server):
    global _own_metrics_dir
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for old in Path(directory).glob("*.db"):
            old.unlink()
    else:
        _own_metrics_dir = tempfile.mkdtemp(prefix="hms-metrics-")
        # Set before any worker is forked (the app is loaded in the workers, after this).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server):
    if _own_metrics_dir is not None:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def when_ready(server):
    host, _, port = bind.rpartition(":")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    server.log.info("HMS is ready at http://%s:%s/ (API docs at /api/docs)", shown, port)


def post_worker_init(worker):
    """Watch for the worker being told to stop and end its open streams at once.

    gunicorn's gevent worker only closes its listening socket on SIGTERM and then waits
    graceful_timeout for connections to finish, which a stream never does by itself.
    """
    import gevent

    def drain_streams_on_shutdown():
        while worker.alive:
            gevent.sleep(0.25)
        from hms.realtime.broker import close_all_streams

        close_all_streams()

    gevent.spawn(drain_streams_on_shutdown)

    if gc_thresholds is not None:
        import gc

        gc.freeze()  # everything loaded so far (modules, the app) lives as long as the worker
        gc.set_threshold(*gc_thresholds)
