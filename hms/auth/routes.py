"""POST /api/auth/token and GET /api/auth/me."""

from flask import request
from flask.views import MethodView

from hms.auth import service
from hms.auth.schemas import LoginSchema, TokenSchema, UserPublicSchema
from hms.core.access import allow, current_identity, public
from hms.core.blueprint import Blueprint

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Sign-in and identity")


@blp.route("/token")
class TokenResource(MethodView):
    @public
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Wrong username or password")
    @blp.alt_response(429, description="Too many sign-in attempts")
    def post(self, credentials):
        """Exchange a username and password for a bearer token"""
        identity = service.sign_in(
            credentials["username"], credentials["password"], request.remote_addr or "-"
        )
        return service.issue_token(identity)


@blp.route("/me")
class MeResource(MethodView):
    @allow("signed_in")
    @blp.response(200, UserPublicSchema)
    def get(self):
        """The current user"""
        return current_identity().public()
