"""HTTP routes of the realtime domain."""

from flask_smorest import Blueprint

blp = Blueprint("realtime", __name__, url_prefix="/api", description="realtime")
