"""X-Request-ID on every answer, and on every log record of the request.

The id itself is `hms.errors.request_id()` (below core, so the error handlers' log lines
use it too): the client's or proxy's X-Request-ID when sane, else 32 new random hex digits, drawn
once per request and kept in flask.g. `init_request_id(app)`, run by the app factory:
- every response (API, pages, errors, 404s, static files, streams) carries it, set by an
  after-request hook: one dict lookup and one header per request;
- `RequestIdFilter` stamps each log record with `request_id` ("-" outside a request), on
  every handler of the root logger (the app's log lines propagate there), so a log
  format can show `%(request_id)s`. It costs nothing per request, a little per record.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, has_request_context

from hms.errors import REQUEST_ID_HEADER, request_id

NO_REQUEST = "-"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record (the request's id, or "-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id() if has_request_context() else NO_REQUEST
        return True


_FILTER = RequestIdFilter()


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger), once each."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _send_request_id(response: Response) -> Response:
    # add, not set: nothing else sets this header, and set scans and rebuilds the list.
    response.headers.add(REQUEST_ID_HEADER, request_id())
    return response


def init_request_id(app: Flask) -> None:
    app.after_request(_send_request_id)
    install_log_filter()
