"""HTTP routes of the prescriptions domain."""

from flask_smorest import Blueprint

blp = Blueprint("prescriptions", __name__, url_prefix="/api", description="prescriptions")
