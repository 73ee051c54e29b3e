"""Liveness and readiness probes, and the Prometheus metrics (no authentication)."""

import hmac
from ipaddress import ip_address

from flask import Blueprint, Response, current_app, request

from hms.core import metrics as hms_metrics
from hms.core.access import public
from hms.errors import Forbidden
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


@bp.get("/metrics")
@public
def metrics():
    """Every worker's metrics (docs/operations.md): from loopback, or with the token."""
    if not (_from_loopback() or _has_metrics_token()):
        raise Forbidden("Metrics are served to loopback, or with Authorization: Bearer $METRICS_TOKEN.")
    body, content_type = hms_metrics.render()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def _from_loopback() -> bool:
    # A request forwarded by a proxy HMS was not told to trust (TRUSTED_PROXY_COUNT=0)
    # comes from the proxy's address, often loopback: its real client is unknown.
    if "X-Forwarded-For" in request.headers and not current_app.config.get("TRUSTED_PROXY_COUNT"):
        return False
    try:
        return ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _has_metrics_token() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return False
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
