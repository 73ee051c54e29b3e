"""HTTP routes of the patients domain: register, search, read and update patients."""

from flask.views import MethodView

from hms.core.access import allow
from hms.core.blueprint import Blueprint
from hms.patients import service
from hms.patients.schemas import (
    PatientCreateSchema,
    PatientPageSchema,
    PatientSchema,
    PatientSearchQuery,
    PatientUpdateSchema,
)

blp = Blueprint("patients", __name__, url_prefix="/api", description="patients")

AGE_RULES = (
    "date_of_birth (YYYY-MM-DD) must be between 1900-01-01 and today; age is 0..150. "
    "When date_of_birth is given without age, the age is derived from it; when both are "
    "given they must agree, else 422. The returned age is today's age when date_of_birth "
    "is known. phone is stored normalized: digits with an optional leading +."
)
SEARCH_RULES = (
    "q is matched by its shape, one predicate each (so every search uses an index): "
    '"P000012" or "p12" -> that exact MRN; only digits, spaces, + - ( ) -> prefix of the '
    "normalized phone (digits with an optional leading +); anything else -> part of the "
    "name, case-insensitive. Without q: every patient. Newest first."
)


@blp.route("/patients")
class PatientsResource(MethodView):
    @allow("patients.read")
    @blp.doc(description=SEARCH_RULES)
    @blp.arguments(PatientSearchQuery, location="query")
    @blp.response(200, PatientPageSchema)
    def get(self, query):
        """Search patients by exact MRN, phone prefix or part of the name, newest first"""
        return service.search_patients(query.get("q"), query["page"], query["limit"]).as_dict()

    @allow("patients.write")
    @blp.doc(description=AGE_RULES)
    @blp.arguments(PatientCreateSchema)
    @blp.response(201, PatientSchema)
    def post(self, data):
        """Register a patient (the MRN is assigned by the system)"""
        return service.register_patient(data)


@blp.route("/patients/<id:patient_id>")
class PatientResource(MethodView):
    @allow("patients.read")
    @blp.response(200, PatientSchema)
    @blp.alt_response(404, description="Unknown patient")
    def get(self, patient_id):
        """One patient"""
        return service.get_patient(patient_id)

    @allow("patients.write")
    @blp.doc(description=AGE_RULES + " Sending mrn is a 422: it is never editable.")
    @blp.arguments(PatientUpdateSchema)
    @blp.response(200, PatientSchema)
    @blp.alt_response(404, description="Unknown patient")
    def patch(self, data, patient_id):
        """Change a patient's details (not the MRN)"""
        return service.update_patient(patient_id, data)
