"""HTTP routes of the patients domain."""

from flask_smorest import Blueprint

blp = Blueprint("patients", __name__, url_prefix="/api", description="patients")
