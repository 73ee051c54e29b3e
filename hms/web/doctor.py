"""The doctor's screen, /doctor: the queue (live), the patient in the room, the Prescription.

A doctor sees their own queue; an admin picks any doctor (?doctor=<id>). Everything
here calls the services directly (never the JSON API over HTTP). The queue list is
rendered from the same snapshot the queue stream sends and then followed live by
hms/web/static/doctor.js; the room panel (/doctor/<id>/room) is server-rendered and
fetched again when the patient in the room changes.

Forms post back here with the session's CSRF token and answer with a redirect to the
screen (post/redirect/get), or the screen again with the refusal in words (4xx). The
Prescription form carries an idempotency key drawn when it is rendered: a double submit,
a resubmit or a retry writes one prescription (the key is claimed in the prescription's
own transaction, as payments do). **Call next** carries the appointment it saw in the
room, so a double click cannot complete the patient it just called.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from hms.appointments.models import COMPLETED, NO_SHOW, WAITING
from hms.appointments.queries import get_appointment, list_patient_appointments
from hms.appointments.service import change_status
from hms.billing.service import patient_due_bills
from hms.core.access import current_identity, page
from hms.core.idempotency import run_once
from hms.core.roles import DOCTOR
from hms.core.settings import setting
from hms.core.time import clinic_today
from hms.errors import Conflict, Forbidden, HMSError, InvalidState, NotFound, ValidationFailed
from hms.prescriptions.service import appointment_prescriptions, create_prescription, patient_prescriptions
from hms.queue import service as queue
from hms.reference.service import RESOURCES, get_item, list_items
from hms.staff.service import doctor_profile, list_doctors
from hms.web.forms import csrf_ok, form_key, posted_key
from hms.web.prescription_form import Line, PrescriptionForm, read_prescription, service_error_words

bp = Blueprint("doctor", __name__, template_folder="templates")

MEDICINES = next(resource for resource in RESOURCES if resource.name == "medicines")
INSTRUCTIONS = next(resource for resource in RESOURCES if resource.name == "medicine-instructions")
HISTORY_ROWS = 5  # past visits, prescriptions and unpaid bills shown in the room panel
SEARCH_RESULTS = 15
FORM_EXPIRED = (
    "This form has expired (the page was open too long or signed out): reload the page and try again."
)
KEY_USED = "This prescription form was already sent with other lines. Reload the page to write another one."
SCREEN_STATUSES = {
    COMPLETED: "completed",
    WAITING: "sent back to the queue",
    NO_SHOW: "marked as not here (no-show)",
}


def clinic_name() -> str:
    return setting("CLINIC_NAME")


# --- choosing the doctor ------------------------------------------------------------------


def _doctor_of_screen(requested: str | None) -> int | None:
    """The doctor whose queue the screen shows: a doctor's own; an admin's choice."""
    identity = current_identity()
    if identity.role == DOCTOR:
        return identity.id
    if requested and requested.isdigit() and 0 < int(requested) < 2**31:
        return int(requested)
    return None


def _doctor_or_404(doctor_id: int) -> dict:
    profile = doctor_profile(doctor_id)
    if profile is None or not profile["active"]:
        abort(404)
    return profile


# --- the screen ---------------------------------------------------------------------------


@bp.route("/doctor")
@page("screens.doctor")
def screen():
    """The doctor's queue and room; an admin picks the doctor first."""
    doctor_id = _doctor_of_screen(request.args.get("doctor"))
    return _render_screen(doctor_id, notice=_notice_from_query())


def _render_screen(
    doctor_id: int | None,
    *,
    notice: dict | None = None,
    error: str | None = None,
    form: PrescriptionForm | None = None,
    status: int = 200,
):
    identity = current_identity()
    doctors = list_doctors(page=1, limit=100)["data"] if identity.role != DOCTOR else []
    if doctor_id is None:
        return render_template(
            "doctor.html", doctor=None, doctors=doctors, clinic=clinic_name(), error=error, notice=None
        ), status
    profile = _doctor_or_404(doctor_id)
    snapshot = queue.get_snapshot(doctor_id, clinic_today()).data()
    room = _room_context(doctor_id, snapshot, form=form, error=error if form is not None else None)
    if form is not None and room["appointment"] is not None and room["may_prescribe"]:
        error = None  # shown above the Prescription form it is about
    return render_template(
        "doctor.html",
        doctor=profile,
        doctors=doctors,
        snapshot=snapshot,
        clinic=clinic_name(),
        notice=notice,
        error=error,
        room=room,
        stream_url=url_for("queue.QueueStreamResource", doctor_id=doctor_id),
    ), status


