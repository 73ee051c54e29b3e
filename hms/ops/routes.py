"""Liveness and readiness probes (no authentication)."""

from flask import Blueprint

from hms.core.access import public
from hms.ops import service

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@public
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
@public
def readyz():
    report, ready = service.readiness()
    return report, 200 if ready else 503
