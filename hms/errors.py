"""Domain errors and their one mapping to the error body of API.md.

Services raise these; they never import Flask's request layer. `register_error_handlers`
turns each into flask-smorest's error body, and a unique-key IntegrityError into 409.
"""

from __future__ import annotations

import logging
import os
import re

from flask import g, has_request_context, request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, default_exceptions

from hms.extensions import db

log = logging.getLogger(__name__)


class HMSError(Exception):
    status_code = 400

    def __init__(self, message: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers


class NotFound(HMSError):
    status_code = 404


class Forbidden(HMSError):
    status_code = 403


class Unauthorized(HMSError):
    status_code = 401


class Conflict(HMSError):
    """The request is valid but conflicts with the current state (409)."""

    status_code = 409


class InvalidState(Conflict):
    """An illegal status transition (409)."""


class ValidationFailed(HMSError):
    """Input that is well-formed but wrong for this resource (422)."""

    status_code = 422

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(message, errors={"json": {field: [message]}})


class TooManyRequests(HMSError):
    status_code = 429

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def http_error(status_code: int, message: str, errors: dict | None = None, headers=None):
    """Build the werkzeug exception flask-smorest renders as the error body."""
    exc = default_exceptions[status_code]()
    exc.data = {"message": message}
    if errors:
        exc.data["errors"] = errors
    if headers:
        exc.data["headers"] = headers
    return exc


REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = "request_id"  # its name in flask.g
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# A sane id: the characters proxies and tracers use (nginx's $request_id is 32 hex digits,
# a UUID, "host:trace.span"...), at most 128 of them. Anything else (a line break, a
# quote, markup) is replaced: it goes into every log line of the request.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """The request's id (in flask.g): the client's or proxy's X-Request-ID when it is a
    sane token, else a new one (128 random bits as 32 hex digits, like uuid4().hex), the
    same for every log line and the answer. hms.core.requestid sends it back and stamps
    the log records with it. Runs on every request: the proxies are resolved once each
    (an attribute read through a werkzeug proxy costs about 3 us; resolving it, 0.3 us)."""
    request_g = g._get_current_object()
    rid = request_g.__dict__.get(_REQUEST_ID)
    if rid is None:
        given = request._get_current_object().environ.get(_REQUEST_ID_ENVIRON)
        rid = given if given and _SAFE_ID.fullmatch(given) else os.urandom(16).hex()
        setattr(request_g, _REQUEST_ID, rid)
    return rid


def request_context() -> str:
    """' [GET /api/patients account=3 request=ab12…]' in a request, '' outside one."""
    if not has_request_context():
        return ""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    identity = g.get("identity")
    account = getattr(identity, "id", None)
    return (
        f" [{request.method} {rule} account={account if account is not None else '-'} request={request_id()}]"
    )


def register_error_handlers(app, api) -> None:
    def render(exc: HTTPException):
        return api.handle_http_exception(exc)

    @app.errorhandler(HMSError)
    def handle_domain_error(err: HMSError):
        return render(http_error(err.status_code, err.message, err.errors, err.headers))

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(err: IntegrityError):
        db.session.rollback()
        log.info("integrity error mapped to 409: %s", err.orig)
        return render(http_error(409, "This conflicts with an existing record."))

    @app.errorhandler(OperationalError)
    def handle_operational_error(err: OperationalError):
        db.session.rollback()
        log.exception("database unavailable%s", request_context())
        return render(
            http_error(503, "The database is unavailable; try again shortly.", headers={"Retry-After": "1"})
        )

    @app.errorhandler(PoolTimeout)
    def handle_pool_timeout(err: PoolTimeout):
        # Every pooled connection stayed busy for pool_timeout: overload, not a bug.
        log.warning("database connection pool exhausted: %s", err)
        return render(http_error(503, "The server is busy; try again shortly.", headers={"Retry-After": "1"}))

    @app.errorhandler(Exception)
    def handle_unexpected(err: Exception):
        if isinstance(err, HTTPException):
            return render(err)
        log.exception("unhandled error%s", request_context())
        report = app.extensions.get("hms.error_report")  # Sentry, when SENTRY_DSN is set
        if report is not None:
            report(err)
        return render(http_error(500, "Internal server error."))