def _room_context(
    doctor_id: int, snapshot: dict, *, form: PrescriptionForm | None = None, error: str | None = None
) -> dict:
    """The patient in the room with their history (a fixed number of statements)."""
    in_room = snapshot.get("in_consultation")
    context = {
        "doctor_id": doctor_id,
        "appointment": None,
        "may_prescribe": current_identity().role == DOCTOR and current_identity().id == doctor_id,
        "instructions": [],
        "form": form or PrescriptionForm(lines=[Line()]),
        "form_error": error,
        "idempotency_key": form_key(),
    }
    if in_room is None:
        return context
    appointment = get_appointment(in_room["appointment_id"])
    patient_id = appointment["patient"]["id"]
    visits = list_patient_appointments(patient_id, 1, HISTORY_ROWS + 1)
    context.update(
        appointment=appointment,
        past_visits=[visit for visit in visits.data if visit.id != appointment["id"]][:HISTORY_ROWS],
        visits_total=max(visits.total - 1, 0),
        prescriptions=patient_prescriptions(patient_id, page=1, limit=HISTORY_ROWS),
        due_bills=patient_due_bills(patient_id, page=1, limit=HISTORY_ROWS),
        instructions=list_items(INSTRUCTIONS, page=1, limit=100)["data"],
    )
    if form is not None:
        _label_medicines(context["form"])
    return context


def _label_medicines(form: PrescriptionForm) -> None:
    """Show the chosen medicine of each line again after a refusal (cached reads)."""
    for line in form.lines:
        if line.medicine_id.isdigit() and 0 < int(line.medicine_id) < 2**31:
            try:
                line.medicine_label = medicine_label(get_item(MEDICINES, int(line.medicine_id)))
            except NotFound:
                line.medicine_id = ""


def medicine_label(medicine: dict) -> str:
    parts = [medicine["name"], medicine.get("strength"), medicine.get("form")]
    label = " ".join(part for part in parts if part)
    if medicine.get("generic_name"):
        label += f" ({medicine['generic_name']})"
    return label


@bp.route("/doctor/<id:doctor_id>/room")
@page("screens.doctor")
def room(doctor_id: int):
    """The room panel alone: fetched by the screen when the patient in the room changes."""
    if current_identity().role == DOCTOR and doctor_id != current_identity().id:
        abort(403)
    _doctor_or_404(doctor_id)
    snapshot = queue.get_snapshot(doctor_id, clinic_today()).data()
    return render_template("_doctor_room.html", room=_room_context(doctor_id, snapshot))


def _notice_from_query() -> dict | None:
    """What the last action did, shown after its redirect (?done=completed&appointment=7)."""
    done, appointment_id = request.args.get("done"), request.args.get("appointment", "")
    if done not in ("completed", "returned", "no_show", "called", "prescribed"):
        return None
    if not appointment_id.isdigit() or not 0 < int(appointment_id) < 2**31:
        return None
    try:
        appointment = get_appointment(int(appointment_id))
    except NotFound:
        return None
    prescriptions = appointment_prescriptions(appointment["id"], page=1, limit=10).data
    return {"done": done, "appointment": appointment, "prescriptions": prescriptions}


def _back(doctor_id: int, **params):
    args = {"doctor": doctor_id} if current_identity().role != DOCTOR else {}
    return redirect(url_for("doctor.screen", **args, **params))


# --- actions --------------------------------------------------------------------------------


@bp.route("/doctor/<id:doctor_id>/next", methods=["POST"])
@page("appointments.change_status")
def call_next(doctor_id: int):
    """**Call next**: complete the patient in the room (if any) and call the next one."""
    if not csrf_ok():
        return _render_screen(_screen_doctor(doctor_id), error=FORM_EXPIRED, status=400)
    snapshot = queue.get_snapshot(doctor_id, clinic_today()).data()
    seen = request.form.get("in_room", "")
    in_room = snapshot["in_consultation"]
    if seen != (str(in_room["appointment_id"]) if in_room else ""):
        # The screen was behind (or this is a double click): call nobody, show the room.
        message = (
            f"Token {in_room['token']} is in the room now. Press Call next again to call the next patient."
            if in_room
            else "The queue changed while you were looking: nobody is in the room now."
        )
        return _render_screen(_screen_doctor(doctor_id), error=message, status=409)
    try:
        after = queue.call_next(doctor_id, current_identity()).data()
    except Conflict as exc:
        message = (
            "Nobody is waiting: there is no one to call."
            if "Nobody is waiting" in exc.message
            else f"Could not call the next patient: {exc.message}"
        )
        return _render_screen(_screen_doctor(doctor_id), error=message, status=409)
    except Forbidden:
        return _render_screen(
            _screen_doctor(doctor_id), error="You can only call patients from your own queue.", status=403
        )
    called = after["in_consultation"]
    return _back(doctor_id, done="called", appointment=called["appointment_id"])


