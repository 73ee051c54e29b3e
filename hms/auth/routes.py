"""POST /api/auth/token and GET /api/auth/me."""

from flask import current_app, request
from flask.views import MethodView
from flask_limiter.util import get_remote_address

from hms.auth import service
from hms.auth.schemas import LoginSchema, TokenSchema, UserPublicSchema
from hms.core.access import allow, current_identity, public
from hms.core.blueprint import Blueprint
from hms.extensions import limiter

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Sign-in and identity")


def _login_username() -> str:
    body = request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    return "login-user:" + (str(username).strip().lower()[:64] if username else "-")


def _login_client() -> str:
    return "login-client:" + (get_remote_address() or "-")


def _failed(response) -> bool:
    return response.status_code == 401


@blp.route("/token")
class TokenResource(MethodView):
    decorators = [
        limiter.limit(
            lambda: current_app.config["LOGIN_LIMIT_PER_USERNAME"],
            key_func=_login_username,
            deduct_when=_failed,
        ),
        limiter.limit(
            lambda: current_app.config["LOGIN_LIMIT_PER_CLIENT"], key_func=_login_client, deduct_when=_failed
        ),
    ]

    @public
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Wrong username or password")
    @blp.alt_response(429, description="Too many failed sign-ins")
    def post(self, credentials):
        """Exchange a username and password for a bearer token"""
        identity = service.authenticate(credentials["username"], credentials["password"])
        return service.issue_token(identity)


@blp.route("/me")
class MeResource(MethodView):
    @allow("signed_in")
    @blp.response(200, UserPublicSchema)
    def get(self):
        """The current user"""
        return current_identity().public()
