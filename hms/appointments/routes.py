"""HTTP routes of the appointments domain."""

from flask_smorest import Blueprint

blp = Blueprint("appointments", __name__, url_prefix="/api", description="appointments")
