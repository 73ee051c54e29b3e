"""The cashier's till: /cashier (cashier, admin).

- **Bills to collect** (GET /cashier?q=, and the fragment GET /cashier/bills?q= as staff
  type and whenever the bills change): hms.billing.service.bills_to_collect. Without a
  search, today's unpaid and partly paid bills; a search (MRN, phone, patient name or
  bill number) finds that patient's bills of any day. Kept live by cashier.js on ONE
  stream, GET /api/bills/stream (billing's "bills changed" topic: no doctor's queue).
- **A bill** (GET /cashier?bill=<id>): its items, payments and due amount; **Take
  payment** (POST /cashier/bills/<id>/payments) with the form's idempotency key, so a
  double submit pays once; **Print receipt** (GET /cashier/bills/<id>/receipt, A5 or
  ?width=80mm); **Add prescribed medicines** (POST /cashier/bills/<id>/prescribed,
  hms.prescriptions.service.bill_prescribed). Admin also sees **Refund** and **Void**
  (their POSTs are admin only: 403 for a cashier).
- **Cash-up**: the signed-in account's payments and refunds today, per method
  (hms.reports.service.cash_up, the same figures as the admin's cash-up report).

Every POST checks the CSRF token first (400 without it: nothing is read or written) and
answers a redirect back to the bill (the page shows what happened), or the page again
with the refusal in the clinic's words beside the form and what was typed kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import marshmallow as ma
from flask import Blueprint, redirect, render_template, request, url_for

from hms.billing import service as billing
from hms.billing.models import PAID, PARTIALLY_PAID, PAYMENT_METHODS, UNPAID, VOID
from hms.billing.schemas import PaymentInSchema, RefundInSchema, VoidInSchema
from hms.core.access import current_identity, page
from hms.core.idempotency import StoredResponse, configured_ttl
from hms.core.roles import may
from hms.core.time import clinic_today, clinic_zone
from hms.errors import HMSError, NotFound
from hms.patients.service import get_patient
from hms.prescriptions import service as prescriptions
from hms.reports import service as reports
from hms.reports.tables import METHOD_LABELS
from hms.web.forms import FORM_EXPIRED, clinic_words, csrf_ok, field_words, form_key, posted_key

bp = Blueprint("cashier", __name__, url_prefix="/cashier", template_folder="templates")

BILLS_SHOWN = 50
RECEIPT_WIDTHS = {"a5": "A5", "80mm": "80 mm"}
STATUS_WORDS = {UNPAID: "Unpaid", PARTIALLY_PAID: "Partly paid", PAID: "Paid", VOID: "Void"}
RECEIPT_MARKS = {UNPAID: "UNPAID", PARTIALLY_PAID: "PARTLY PAID", PAID: "PAID", VOID: "VOID"}
_DIGITS = re.compile(r"^\d{1,9}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MORE_THAN_DUE = re.compile(r"More than the due amount \((?P<due>[0-9.]+)\)")
_MORE_THAN_PAID = re.compile(r"More than what was paid \((?P<paid>[0-9.]+)\)")
_DONE = {
    "paid": "Payment recorded.",
    "refunded": "Refund recorded.",
    "voided": "Bill voided.",
    "prescribed": "Prescribed medicines added to the bill.",
}


@dataclass
class FormState:
    """What a form shows again after a refusal: the values typed, the messages, the key."""

    values: dict
    errors: dict
    message: str | None
    key: str


def _blank() -> FormState:
    return FormState({}, {}, None, form_key())


@bp.context_processor
def _helpers() -> dict:
    return {
        "status_words": STATUS_WORDS,
        "clinic_time": _clinic_time,
        "clinic_zone": clinic_zone(),
        "is_admin": may(current_identity().role, "bills.refund"),
    }


def _clinic_time(moment) -> str:
    return moment.astimezone(clinic_zone()).strftime("%H:%M")


def _query() -> str:
    # PostgreSQL refuses NUL in a text parameter; a search is short.
    return _CONTROL.sub("", request.args.get("q", "")).strip()[:100]


def _chosen_bill(raw: str | None):
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    try:
        return billing.get_bill(int(raw))
    except NotFound:
        return None


def render_page(
    *,
    status: int = 200,
    bill=None,
    pay: FormState | None = None,
    refund: FormState | None = None,
    void: FormState | None = None,
    message: str | None = None,
):
    q = _query()
    patient = get_patient(bill.patient_id) if bill is not None else None
    unbilled = prescriptions.unbilled_lines(bill.appointment_id) if bill is not None else []
    return (
        render_template(
            "cashier.html",
            q=q,
            bills=billing.bills_to_collect(q, limit=BILLS_SHOWN),
            shown=BILLS_SHOWN,
            bill=bill,
            patient=patient,
            unbilled=unbilled,
            unbilled_total=sum((line.amount for line in unbilled), Decimal("0.00")),
            pay=pay or _blank(),
            refund=refund or _blank(),
            void=void or _blank(),
            methods=PAYMENT_METHODS,
            message=message,
            done=_DONE.get(request.args.get("done", "")),
            cash_up=_my_cash_up(current_identity().id, clinic_today()),
            method_labels=METHOD_LABELS,
            today=clinic_today(),
        ),
        status,
    )


def _my_cash_up(cashier_id: int, day: date) -> dict:
    """The signed-in cashier's row of the day's cash-up report: methods, payments, refunds, net."""
    return reports.cash_up(day, day, cashier_id=cashier_id)["cashiers"][0]


@bp.route("")
@page("screens.cashier")
def index():
    return render_page(bill=_chosen_bill(request.args.get("bill")))


@bp.route("/bills")
@page("screens.cashier")
def bills():
    """The Bills to collect fragment: as staff type, and on every "bills changed" event."""
    q = _query()
    return render_template(
        "cashier/_bills.html",
        q=q,
        bills=billing.bills_to_collect(q, limit=BILLS_SHOWN),
        shown=BILLS_SHOWN,
        chosen=request.args.get("bill", ""),
    )


def _expired():
    """A POST without the session's CSRF token: nothing read or written."""
    return render_template("reception/_message_page.html", message=FORM_EXPIRED), 400


