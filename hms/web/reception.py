"""The front desk: /reception (reception, admin).

One page with four parts, each a plain form that works without script, with htmx and
reception.js adding results-as-you-type, the keyboard moves and the live queues:

- **Find patient** (GET /reception?q=, and the fragment GET /reception/patients?q= as you
  type): hms.patients.service.search_statement, the same search as GET /api/patients.
- **Register patient** (POST /reception/patients): the API's create schema, then
  **Possible duplicates** (hms.patients.service.find_duplicates) unless staff chose
  "Register anyway", then register_patient_once with the form's idempotency key. The
  answer is a redirect to the page with the new patient chosen for booking.
- **Book** (POST /reception/appointments): the API's booking schema, book_appointment_once
  with the form's key, then a redirect to the page showing the **token slip**; the
  print view is GET /reception/slip/<appointment_id> (?width=80mm for thermal printers).
- **Today's queues**: every active doctor's snapshot (one cached read per doctor), kept
  live by live.js; **Cancel** / **No-show** / **Recall** post to
  /reception/appointments/<id>/status (change_status). Today's no-shows are a fragment
  (GET /reception/no-shows) that the page reloads on each queue event, read from the
  appointments (the snapshot carries only the active ones).

The pages call the services, never the HTTP API. Every POST checks the CSRF token first
(400 without it: nothing is read or written). Errors come back in the clinic's words
(hms.web.forms.clinic_words) beside the form, with what staff typed kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import marshmallow as ma
import segno
from flask import Blueprint, redirect, render_template, request, session, url_for
from sqlalchemy import select

from hms.appointments import service as appointments
from hms.appointments.models import CANCELLED, NO_SHOW, WAITING, Appointment
from hms.appointments.queries import get_appointment
from hms.appointments.schemas import BookingSchema
from hms.core.access import current_identity, page
from hms.core.time import clinic_today, clinic_zone
from hms.errors import HMSError, NotFound
from hms.extensions import db
from hms.patients import service as patients
from hms.patients.models import GENDERS, Patient
from hms.patients.schemas import PatientCreateSchema
from hms.queue import service as queue
from hms.queue import tickets
from hms.staff.service import list_doctors
from hms.web.forms import FORM_EXPIRED, clinic_words, csrf_ok, field_words, form_key, posted_key

bp = Blueprint("reception", __name__, url_prefix="/reception", template_folder="templates")

RESULTS_SHOWN = 10
NO_SHOWS_SHOWN = 100
DOCTORS_SHOWN = 100
# Print widths of the token slip: ?width= -> the CSS class of the page.
SLIP_WIDTHS = {"a5": "A5", "80mm": "80 mm"}
# The status buttons: the status they set and the words on them.
STATUS_ACTIONS = {"CANCELLED": "Cancel", "NO_SHOW": "No-show", "WAITING": "Recall"}
# Where each button may be pressed (anything else is refused before the service).
_FROM = {"CANCELLED": WAITING, "NO_SHOW": WAITING, "WAITING": NO_SHOW}
_DONE_WORDS = {CANCELLED: "cancelled", NO_SHOW: "marked no-show", WAITING: "recalled to the end of the line"}
_DIGITS = re.compile(r"^\d{1,9}$")
_USED_KEYS, _KEYS_KEPT = "desk_registered", 10  # the session's last registration keys
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A default minutes per patient when a queue shows no pace yet (hms.queue.snapshot's default).
DEFAULT_MINUTES = 10


@bp.context_processor
def _helpers() -> dict:
    return {"age_of": patients.age_of}


# --- reading -----------------------------------------------------------------------------


def _doctors() -> list[dict]:
    """Active doctors by name (the cached first page of the directory)."""
    return list_doctors(page=1, limit=DOCTORS_SHOWN)["data"]


def _snapshots(doctors: list[dict]) -> dict[int, dict]:
    """Today's full snapshot of each doctor: one cached read per doctor."""
    today = clinic_today()
    return {doctor["id"]: queue.get_snapshot(doctor["id"], today).data() for doctor in doctors}


def wait_for_new(snapshot: dict) -> int:
    """Minutes a patient booked now (NORMAL) would wait: the last waiting patient's
    estimate plus one consultation at the queue's pace (the step between the last two
    estimates), or the pace alone behind the patient in the room; 0 for an empty queue."""
    waits = [e["estimated_wait_minutes"] for e in snapshot["entries"] if e["status"] == WAITING]
    if not waits:
        return DEFAULT_MINUTES if snapshot["in_consultation"] else 0
    step = waits[-1] - waits[-2] if len(waits) >= 2 and waits[-1] > waits[-2] else DEFAULT_MINUTES
    return waits[-1] + step


def _find(q: str) -> list[Patient]:
    q = _CONTROL.sub("", q).strip()[:100]  # PostgreSQL refuses NUL in a text parameter
    if not q:
        return []
    return list(db.session.scalars(patients.search_statement(q).limit(RESULTS_SHOWN)))


