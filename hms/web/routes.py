"""Server-rendered pages: the session-cookie login and the waiting-room display."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for

from hms.auth import service
from hms.core.access import page, public
from hms.errors import TooManyRequests, Unauthorized
from hms.queue import service as queue

bp = Blueprint("web", __name__, template_folder="templates")


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
    if request.method == "POST":
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
            session["uid"] = identity.id
            session["epoch"] = identity.token_epoch
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, next=request.args.get("next", "")), status, headers


@bp.route("/logout", methods=["POST"])
@public
def logout():
    session.clear()
    return redirect(url_for("web.login"))


@bp.route("/")
@page("signed_in")
def home():
    return render_template("home.html")


@bp.route("/display/<id:doctor_id>")
@page("queue.read")
def display(doctor_id: int):
    """The waiting-room screen of one doctor: always masked, live over the queue stream."""
    return render_template(
        "display.html",
        snapshot=queue.display_snapshot(doctor_id),
        stream_url=url_for("queue.QueueStreamResource", doctor_id=doctor_id),
    )
