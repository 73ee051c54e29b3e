"""HTTP routes of the billing domain."""

from flask_smorest import Blueprint

blp = Blueprint("billing", __name__, url_prefix="/api", description="billing")