def _chosen_patient(raw: str | None) -> Patient | None:
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    try:
        return patients.get_patient(int(raw))
    except NotFound:
        return None


def _today_no_shows() -> list[dict]:
    """Today's no-shows (newest first) with their patients: two statements."""
    rows = appointments_of_today(NO_SHOW)
    if not rows:
        return []
    people = {
        row.id: row
        for row in db.session.execute(
            select(Patient.id, Patient.name, Patient.mrn).where(
                Patient.id.in_({row.patient_id for row in rows})
            )
        )
    }
    return [
        {
            "appointment_id": row.id,
            "doctor_id": row.doctor_id,
            "token": row.token,
            "priority": row.priority,
            "patient": {
                "id": row.patient_id,
                "name": people[row.patient_id].name,
                "mrn": people[row.patient_id].mrn,
            },
        }
        for row in rows
    ]


def appointments_of_today(status: str) -> list[Appointment]:
    stmt = (
        select(Appointment)
        .where(Appointment.appointment_date == clinic_today(), Appointment.status == status)
        .order_by(Appointment.doctor_id, Appointment.token)
        .limit(NO_SHOWS_SHOWN)
    )
    return list(db.session.scalars(stmt))


# --- forms -------------------------------------------------------------------------------


@dataclass
class FormState:
    """What a form shows again after a refusal: the values typed, the messages, the key."""

    values: dict
    errors: dict
    message: str | None
    key: str


def _blank(values: dict | None = None) -> FormState:
    return FormState(values or {}, {}, None, form_key())


def patient_body(form) -> dict:
    """The API's create body from the form: blanks left out, a typed age as a number."""
    body: dict = {}
    for name in ("name", "gender", "date_of_birth", "phone", "address"):
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    age = form.get("age", "").strip()
    if age:
        body["age"] = int(age) if _DIGITS.fullmatch(age) else age
    return body


def booking_body(form) -> dict:
    body: dict = {}
    for name in ("patient_id", "doctor_id"):
        value = form.get(name, "").strip()
        body[name] = int(value) if _DIGITS.fullmatch(value) else value or None
    for name in ("appointment_type", "priority", "chief_complaint"):
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    if body.get("patient_id") is None:
        body.pop("patient_id")
    if body.get("doctor_id") is None:
        body.pop("doctor_id")
    return body


def _refused(state: FormState, error: HMSError | ma.ValidationError) -> FormState:
    state.errors = field_words(error)
    state.message = clinic_words(error)
    return state


def _expired():
    """A POST without the session's CSRF token: nothing read or written."""
    return render_template("reception/_message_page.html", message=FORM_EXPIRED), 400


# --- the page ----------------------------------------------------------------------------


def render_page(
    *,
    status: int = 200,
    patient: Patient | None = None,
    register: FormState | None = None,
    duplicates: list[dict] | None = None,
    book: FormState | None = None,
    booked: dict | None = None,
):
    doctors = _doctors()
    snapshots = _snapshots(doctors)
    q = request.args.get("q", "")[:100]
    return (
        render_template(
            "reception.html",
            q=q,
            results=_find(q) if q else None,
            patient=patient,
            register=register or _blank(),
            duplicates=duplicates,
            book=book or _blank(),
            booked=booked,
            doctors=doctors,
            bookable=[doctor for doctor in doctors if doctor["is_available"]],
            snapshots=snapshots,
            wait_for_new=wait_for_new,
            no_shows=_today_no_shows(),
            doctor_names={doctor["id"]: doctor["name"] for doctor in doctors},
            genders=GENDERS,
            status_actions=STATUS_ACTIONS,
            today=clinic_today(),
        ),
        status,
    )


@bp.route("")
@page("appointments.book")
def index():
    patient = _chosen_patient(request.args.get("patient"))
    booked = None
    booked_id = request.args.get("booked")
    if booked_id and _DIGITS.fullmatch(booked_id):
        try:
            booked = slip_data(int(booked_id))
        except NotFound:
            booked = None
    return render_page(patient=patient, booked=booked)


@bp.route("/patients")
@page("appointments.book")
def find_results():
    """The results fragment, as staff type in Find patient (htmx)."""
    q = request.args.get("q", "")[:100]
    return render_template("reception/_results.html", q=q, results=_find(q) if q.strip() else None)


@bp.route("/no-shows")
@page("appointments.book")
def no_shows():
    """Today's no-shows with their Recall buttons (the page reloads this on queue events)."""
    doctor_names = {doctor["id"]: doctor["name"] for doctor in _doctors()}
    return render_template("reception/_no_shows.html", no_shows=_today_no_shows(), doctor_names=doctor_names)


