"""HTTP routes of the billing domain: bills, items, payments, refunds, voids.

Lists answer full bills (items and payments included) in a fixed number of statements.
Payments and refunds accept an `Idempotency-Key` header; their answer is built (and
stored with the key) inside the service's transaction, so a replay returns the very
same status and body, marked with `Idempotent-Replayed: true`.
"""

from flask import current_app, jsonify
from flask.views import MethodView

from hms.auth.access import current_session_id
from hms.billing import service
from hms.billing.changes import open_bills_stream
from hms.billing.cli import purge_command
from hms.billing.schemas import (
    BillCreateSchema,
    BillItemsAddSchema,
    BillListQuery,
    BillPageSchema,
    BillSchema,
    IdempotencyHeaderSchema,
    PaymentInSchema,
    RefundInSchema,
    VoidInSchema,
)
from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import NoQuery, PageQuery
from hms.core.idempotency import StoredResponse, ttl_from
from hms.realtime.stream import sse_response

blp = Blueprint("billing", __name__, url_prefix="/api", description="billing")
blp.cli.add_command(purge_command)  # flask --app wsgi billing purge-idempotency-keys


def _answer(result: StoredResponse):
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return jsonify(result.body), result.status, headers


@blp.route("/bills")
class Bills(MethodView):
    @allow("bills.read")
    @blp.arguments(BillListQuery, location="query")
    @blp.response(200, BillPageSchema)
    def get(self, query):
        """List bills (filter by status, patient, overdue), newest first"""
        return service.list_bills(**query).as_dict()

    @allow("bills.write")
    @blp.arguments(BillCreateSchema)
    @blp.response(201, BillSchema)
    @blp.alt_response(403, description="A doctor billing someone else's appointment")
    @blp.alt_response(422, description="Invalid input, unknown patient, appointment or catalogue item")
    def post(self, data):
        """Open a bill with its items"""
        return service.create_bill(data, current_identity())


@blp.route("/bills/stream")
class BillsStream(MethodView):
    @allow("bills.read")
    @blp.arguments(NoQuery, location="query")
    @blp.doc(
        description=(
            "Server-Sent Events: `retry: <ms>`, then `event: bills` at once and again after every "
            "committed change of any bill (opened by a booking or by hand, items added, a payment "
            'or refund, a void). Its data is `{"version": n}`, a number that only grows; it '
            "names no bill: the client reads the bills it shows again. Counted in the account's "
            "SSE_MAX_CONNECTIONS_PER_ACCOUNT; it takes no doctor's stream slot."
        ),
        responses={
            "200": {
                "description": "text/event-stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    @blp.alt_response(429, description="The account's stream limit is full")
    def get(self, _query):
        """Follow changes of the bills live (Server-Sent Events)"""
        return sse_response(open_bills_stream(current_identity(), current_session_id()))


@blp.route("/bills/<id:bill_id>")
class BillById(MethodView):
    @allow("bills.read")
    @blp.response(200, BillSchema)
    @blp.alt_response(404, description="Unknown bill")
    def get(self, bill_id):
        """One bill with its items and payments"""
        return service.get_bill(bill_id)


@blp.route("/bills/<id:bill_id>/items")
class BillItems(MethodView):
    @allow("bills.write")
    @blp.arguments(BillItemsAddSchema)
    @blp.response(201, BillSchema)
    @blp.alt_response(409, description="The bill is PAID or VOID")
    def post(self, data, bill_id):
        """Add items to a bill"""
        return service.add_items(bill_id, data, current_identity())


@blp.route("/bills/<id:bill_id>/payments")
class BillPayments(MethodView):
    @allow("bills.pay")
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(PaymentInSchema)
    @blp.response(201, BillSchema)
    @blp.alt_response(409, description="The bill is VOID")
    @blp.alt_response(422, description="Invalid amount, more than the due amount, or a reused key")
    def post(self, headers, data, bill_id):
        """Take a payment (at most the due amount; Idempotency-Key makes retries safe)"""
        key = headers.get("idempotency_key")
        ttl = ttl_from(current_app.config)
        return _answer(service.take_payment(bill_id, data, current_identity(), key, idempotency_ttl=ttl))


@blp.route("/bills/<id:bill_id>/refunds")
class BillRefunds(MethodView):
    @allow("bills.refund")
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(RefundInSchema)
    @blp.response(201, BillSchema)
    @blp.alt_response(409, description="The bill is VOID")
    @blp.alt_response(422, description="Invalid amount, more than was paid, or a reused key")
    def post(self, headers, data, bill_id):
        """Refund money paid on a bill (append-only REFUND row)"""
        key = headers.get("idempotency_key")
        ttl = ttl_from(current_app.config)
        return _answer(service.refund(bill_id, data, current_identity(), key, idempotency_ttl=ttl))


@blp.route("/bills/<id:bill_id>/void")
class BillVoid(MethodView):
    @allow("bills.refund")
    @blp.arguments(VoidInSchema)
    @blp.response(200, BillSchema)
    @blp.alt_response(409, description="Money was paid, or the bill is already VOID")
    def post(self, data, bill_id):
        """Void a bill with nothing paid"""
        return service.void_bill(bill_id, data, current_identity())


@blp.route("/appointments/<id:appointment_id>/bills")
class AppointmentBills(MethodView):
    @allow("bills.read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, BillPageSchema)
    @blp.alt_response(404, description="Unknown appointment")
    def get(self, query, appointment_id):
        """An appointment's bills, newest first"""
        return service.appointment_bills(appointment_id, **query).as_dict()


@blp.route("/patients/<id:patient_id>/bills")
class PatientBills(MethodView):
    @allow("bills.read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, BillPageSchema)
    @blp.alt_response(404, description="Unknown patient")
    def get(self, query, patient_id):
        """A patient's bills, newest first"""
        return service.patient_bills(patient_id, **query).as_dict()
