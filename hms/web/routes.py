"""Server-rendered pages: the session-cookie login and the home page (the waiting-room
display is hms.web.display)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session, url_for

from hms.auth import service
from hms.core.access import page, public
from hms.errors import TooManyRequests, Unauthorized

bp = Blueprint("web", __name__, template_folder="templates")
FORM_EXPIRED = "This form has expired; please try again."


def csrf_token() -> str:
    """The session's CSRF token, for the forms of the pages (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _csrf_ok() -> bool:
    """The form posted the session's own CSRF token (a cross-site form cannot know it)."""
    expected, sent = session.get("csrf"), request.form.get("csrf_token", "")
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), sent.encode())


# Pages run HMS's own scripts and styles only (static files: no inline code, no CDN) and
# may not be framed. The Swagger UI at /api/docs loads from a CDN with inline code: it
# gets only the framing and plug-in rules.
PAGE_CSP = "default-src 'self'; script-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
_DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = DOCS_CSP if request.endpoint == _DOCS_ENDPOINT else PAGE_CSP
    return response


@bp.app_context_processor
def _template_helpers() -> dict:
    return {"csrf_token": csrf_token}


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("web.home")
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    error = None
    status, headers = 200, {}
    if request.method == "POST" and not _csrf_ok():
        error, status = FORM_EXPIRED, 400
    elif request.method == "POST":
        username = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:256]
        try:  # the same limits as POST /api/auth/token
            identity = service.sign_in(username, password, request.remote_addr or "-")
        except TooManyRequests as exc:
            error, status, headers = exc.message, 429, exc.headers
        except Unauthorized as exc:
            error, status = exc.message, 401
        else:
            session.clear()
            session.update(service.new_session(identity))
            session.permanent = True  # the cookie expires with the session (SESSION_HOURS)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, next=request.args.get("next", "")), status, headers


@bp.route("/logout", methods=["POST"])
@public
def logout():
    if not _csrf_ok():
        return render_template("login.html", error=FORM_EXPIRED, next=""), 400
    service.end_session(session)
    session.clear()
    return redirect(url_for("web.login"))


@bp.route("/")
@page("signed_in")
def home():
    return render_template("home.html")
