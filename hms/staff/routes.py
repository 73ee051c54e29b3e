"""HTTP routes of the staff domain."""

from flask_smorest import Blueprint

blp = Blueprint("staff", __name__, url_prefix="/api", description="staff")
