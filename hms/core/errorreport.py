"""Unhandled errors to Sentry, without patient data (only imported when SENTRY_DSN is set).

What is sent: the exception's type and stack trace (no local variables), the route
template (the transaction), the HTTP method and the request id (a tag, to find the
request's log lines). What is not: the exception's message (a database error quotes the
values of the statement), the request's URL, query string, body, headers, cookies, the
user, breadcrumbs and log messages. The SDK reads SENTRY_ENVIRONMENT and SENTRY_RELEASE
from the environment itself.

HMS's error handler answers every unexpected exception with a 500 itself, so Flask never
sees it unhandled: the handler hands it to `report` (hms.errors.register_error_handlers
looks for it in app.extensions).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, has_request_context

from hms.errors import request_id

EXTENSION_KEY = "hms.error_report"


def scrub(event: dict[str, Any], hint: dict | None = None) -> dict[str, Any]:
    """before_send: keep the request's method only; drop user, breadcrumbs, extra
    context and every exception message."""
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = {"method": request["method"]} if "method" in request else {}
    for name in ("user", "breadcrumbs", "extra", "logentry"):
        event.pop(name, None)
    for value in (event.get("exception") or {}).get("values") or ():
        if isinstance(value, dict):
            value["value"] = ""
            for frame in (value.get("stacktrace") or {}).get("frames") or ():
                frame.pop("vars", None)
    if has_request_context():
        event.setdefault("tags", {})["request_id"] = request_id()
    return event


def init_error_reports(app: Flask, dsn: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0,
        before_send=scrub,
        # Log lines are neither events nor breadcrumbs: a message may name a patient.
        integrations=[
            FlaskIntegration(transaction_style="url"),
            LoggingIntegration(level=None, event_level=None),
        ],
    )
    app.extensions[EXTENSION_KEY] = sentry_sdk.capture_exception
