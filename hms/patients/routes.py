"""HTTP routes of the patients domain: register, search, read and update patients, and
the duplicate check before registering.

POST /api/patients takes an `Idempotency-Key` header (hms.core.idempotency): a retry
with the same key and body answers the first registration, marked with
`Idempotent-Replayed: true`, and creates nothing."""

from flask import jsonify
from flask.views import MethodView

from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.core.fields import IdempotencyHeaderSchema
from hms.core.idempotency import StoredResponse
from hms.patients import service
from hms.patients.schemas import (
    DuplicatesQuery,
    DuplicatesSchema,
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
    'is known. phone is stored in E.164 ("+919845011223"): one typed without + takes the '
    "clinic's country code (CLINIC_COUNTRY_CODE); a number that is not possible for its "
    "country is 422."
)
SEARCH_RULES = (
    "q is matched by its shape, one predicate each (so every search uses an index): "
    '"P000012" or "p12" -> that exact MRN; only digits, spaces and + ( ) - . / -> a phone '
    'prefix: with a leading + (or 00), of the E.164 number ("+91 98450" finds '
    '+919845011223); without, of the number without its country code ("98450", a trunk 0 '
    'ignored) or with it ("9198450"); anything else -> part of the name, case-insensitive '
    'and accents ignored ("jose" finds José). Without q: every patient. Newest first.'
)
DUPLICATE_RULES = (
    "Up to 10 registered patients who may be the one about to be registered, best first, "
    "each with its reason: same_phone (the phone as registration would store it), "
    "similar_name_same_birth_year (a similar name, accents and case ignored, born the same "
    "year: from date_of_birth, or from age to within one year), same_name (the same name, "
    "any birth year). date_of_birth wins over age. No parameters: an empty list."
)


def _answer(result: StoredResponse):
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return jsonify(result.body), result.status, headers


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
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(PatientCreateSchema)
    @blp.response(201, PatientSchema)
    @blp.alt_response(422, description="Invalid input, or an Idempotency-Key reused with another body")
    def post(self, headers, data):
        """Register a patient (the MRN is assigned by the system; Idempotency-Key makes retries safe)"""
        key = headers.get("idempotency_key")
        return _answer(service.register_patient_once(data, current_identity(), key))


@blp.route("/patients/duplicates")
class PatientDuplicatesResource(MethodView):
    @allow("patients.read")
    @blp.doc(description=DUPLICATE_RULES)
    @blp.arguments(DuplicatesQuery, location="query")
    @blp.response(200, DuplicatesSchema)
    def get(self, query):
        """Possible duplicates of a patient about to be registered, best first"""
        return {"data": service.find_duplicates(**query)}


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
