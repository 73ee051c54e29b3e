"""HTTP routes of the reference domain."""

from flask_smorest import Blueprint

blp = Blueprint("reference", __name__, url_prefix="/api", description="reference")
