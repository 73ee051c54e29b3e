"""Readiness: can this process reach its database and (if configured) Redis?"""

from __future__ import annotations

import logging

import redis
from sqlalchemy import text

from hms.core.settings import setting
from hms.extensions import db

log = logging.getLogger(__name__)


def readiness() -> tuple[dict, bool]:
    report = {"database": "ok", "redis": "disabled"}
    try:
        # A connection of its own, returned at once: no session transaction to end.
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness: database unreachable", exc_info=True)
        report["database"] = "unavailable"
    url = setting("REDIS_URL")
    if url:
        try:
            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            client.ping()
            client.close()
            report["redis"] = "ok"
        except Exception:  # noqa: BLE001
            log.warning("readiness: redis unreachable", exc_info=True)
            report["redis"] = "unavailable"
    ready = report["database"] == "ok" and report["redis"] in ("ok", "disabled")
    return report, ready
