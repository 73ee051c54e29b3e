"""Bare extension instances, bound to the app in create_app()."""

from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


_DEFAULT_MESSAGES = {400: "Malformed request body: see errors.", 422: "Invalid input: see errors."}


class HMSApi(Api):
    """flask-smorest's Api with a `message` on every error body.

    webargs' 400 for malformed JSON and werkzeug's 404/405 carry no message of their
    own; the contract promises one on every error.
    """

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        default = _DEFAULT_MESSAGES.get(code) if "errors" in payload else None
        payload.setdefault("message", default or error.description or error.name)
        if code == 429 and "Retry-After" not in headers:
            retry_after = getattr(error, "retry_after", None)
            headers = {**headers, "Retry-After": str(retry_after or 60)}
        return payload, code, headers


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = HMSApi()
cache = Cache()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