def _screen_doctor(doctor_id: int) -> int:
    """The doctor the refused form belonged to (a doctor's own, whatever the URL said)."""
    identity = current_identity()
    return identity.id if identity.role == DOCTOR else doctor_id


@bp.route("/doctor/appointments/<id:appointment_id>/status", methods=["POST"])
@page("appointments.change_status")
def set_status(appointment_id: int):
    """**Complete**, **Send back to queue** and **No-show**."""
    identity = current_identity()
    doctor_id = _doctor_from_form(identity)
    if not csrf_ok():
        return _render_screen(doctor_id, error=FORM_EXPIRED, status=400)
    status = request.form.get("status", "")
    if status not in SCREEN_STATUSES:
        return _render_screen(doctor_id, error="Choose Complete, Send back to queue or No-show.", status=400)
    try:
        appointment = change_status(appointment_id, status, None, identity)
    except InvalidState:
        return _render_screen(
            doctor_id,
            error="That patient's visit has moved on (someone else changed it): the screen now shows the queue as it is.",
            status=409,
        )
    except Forbidden:
        return _render_screen(doctor_id, error="You can only change patients in your own queue.", status=403)
    except NotFound:
        return _render_screen(doctor_id, error="That appointment no longer exists.", status=404)
    done = {COMPLETED: "completed", WAITING: "returned", NO_SHOW: "no_show"}[status]
    return _back(appointment["doctor_id"], done=done, appointment=appointment_id)


def _doctor_from_form(identity) -> int | None:
    if identity.role == DOCTOR:
        return identity.id
    value = request.form.get("doctor_id", "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**31 else None


@bp.route("/doctor/appointments/<id:appointment_id>/prescriptions", methods=["POST"])
@page("prescriptions.write")
def prescribe(appointment_id: int):
    """Save the **Prescription** (once per rendered form: its idempotency key)."""
    identity = current_identity()
    if not csrf_ok():
        return _render_screen(identity.id, error=FORM_EXPIRED, status=400)
    key = posted_key()
    form = read_prescription(request.form)
    if key is None:
        form.errors.append(FORM_EXPIRED)
    if form.errors:
        return _render_screen(identity.id, form=form, error=" ".join(form.errors), status=422)
    try:
        prescription_id = _write_once(appointment_id, form.data, key)
    except HMSError as exc:
        status = exc.status_code
        if isinstance(exc, InvalidState):
            message = "The prescription was not saved: this patient is no longer in consultation."
        elif isinstance(exc, Forbidden):
            message = "Only the patient's own doctor can write this prescription."
        elif isinstance(exc, NotFound):
            message = "The prescription was not saved: that appointment no longer exists."
        elif isinstance(exc, ValidationFailed) and exc.errors and "headers" in exc.errors:
            message = KEY_USED
        else:
            message = service_error_words(exc.message, exc.errors)
        return _render_screen(identity.id, form=form, error=message, status=status)
    return _back(identity.id, done="prescribed", appointment=appointment_id, prescription=prescription_id)


def _write_once(appointment_id: int, data: dict, key: str) -> int:
    """Claim the form's key and write the prescription in one transaction (the service's
    unit of work joins it); a replay of the key answers the first prescription's id and
    writes nothing, another prescription under the same key is refused (422)."""
    identity = current_identity()
    answer = run_once(
        "prescription",
        appointment_id,
        data,
        user_id=identity.id,
        key=key,
        work=lambda _: {"prescription_id": create_prescription(appointment_id, data, identity).id},
    )
    return int(answer.body["prescription_id"])


@bp.route("/doctor/medicines")
@page("reference.read")
def medicines():
    """Medicine search for the Prescription form, by brand or generic name (as you type)."""
    q = request.args.get("q", "").strip()[:60]
    if len(q) < 2:
        return jsonify(results=[])
    found = list_items(MEDICINES, q=q, page=1, limit=SEARCH_RESULTS)["data"]
    return jsonify(results=[{"id": item["id"], "label": medicine_label(item)} for item in found])