def _back(bill_id: int, done: str):
    return redirect(url_for("cashier.index", bill=bill_id, done=done))


def _money_words(error: HMSError | ma.ValidationError) -> str:
    """The clinic's words, with the amount staff may take or give back."""
    fields = error.messages if isinstance(error, ma.ValidationError) else (error.errors or {})
    text = str(fields)
    due = _MORE_THAN_DUE.search(text)
    if due:
        if Decimal(due["due"]) == 0:
            return "This bill is already paid."
        return f"Amount: more than the due amount: at most {due['due']}."
    paid = _MORE_THAN_PAID.search(text)
    if paid:
        return f"Amount: more than was paid: at most {paid['paid']}."
    return clinic_words(error)


def _refused(bill_id: int, form: str, state: FormState, error: HMSError | ma.ValidationError, status: int):
    state.errors = field_words(error)
    state.message = _money_words(error)
    bill = _chosen_bill(str(bill_id))
    if bill is None:
        raise NotFound("Bill not found.")
    return render_page(status=status, bill=bill, **{form: state})


def _stored_error(stored: StoredResponse) -> HMSError:
    return HMSError(stored.body.get("message", ""), stored.body.get("errors"))


def _form_text(name: str, limit: int) -> str | None:
    value = request.form.get(name, "").strip()
    return value[:limit] if value else None


