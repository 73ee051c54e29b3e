"""HTTP routes of the prescriptions domain."""

from flask.views import MethodView

from hms.billing.schemas import BillSchema
from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import PageQuery
from hms.prescriptions import service
from hms.prescriptions.schemas import PrescriptionCreateSchema, PrescriptionPageSchema, PrescriptionSchema

blp = Blueprint("prescriptions", __name__, url_prefix="/api", description="prescriptions")


@blp.route("/appointments/<id:appointment_id>/prescriptions")
class AppointmentPrescriptions(MethodView):
    @allow("appointments.read")
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, PrescriptionPageSchema)
    @blp.alt_response(404, description="Unknown appointment")
    def get(self, query, appointment_id):
        """An appointment's prescriptions, in the order they were written"""
        return service.appointment_prescriptions(appointment_id, **query).as_dict()

    @allow("prescriptions.write")
    @blp.arguments(PrescriptionCreateSchema)
    @blp.response(201, PrescriptionSchema)
    @blp.alt_response(403, description="Not the appointment's own doctor")
    @blp.alt_response(404, description="Unknown appointment")
    @blp.alt_response(409, description="The appointment is not IN_CONSULTATION or COMPLETED")
    @blp.alt_response(422, description="Invalid input, unknown medicine or instruction")
    def post(self, data, appointment_id):
        """Write a prescription for an appointment (its own doctor only)"""
        return service.create_prescription(appointment_id, data, current_identity())


@blp.route("/prescriptions/<id:prescription_id>")
class PrescriptionById(MethodView):
    @allow("appointments.read")
    @blp.response(200, PrescriptionSchema)
    @blp.alt_response(404, description="Unknown prescription")
    def get(self, prescription_id):
        """One prescription with its items"""
        return service.get_prescription(prescription_id)


@blp.route("/bills/<id:bill_id>/prescribed-items")
class BillPrescribedItems(MethodView):
    @allow("bills.write")
    @blp.response(201, BillSchema)
    @blp.alt_response(403, description="A doctor billing someone else's appointment")
    @blp.alt_response(404, description="Unknown bill")
    @blp.alt_response(
        409,
        description="The bill is PAID or VOID, has no appointment, or its prescription lines are all billed",
    )
    def post(self, bill_id):
        """Add the bill's appointment's prescribed medicines not billed yet (catalogue unit
        price x quantity; each prescription line is billed at most once, ever)"""
        return service.bill_prescribed(bill_id, current_identity())
