"""HTTP routes of the staff domain: staff accounts (admin) and the doctor directory."""

from flask.views import MethodView

from hms.core.access import allow, current_identity
from hms.core.blueprint import Blueprint
from hms.staff import service
from hms.staff.schemas import (
    DoctorPageSchema,
    DoctorQuery,
    DoctorSchema,
    StaffCreateSchema,
    StaffPageSchema,
    StaffQuery,
    StaffSchema,
    StaffUpdateSchema,
)

blp = Blueprint("staff", __name__, url_prefix="/api", description="Staff accounts and doctors")


@blp.route("/staff")
class StaffCollection(MethodView):
    @allow("staff.manage")
    @blp.arguments(StaffQuery, location="query")
    @blp.response(200, StaffPageSchema)
    def get(self, query):
        """List staff accounts by name (filter by role, search name or username)"""
        return service.list_staff(**query)

    @allow("staff.manage")
    @blp.arguments(StaffCreateSchema)
    @blp.response(201, StaffSchema)
    @blp.alt_response(409, description="Username taken")
    def post(self, data):
        """Create a staff account (a doctor is an account with role doctor)"""
        return service.create_staff(data)


@blp.route("/staff/<id:staff_id>")
class StaffItem(MethodView):
    @allow("staff.manage")
    @blp.response(200, StaffSchema)
    def get(self, staff_id):
        """One staff account"""
        return service.get_staff(staff_id)

    @allow("staff.manage", "staff.set_availability")
    @blp.arguments(StaffUpdateSchema)
    @blp.response(200, StaffSchema)
    @blp.alt_response(403, description="A doctor may set only their own is_available")
    @blp.alt_response(409, description="An admin cannot disable or demote themselves")
    def patch(self, changes, staff_id):
        """Change a staff account; disabling it or changing its password ends its tokens"""
        return service.update_staff(staff_id, changes, current_identity())


@blp.route("/doctors")
class DoctorCollection(MethodView):
    @allow("reference.read")
    @blp.arguments(DoctorQuery, location="query")
    @blp.response(200, DoctorPageSchema)
    def get(self, query):
        """List active doctors by name (filter by department, specialization, availability)"""
        return service.list_doctors(**query)


@blp.route("/doctors/<id:doctor_id>")
class DoctorItem(MethodView):
    @allow("reference.read")
    @blp.response(200, DoctorSchema)
    def get(self, doctor_id):
        """One active doctor with their department, specialization and fees"""
        return service.get_doctor(doctor_id)
