"""gunicorn settings, sized for Server-Sent Events on gevent workers.

Each open SSE stream is one gevent greenlet and one socket, not a thread, so a worker
holds thousands: worker_connections caps how many per worker. Raise the process's
open-files limit above workers x worker_connections (see the README).
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# gevent workers notify the arbiter from their own loop, so long-lived streams do not
# trip the timeout; it only catches a worker whose loop is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On shutdown open streams get this long to finish; they end with a retry hint and
# browsers reconnect to another worker or instance.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def when_ready(server):
    host, _, port = bind.rpartition(":")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    server.log.info("HMS is ready at http://%s:%s/ (API docs at /api/docs)", shown, port)
