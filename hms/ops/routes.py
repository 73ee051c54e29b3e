"""Liveness and readiness probes (no authentication)."""

from flask import Blueprint

from hms.core.access import public
from hms.ops import service

bp = Blueprint("ops", __name__)
# API.md: every 503 carries Retry-After; a dependency coming back takes a few seconds.
READYZ_RETRY_AFTER_SECONDS = 5


@bp.get("/healthz")
@public
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
@public
def readyz():
    report, ready = service.readiness()
    if ready:
        return report, 200
    return report, 503, {"Retry-After": str(READYZ_RETRY_AFTER_SECONDS)}
