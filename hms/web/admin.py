"""The administrator's console: /admin (admin only).

- **/admin**: the admin's home: **Staff**, **Reference data**, **Reports** (the reports
  pages, hms.web.reports) and the **Screens** (the other consoles and a waiting-room
  display per doctor).
- **Staff** (/admin/staff): the accounts by name (filter by role, search name or
  username, 20 a page) and **Add staff member**; one account's page
  (/admin/staff/<id>) changes its name and department and a doctor's specialization,
  fees, room and availability, **Disable account** / **Enable account**, and **Reset
  password**. Everything goes through hms.staff.service, as PATCH /api/staff does:
  disabling an account or changing its password ends its tokens and sessions at once.
- **Reference data** is hms.web.admin_reference.

A reset password is typed by the admin, or left blank: then one is drawn
(RESET_PASSWORD_WORDS) and shown once on the answer page, never stored or sent again.

Every form posts the session's CSRF token (400 without it: nothing read or written);
the creating form carries an idempotency key drawn at render (create_staff_once), so a
double submit makes one account. Errors come back beside their fields in the clinic's
words (admin_words), with what the admin typed kept (never a password).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import marshmallow as ma
from flask import Blueprint, make_response, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from hms.core.access import current_identity, page
from hms.core.roles import DOCTOR, ROLES
from hms.errors import Conflict, HMSError, ValidationFailed
from hms.reference.service import RESOURCES, list_items
from hms.staff import service as staff
from hms.staff.schemas import StaffCreateSchema, StaffUpdateSchema
from hms.web.forms import FIELD_LABELS, FORM_EXPIRED, clinic_words, csrf_ok, field_words, form_key, posted_key
from hms.web.routes import screens_for

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

PAGE_SIZE = 20
CHOICES_SHOWN = 100  # departments and specializations offered in the pickers
DOCTORS_SHOWN = 100  # waiting-room display links on the home page
DIGITS = re.compile(r"^\d{1,9}$")
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read out loud
RESET_PASSWORD_LENGTH = 12
# The catalogues' names on the screens (hms.web.admin_reference), by resource.
CATALOGUE_TITLES = {
    "departments": "Departments",
    "specializations": "Specializations",
    "test-types": "Test types",
    "medicines": "Medicines",
    "medicine-instructions": "Medicine instructions",
    "categories": "Bill categories",
}
DOCTOR_FIELDS = ("specialization_id", "consultation_fee", "hospital_fee", "room")

# The labels of the console's fields, for the sentence above a refused form.
LABELS = {
    **FIELD_LABELS,
    "username": "Username",
    "password": "Password",
    "role": "Role",
    "department_id": "Department",
    "specialization_id": "Specialization",
    "consultation_fee": "Consultation fee",
    "hospital_fee": "Hospital fee",
    "room": "Room",
    "is_available": "Taking bookings",
    "price": "Price",
    "generic_name": "Generic name",
    "form": "Form",
    "strength": "Strength",
    "unit_price": "Unit price",
    "text": "Instruction",
}
# The services' messages (a prefix, case-insensitive) -> what to tell the admin; what is
# not here goes through hms.web.forms' own table.
ADMIN_WORDS: tuple[tuple[str, str], ...] = (
    ("Must be a decimal amount", "Enter an amount like 150.00"),
    ("Must not be negative", "An amount cannot be negative"),
    ("Must be at most 9999999999.99", "Use an amount up to 9999999999.99"),
    ("At most two decimal places", "Use at most two decimals"),
    ("Length must be between 8", "Use 8 to 256 characters"),
    ("3 to 64 characters among", "Use 3 to 64 of a-z, 0-9, dot, dash or underscore"),
    ("Only doctors have", "Only doctors have this: leave it empty for this role"),
    ("Unknown department", "Pick a department from the list"),
    ("Unknown specialization", "Pick a specialization from the list"),
    ("Longer than maximum length", "This is too long"),
    ("At most 40 characters", "Use at most 40 characters"),
    ("You cannot disable your own account", "You cannot disable your own account or change your own role"),
    ("Your own account changed", "Your own account changed meanwhile: sign in again"),
    ("No staff member with this id", "This account no longer exists"),
)
USERNAME_TAKEN = "This username is taken: choose another"
KEY_USED = "This form was already sent with other values; it is reset: fill it in again."


@dataclass
class FormState:
    """What a form shows: the values typed, the messages by field, the sentence, the key."""

    values: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    message: str | None = None
    key: str = field(default_factory=form_key)


def admin_words(error: HMSError | ma.ValidationError) -> tuple[dict[str, str], str]:
    """({field: what to do}, one sentence) for a refused form, in the clinic's words."""
    fields = {name: _word(words) for name, words in field_words(error).items()}
    if fields:
        sentence = "; ".join(
            f"{LABELS.get(name, name.replace('_', ' ').capitalize())}: {w}" for name, w in fields.items()
        )
        return fields, sentence + "."
    if isinstance(error, HMSError) and not error.errors:
        return {}, _word(error.message) + "."
    return {}, clinic_words(error)