@bp.route("/patients", methods=["POST"])
@page("patients.write")
def register():
    if not csrf_ok():
        return _expired()
    key = posted_key()
    state = FormState(dict(request.form), {}, None, key or form_key())
    if key is None:
        state.message = FORM_EXPIRED
        return render_page(status=400, register=state)
    try:
        data = PatientCreateSchema().load(patient_body(request.form))
    except ma.ValidationError as error:
        return render_page(status=422, register=_refused(state, error))
    if request.form.get("confirm") != "register-anyway" and key not in session.get(_USED_KEYS, []):
        found = patients.find_duplicates(
            name=data.get("name"),
            phone=data.get("phone"),
            date_of_birth=data.get("date_of_birth"),
            age=data.get("age"),
        )
        if found:
            return render_page(status=200, register=state, duplicates=found)
    try:
        stored = patients.register_patient_once(data, current_identity(), key)
    except HMSError as error:
        return render_page(status=error.status_code, register=_refused(state, error))
    if stored.status >= 400:
        error = HMSError(stored.body.get("message", ""), stored.body.get("errors"))
        return render_page(status=stored.status, register=_refused(state, error))
    # A resubmit of this form (back, reload, a second click) replays the registration
    # at once instead of listing the patient it just made as a possible duplicate.
    session[_USED_KEYS] = [*session.get(_USED_KEYS, [])[-(_KEYS_KEPT - 1) :], key]
    return redirect(url_for("reception.index", patient=stored.body["id"], registered=1))


@bp.route("/appointments", methods=["POST"])
@page("appointments.book")
def book():
    if not csrf_ok():
        return _expired()
    key = posted_key()
    state = FormState(dict(request.form), {}, None, key or form_key())
    patient = _chosen_patient(request.form.get("patient_id"))
    if key is None:
        state.message = FORM_EXPIRED
        return render_page(status=400, patient=patient, book=state)
    try:
        data = BookingSchema().load(booking_body(request.form))
        stored = appointments.book_appointment_once(data, current_identity(), key)
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return render_page(status=status, patient=patient, book=_refused(state, error))
    if stored.status >= 400:
        error = HMSError(stored.body.get("message", ""), stored.body.get("errors"))
        return render_page(status=stored.status, patient=patient, book=_refused(state, error))
    return redirect(url_for("reception.index", booked=stored.body["id"]))


@bp.route("/appointments/<id:appointment_id>/status", methods=["POST"])
@page("appointments.book")
def change_status(appointment_id: int):
    """Cancel, No-show or Recall. With htmx the answer is a message for the page's status
    line (the queues update from the stream); without, a redirect back to the queues."""
    if not csrf_ok():
        return _expired()
    status = request.form.get("status", "")
    htmx = request.headers.get("HX-Request") == "true"
    if status not in STATUS_ACTIONS:
        message, code = "Pick Cancel, No-show or Recall.", 422
    else:
        try:
            changed = appointments.change_status(appointment_id, status, None, current_identity())
        except HMSError as error:
            message, code = clinic_words(error), error.status_code
        else:
            message, code = f"Token {changed['token']} {_DONE_WORDS[status]}.", 200
    if htmx:
        # htmx swaps only 2xx answers by default: a refusal is sent as 200 with the words.
        return render_template("reception/_message.html", message=message, ok=code == 200)
    if code != 200:
        return render_template("reception/_message_page.html", message=message), code
    return redirect(url_for("reception.index") + "#queues")


# --- the token slip ----------------------------------------------------------------------


def slip_data(appointment_id: int) -> dict:
    """What the token slip shows: clinic, token, doctor, room, time, estimated wait, the
    patient's ticket link (absolute) and its QR code as inline SVG."""
    appointment = get_appointment(appointment_id)
    doctor = next((d for d in _doctors() if d["id"] == appointment["doctor_id"]), None) or {}
    entry = None
    if appointment["appointment_date"] == clinic_today():
        snapshot = queue.get_snapshot(appointment["doctor_id"], clinic_today()).data()
        entry = next((e for e in snapshot["entries"] if e["appointment_id"] == appointment_id), None)
    path, expires_at = tickets.ticket_link(appointment_id)
    url = request.host_url.rstrip("/") + path
    qr = segno.make(url, error="m")
    return {
        "appointment": appointment,
        "doctor": appointment["doctor"],
        "room": doctor.get("room"),
        "booked_at": _clinic_time(appointment["created_at"]),
        "date": appointment["appointment_date"],
        "estimated_wait": entry["estimated_wait_minutes"] if entry else None,
        "position": entry["queue_position"] if entry else None,
        "ticket_url": url,
        "ticket_expires": expires_at,
        "qr_svg": qr.svg_inline(scale=5, border=2, dark="#000", light="#fff", title="Your live ticket"),
    }


def _clinic_time(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(clinic_zone()).strftime("%H:%M")


@bp.route("/slip/<id:appointment_id>")
@page("appointments.book")
def slip(appointment_id: int):
    width = request.args.get("width", "a5")
    if width not in SLIP_WIDTHS:
        width = "a5"
    return render_template(
        "reception/slip.html", slip=slip_data(appointment_id), width=width, widths=SLIP_WIDTHS
    )
