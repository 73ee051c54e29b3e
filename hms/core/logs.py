"""The log format: one JSON object per line (LOG_FORMAT=json, production's default) or
plain text (LOG_FORMAT=text, the embedded default's). Both show the request id of the
line's request ("-" outside one; hms/core/requestid.py stamps every record).

JSON lines carry time (UTC, ISO 8601), level, logger, message, request_id and pid, plus
whatever the line adds: the per-request line of `hms.request` has method, route,
status, duration_ms and account_id; the slow-query line duration_ms, kind and sql.
"""

from __future__ import annotations

import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
LOG_FORMATS = ("json", "text")


def log_formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "{levelname}{name}{message}{request_id}{process}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            timestamp="time",
        )
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {kind!r}")


def configure_logging(kind: str, level: int = logging.INFO) -> None:
    """One handler on the root logger, to standard error, in the given format (once:
    an app built again in the same process keeps the handler it has)."""
    formatter = log_formatter(kind)
    # Neither format shows threads or multiprocessing names: not looked up for each record
    # (under gevent a thread's name is a greenlet lookup; a few microseconds per line).
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