def _word(message: str) -> str:
    lowered = message.lower()
    for prefix, words in ADMIN_WORDS:
        if lowered.startswith(prefix.lower()):
            return words
    return message.rstrip(".")


def refused(state: FormState, error: HMSError | ma.ValidationError) -> FormState:
    if isinstance(error, ValidationFailed) and error.errors and "headers" in error.errors:
        return FormState(message=KEY_USED)  # the key was used for another body
    state.errors, state.message = admin_words(error)
    return state


def expired():
    """A POST without the session's CSRF token: nothing read or written."""
    return render_template("page_error.html", title="Administration", message=FORM_EXPIRED), 400


def page_number() -> int:
    raw = request.args.get("page", "1")
    return min(int(raw), 100_000) if DIGITS.fullmatch(raw) and int(raw) > 0 else 1


def pages(meta: dict) -> dict:
    """The pager's numbers: this page, the last one, whether there is a previous/next."""
    last = max(1, -(-meta["total"] // meta["limit"]))
    return {"page": meta["page"], "last": last, "total": meta["total"]}


def form_id(form, name: str) -> int | str | None:
    """A picked id as a number (a select's value), anything else as typed, blank: None."""
    value = form.get(name, "").strip()
    if not value:
        return None
    return int(value) if DIGITS.fullmatch(value) else value


# --- home ------------------------------------------------------------------------------


@bp.route("")
@page("screens.admin")
def home():
    """The admin's home: Staff, Reference data, Reports, and the screens."""
    doctors = staff.list_doctors(page=1, limit=DOCTORS_SHOWN)["data"]
    screens = [s for s in screens_for(current_identity().role) if s[0] not in ("/", "/admin")]
    return render_template(
        "admin/home.html", resources=RESOURCES, titles=CATALOGUE_TITLES, doctors=doctors, role_screens=screens
    )


# --- staff -----------------------------------------------------------------------------


def _choices(name: str) -> list[dict]:
    resource = next(r for r in RESOURCES if r.name == name)
    return list_items(resource, page=1, limit=CHOICES_SHOWN)["data"]


def _staff_page(*, status: int = 200, create: FormState | None = None):
    role = request.args.get("role", "")
    role = role if role in ROLES else ""
    q = request.args.get("q", "").replace("\x00", "").strip()[:100]
    listing = staff.list_staff(role=role or None, q=q or None, page=page_number(), limit=PAGE_SIZE)
    departments = _choices("departments")
    return (
        render_template(
            "admin/staff.html",
            rows=listing["data"],
            pager=pages(listing["meta"]),
            role=role,
            q=q,
            roles=ROLES,
            departments=departments,
            department_names={d["id"]: d["name"] for d in departments},
            specializations=_choices("specializations"),
            create=create or FormState(values={"is_available": "on"}),
        ),
        status,
    )


@bp.route("/staff")
@page("staff.manage")
def staff_list():
    return _staff_page()


def _create_body(form) -> dict:
    body: dict = {name: form.get(name, "").strip() for name in ("username", "name", "role")}
    body["password"] = form.get("password", "")
    body = {name: value for name, value in body.items() if value}
    department = form_id(form, "department_id")
    if department is not None:
        body["department_id"] = department
    specialization = form_id(form, "specialization_id")
    if specialization is not None:
        body["specialization_id"] = specialization
    for name in ("consultation_fee", "hospital_fee", "room"):
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    return body


@bp.route("/staff", methods=["POST"])
@page("staff.manage")
def staff_create():
    """Add staff member: one account per rendered form (its idempotency key)."""
    if not csrf_ok():
        return expired()
    key = posted_key()
    values = {name: value for name, value in request.form.items() if name != "password"}
    state = FormState(values=values, key=key or form_key())
    if key is None:
        state.message = FORM_EXPIRED
        return _staff_page(status=400, create=state)
    try:
        data = StaffCreateSchema().load(_create_body(request.form))
        if data["role"] == DOCTOR:
            data["is_available"] = request.form.get("is_available") == "on"
        answer = staff.create_staff_once(data, current_identity(), key)
    except (Conflict, IntegrityError):  # the one conflict: the username (IntegrityError: a race)
        state.errors = {"username": USERNAME_TAKEN}
        state.message = f"Username: {USERNAME_TAKEN}."
        return _staff_page(status=409, create=state)
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return _staff_page(status=status, create=refused(state, error))
    return redirect(url_for("admin.staff_account", staff_id=answer.body["id"], added=1))


def _account_page(
    user,
    *,
    status: int = 200,
    details: FormState | None = None,
    notice: str | None = None,
    password: FormState | None = None,
    new_password: str | None = None,
    access: str | None = None,
):
    if details is None:
        values = {name: getattr(user, name) for name in ("name", "department_id", *DOCTOR_FIELDS)}
        values = {name: ("" if value is None else str(value)) for name, value in values.items()}
        if user.is_available:
            values["is_available"] = "on"
        details = FormState(values=values)
    response = make_response(
        render_template(
            "admin/staff_account.html",
            user=user,
            is_doctor=user.role == DOCTOR,
            departments=_choices("departments"),
            specializations=_choices("specializations"),
            details=details,
            password=password or FormState(),
            new_password=new_password,
            notice=notice,
            access=access,
            is_me=user.id == current_identity().id,
        ),
        status,
    )
    if new_password is not None:
        response.headers["Cache-Control"] = "no-store"  # shown once: never from a cache
    return response


_DONE = {
    "added": "Account added. They can sign in now.",
    "saved": "Changes saved.",
    "disabled": "Account disabled: its sessions have ended and it cannot sign in.",
    "enabled": "Account enabled: it can sign in again.",
    "reset": "Password changed: the old one no longer works and its sessions have ended.",
}


@bp.route("/staff/<id:staff_id>")
@page("staff.manage")
def staff_account(staff_id: int):
    user = _existing(staff_id)
    if user is None:
        return _gone()
    done = next((words for name, words in _DONE.items() if request.args.get(name)), None)
    return _account_page(user, notice=done)


def _existing(staff_id: int):
    try:
        return staff.get_staff(staff_id)
    except HMSError:
        return None


def _gone():
    return render_template("page_error.html", title="Staff", message="This account no longer exists."), 404


def _update_body(form, is_doctor: bool) -> dict:
    body: dict = {"name": form.get("name", "").strip(), "department_id": form_id(form, "department_id")}
    if is_doctor:
        body["specialization_id"] = form_id(form, "specialization_id")
        for fee in ("consultation_fee", "hospital_fee"):
            body[fee] = form.get(fee, "").strip() or "0"
        body["room"] = form.get("room", "")
        body["is_available"] = form.get("is_available") == "on"
    return body


@bp.route("/staff/<id:staff_id>", methods=["POST"])
@page("staff.manage")
def staff_update(staff_id: int):
    """Details: name, department; a doctor's specialization, fees, room, availability."""
    if not csrf_ok():
        return expired()
    user = _existing(staff_id)
    if user is None:
        return _gone()
    state = FormState(values=dict(request.form))
    try:
        changes = StaffUpdateSchema().load(_update_body(request.form, user.role == DOCTOR))
        staff.update_staff(staff_id, changes, current_identity())
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return _account_page(_existing(staff_id) or user, status=status, details=refused(state, error))
    return redirect(url_for("admin.staff_account", staff_id=staff_id, saved=1))


@bp.route("/staff/<id:staff_id>/active", methods=["POST"])
@page("staff.manage")
def staff_active(staff_id: int):
    """Disable account (its tokens and sessions end at once) or Enable account."""
    if not csrf_ok():
        return expired()
    user = _existing(staff_id)
    if user is None:
        return _gone()
    active = request.form.get("active") == "1"
    try:
        staff.update_staff(staff_id, {"active": active}, current_identity())
    except HMSError as error:
        return _account_page(user, status=error.status_code, access=admin_words(error)[1])
    return redirect(
        url_for("admin.staff_account", staff_id=staff_id, **{"enabled" if active else "disabled": 1})
    )


def new_password() -> str:
    """A password to read out: RESET_PASSWORD_LENGTH letters and digits, unambiguous."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(RESET_PASSWORD_LENGTH))


@bp.route("/staff/<id:staff_id>/password", methods=["POST"])
@page("staff.manage")
def staff_password(staff_id: int):
    """Reset password: the one typed, or a drawn one shown once on this answer."""
    if not csrf_ok():
        return expired()
    user = _existing(staff_id)
    if user is None:
        return _gone()
    typed = request.form.get("password", "")
    password = typed or new_password()
    try:
        StaffUpdateSchema().load({"password": password})
        staff.update_staff(staff_id, {"password": password}, current_identity())
    except (ma.ValidationError, HMSError) as error:
        status = error.status_code if isinstance(error, HMSError) else 422
        return _account_page(user, status=status, password=refused(FormState(), error))
    if typed:
        return redirect(url_for("admin.staff_account", staff_id=staff_id, reset=1))
    return _account_page(user, notice=_DONE["reset"], new_password=password)
