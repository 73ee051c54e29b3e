"""Server-rendered pages: the session-cookie login and `/` (each role to its screen).
The shared page helpers (CSRF, idempotency keys, errors in the clinic's words) are in
hms.web.forms; the header's screen links in SCREENS below. The waiting-room display is
hms.web.display."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from hms.auth import service
from hms.core.access import current_identity, page, public
from hms.core.roles import ADMIN, CASHIER, DISPLAY, DOCTOR, RECEPTION, may
from hms.core.settings import setting
from hms.errors import TooManyRequests, Unauthorized
from hms.staff.service import list_doctors
from hms.web.forms import FORM_EXPIRED, csrf_ok, csrf_token, form_key

bp = Blueprint("web", __name__, template_folder="templates")

# The staff screens, in the header's order: (path, label, the action that opens it). A
# screen shows in the header when its route exists (the screens arrive one branch at a
# time) and the signed-in role may do its action.
SCREENS: tuple[tuple[str, str, str], ...] = (
    ("/reception", "Reception", "appointments.book"),
    ("/doctor", "Doctor", "prescriptions.write"),
    ("/cashier", "Cashier", "screens.cashier"),
    ("/admin", "Admin", "screens.admin"),
    ("/", "Home", "signed_in"),
)
# Where `/` sends each role (its own screen); a role not listed, or whose screen is not
# built yet, gets the index of the screens it may use.
HOME_SCREEN = {RECEPTION: "/reception", DOCTOR: "/doctor", CASHIER: "/cashier", ADMIN: "/admin"}
_DOCTOR_SCREEN_ROLES = {DOCTOR, ADMIN}


def _route_exists(path: str, method: str = "GET") -> bool:
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(path, method=method)
    except HTTPException:
        return False
    return True


def screens_for(role: str) -> list[tuple[str, str]]:
    """(path, label) of the screens this role may open, in the header's order."""
    shown = []
    for path, label, action in SCREENS:
        if path == "/doctor" and role in _DOCTOR_SCREEN_ROLES and _route_exists(path):
            shown.append((path, label))  # the admin's doctor picker; the matrix row is doctors only
        elif may(role, action) and _route_exists(path):
            shown.append((path, label))
    return shown


# Pages run HMS's own scripts and styles only (static files: no inline code, no CDN) and
# may not be framed. The Swagger UI at /api/docs is vendored and started by a static
# script too; it also shows data: images (its icons, in its CSS) and sets styles from
# script, which CSP allows.
PAGE_CSP = "default-src 'self'; script-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
)
_DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    # Added, not set: nothing else sends these, and setting scans every header. The
    # Content-Type is compared as text (response.mimetype would parse it on every answer).
    headers = response.headers
    headers.add("X-Frame-Options", "DENY")
    headers.add("X-Content-Type-Options", "nosniff")
    if headers.get("Content-Type", "").startswith("text/html"):
        headers["Content-Security-Policy"] = DOCS_CSP if request.endpoint == _DOCS_ENDPOINT else PAGE_CSP
    return response


@bp.record_once
def _serve_docs_offline(state) -> None:
    """/api/docs renders HMS's own page (api_docs.html: the vendored Swagger UI started by
    a static script) instead of flask-smorest's template, whose inline script the CSP
    would block. The route, its endpoint and its public policy stay flask-smorest's."""
    if _DOCS_ENDPOINT in state.app.view_functions:
        state.app.view_functions[_DOCS_ENDPOINT] = api_docs


def api_docs():
    return render_template(
        "api_docs.html", title=current_app.config["API_TITLE"], spec_url=url_for("api-docs.openapi_json")
    )


@bp.app_context_processor
def _template_helpers() -> dict:
    identity = g.get("identity")
    return {
        "csrf_token": csrf_token,
        "form_key": form_key,
        "clinic_name": setting("CLINIC_NAME"),
        "me": identity,
        "screens": screens_for(identity.role) if identity is not None else [],
    }


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
    if request.method == "POST" and not csrf_ok():
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
    if not csrf_ok():
        return render_template("login.html", error=FORM_EXPIRED, next=""), 400
    service.end_session(session)
    session.clear()
    return redirect(url_for("web.login"))


@bp.route("/")
@page("signed_in")
def home():
    """Each role to its own screen; admin, display (and a role whose screen is not built
    yet) get an index: the screens they may use and a waiting-room display per doctor."""
    role = current_identity().role
    target = HOME_SCREEN.get(role)
    if target is not None and _route_exists(target):
        return redirect(target)
    doctors = list_doctors(page=1, limit=100)["data"] if may(role, "queue.read") else []
    return render_template(
        "home.html",
        doctors=doctors,
        several_displays=_route_exists("/display"),
        role_screens=[screen for screen in screens_for(role) if screen[0] != "/"],
        display_only=role == DISPLAY,
    )
