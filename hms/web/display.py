"""The waiting-room display: /display/<doctor_id> and /display?doctors=1,2,3.

Any role may open it and it is always masked (initials only), whatever the role. One
doctor or several side by side, all followed live over ONE stream of their queues
(/api/queue/stream?doctors=..., hms/web/static/display.js): one of the browser's few
connections to the host and one of the account's stream slots, whatever the number of
doctors. One screen shows at most MAX_DOCTORS doctors, to stay readable across the room
at 1280x720; more is refused with a 400 that says so. The screen chimes
(Web Audio, after a "Turn on sound" press the browser needs once) and flashes the token
when a patient is called, marks urgent tokens in words, and shows "Reconnecting…" on a
doctor whose stream is down.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from hms.core.access import page
from hms.core.settings import setting
from hms.errors import NotFound
from hms.queue import service as queue
from hms.staff.service import list_doctors

bp = Blueprint("display", __name__, template_folder="templates")
MAX_ID = 2**31 - 1


def _refused(message: str, status: int):
    return render_template("page_error.html", title="Waiting-room display", message=message), status


MAX_DOCTORS = 10  # side by side, still readable across a waiting room at 1280x720


def _max_doctors() -> int:
    return MAX_DOCTORS


@bp.route("/display/<id:doctor_id>")
@page("queue.read")
def one(doctor_id: int):
    """The waiting-room screen of one doctor."""
    return _render([doctor_id])


@bp.route("/display")
@page("queue.read")
def several():
    """The waiting-room screen of several doctors side by side (?doctors=1,2,3)."""
    raw = request.args.get("doctors", "").strip()
    example = "/display?doctors=1,2,3"
    if not raw:
        return _refused(f"Choose the doctors to show: add their numbers to the address, e.g. {example}.", 400)
    limit = _max_doctors()
    if raw == "all":  # every active doctor, by name (the home page's "All doctors")
        doctors = list_doctors(page=1, limit=limit + 1)["data"]
        if len(doctors) > limit:
            return _too_many(limit)
        return _render([doctor["id"] for doctor in doctors])
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not all(part.isdigit() and 0 < int(part) <= MAX_ID for part in parts[:100]) or len(parts) > 100:
        return _refused(f"Doctors are given by their numbers separated by commas, e.g. {example}.", 400)
    doctor_ids = list(dict.fromkeys(int(part) for part in parts))
    if len(doctor_ids) > limit:
        return _too_many(limit)
    return _render(doctor_ids)


def _too_many(limit: int):
    return _refused(
        f"One screen shows at most {limit} doctors, so that it stays readable across the room:"
        " list the doctors to show, e.g. /display?doctors=1,2,3, and split them over two screens.",
        400,
    )


def _render(doctor_ids: list[int]):
    if not doctor_ids:
        return _refused("There are no doctors yet: ask the administrator to add them.", 404)
    snapshots = []
    for doctor_id in doctor_ids:
        try:
            snapshots.append(queue.display_snapshot(doctor_id))
        except NotFound:
            return _refused(f"There is no doctor number {doctor_id}: check the screen's address.", 404)
    panels = [{"snapshot": snapshot} for snapshot in snapshots]
    ids = ",".join(str(snapshot["doctor"]["id"]) for snapshot in snapshots)
    return render_template(
        "display.html",
        stream_url=url_for("queue.QueuesStreamResource", doctors=ids),
        clinic=setting("CLINIC_NAME"),
        panels=panels,
        snapshots=snapshots,
        shown=6 if len(panels) <= 2 else 5 if len(panels) <= 4 else 3,
    )