@bp.route("/bills/<id:bill_id>/payments", methods=["POST"])
@page("screens.cashier")
def take_payment(bill_id: int):
    if not csrf_ok():
        return _expired()
    key = posted_key()
    state = FormState(dict(request.form), {}, None, key or form_key())
    if key is None:
        state.message = FORM_EXPIRED
        return _refused_plain(bill_id, "pay", state, 400)
    body = {
        "amount": request.form.get("amount", "").strip()[:40],
        "method": request.form.get("method", "")[:20],
    }
    reference = _form_text("reference", 200)
    if reference is not None:
        body["reference"] = reference
    try:
        data = PaymentInSchema().load(body)
        stored = billing.take_payment(
            bill_id, data, current_identity(), key, idempotency_ttl=configured_ttl()
        )
    except ma.ValidationError as error:
        return _refused(bill_id, "pay", state, error, 422)
    except HMSError as error:
        return _refused(bill_id, "pay", state, error, error.status_code)
    if stored.status >= 400:
        return _refused(bill_id, "pay", state, _stored_error(stored), stored.status)
    return _back(bill_id, "paid")


def _refused_plain(bill_id: int, form: str, state: FormState, status: int):
    bill = _chosen_bill(str(bill_id))
    if bill is None:
        raise NotFound("Bill not found.")
    return render_page(status=status, bill=bill, **{form: state})


@bp.route("/bills/<id:bill_id>/refunds", methods=["POST"])
@page("bills.refund")
def refund(bill_id: int):
    if not csrf_ok():
        return _expired()
    key = posted_key()
    state = FormState(dict(request.form), {}, None, key or form_key())
    if key is None:
        state.message = FORM_EXPIRED
        return _refused_plain(bill_id, "refund", state, 400)
    body = {
        "amount": request.form.get("amount", "").strip()[:40],
        "reason": _CONTROL.sub("", request.form.get("reason", "")).strip()[:600],
        "method": request.form.get("method", "OTHER")[:20],
    }
    try:
        data = RefundInSchema().load(body)
        stored = billing.refund(bill_id, data, current_identity(), key, idempotency_ttl=configured_ttl())
    except ma.ValidationError as error:
        return _refused(bill_id, "refund", state, error, 422)
    except HMSError as error:
        return _refused(bill_id, "refund", state, error, error.status_code)
    if stored.status >= 400:
        return _refused(bill_id, "refund", state, _stored_error(stored), stored.status)
    return _back(bill_id, "refunded")


@bp.route("/bills/<id:bill_id>/void", methods=["POST"])
@page("bills.refund")
def void(bill_id: int):
    if not csrf_ok():
        return _expired()
    state = FormState(dict(request.form), {}, None, form_key())
    body = {"reason": _CONTROL.sub("", request.form.get("reason", "")).strip()[:600]}
    try:
        data = VoidInSchema().load(body)
        billing.void_bill(bill_id, data, current_identity())
    except ma.ValidationError as error:
        return _refused(bill_id, "void", state, error, 422)
    except HMSError as error:
        if isinstance(error, NotFound):
            raise
        return _refused(bill_id, "void", state, error, error.status_code)
    return _back(bill_id, "voided")


@bp.route("/bills/<id:bill_id>/prescribed", methods=["POST"])
@page("screens.cashier")
def prescribed(bill_id: int):
    """Add prescribed medicines: one transaction; a second click finds nothing left."""
    if not csrf_ok():
        return _expired()
    try:
        prescriptions.bill_prescribed(bill_id, current_identity())
    except HMSError as error:
        if isinstance(error, NotFound):
            raise
        bill = _chosen_bill(str(bill_id))
        return render_page(status=error.status_code, bill=bill, message=clinic_words(error))
    return _back(bill_id, "prescribed")


# --- the receipt ---------------------------------------------------------------------------


@bp.route("/bills/<id:bill_id>/receipt")
@page("screens.cashier")
def receipt(bill_id: int):
    """The receipt to print: clinic, bill number, patient, items, payments, due and a
    PAID / PARTLY PAID / UNPAID mark; A5, or ?width=80mm for a thermal printer."""
    width = request.args.get("width", "a5")
    if width not in RECEIPT_WIDTHS:
        width = "a5"
    bill = billing.get_bill(bill_id)  # NotFound -> 404
    return render_template(
        "cashier/receipt.html",
        bill=bill,
        patient=get_patient(bill.patient_id),
        mark=RECEIPT_MARKS[bill.status],
        width=width,
        widths=RECEIPT_WIDTHS,
    )
