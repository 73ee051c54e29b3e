"""HMS: a hospital and clinic management backend. `create_app()` builds the Flask app."""

from __future__ import annotations

from inspect import CO_COROUTINE
from pathlib import Path
from types import FunctionType

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, get_config
from hms import (
    models,  # noqa: F401 - every table known to SQLAlchemy and Alembic
    realtime,
)
from hms.appointments.routes import blp as appointments
from hms.auth import service as auth_service
from hms.auth.access import check_policies, init_access
from hms.auth.ratelimit import check_settings as check_rate_limit_settings
from hms.auth.routes import blp as auth
from hms.billing.routes import blp as billing
from hms.cli import register_commands
from hms.core.converters import IdConverter
from hms.core.errorreport import init_error_reports
from hms.core.inputs import init_inputs
from hms.core.logs import configure_logging, log_formatter
from hms.core.metrics import init_metrics
from hms.core.requestid import init_request_id
from hms.core.sessions import CookieSessionInterface
from hms.errors import register_error_handlers
from hms.extensions import api, cache, db, limiter, migrate
from hms.ops.routes import bp as ops
from hms.patients.routes import blp as patients
from hms.prescriptions.routes import blp as prescriptions
from hms.queue.routes import blp as queue
from hms.queue.ticket_routes import blp as tickets
from hms.reference.routes import blp as reference
from hms.reports.routes import blp as reports
from hms.staff.routes import blp as staff
from hms.web.admin import bp as admin_console
from hms.web.admin_reference import bp as admin_reference
from hms.web.cashier import bp as cashier
from hms.web.display import bp as display
from hms.web.doctor import bp as doctor_screen
from hms.web.prints import bp as prints
from hms.web.reception import bp as reception
from hms.web.reports import bp as reports_page
from hms.web.routes import bp as web
from hms.web.ticket import bp as ticket_page


class HMSFlask(Flask):
    """Flask, without asking on every request whether each hook and view is a coroutine.

    Flask passes every before/after-request hook and every view through `ensure_sync`,
    which calls inspect.iscoroutinefunction each time (five Python calls per hook per
    request). HMS has no async code: a plain function that is not a coroutine function
    is used as it is (one type check); anything else goes through Flask's own check."""

    def ensure_sync(self, func):
        if type(func) is FunctionType and not func.__code__.co_flags & CO_COROUTINE:
            return func
        return super().ensure_sync(func)


def create_app(config: Config | str | None = None) -> Flask:
    # The pages' own scripts and styles (hms/web/static), served under /static.
    app = HMSFlask(__name__, instance_relative_config=True, static_folder="web/static")
    app.session_interface = CookieSessionInterface()
    app.config.from_object(config if isinstance(config, Config) else get_config(config))
    _configure_logging(app)
    # Settings that can stop the start are read before any extension is bound to this app:
    # a refused start must not leave the shared extensions (the API's spec) half set up.
    check_rate_limit_settings(app.config)
    init_request_id(app)  # before any other hook: every answer and log line carries it
    trust_proxies(app)
    _ensure_sqlite_folder(app)
    register_extensions(app)
    init_metrics(app)  # after trust_proxies: its timing wraps the whole WSGI app
    register_blueprints(app)
    register_error_handlers(app, api)
    register_commands(app)
    check_policies(app)
    return app


def _configure_logging(app: Flask) -> None:
    log_formatter(app.config["LOG_FORMAT"])  # a wrong LOG_FORMAT stops the start
    if not app.debug and not app.testing:
        configure_logging(app.config["LOG_FORMAT"])
    if app.config.get("SENTRY_DSN"):
        init_error_reports(app, app.config["SENTRY_DSN"])


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXY_COUNT reverse proxies, take the client's address and scheme
    from their X-Forwarded-For/-Proto, so sign-in limits count each client on its own."""
    count = app.config.get("TRUSTED_PROXY_COUNT", 0)
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def _ensure_sqlite_folder(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def register_extensions(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    db.init_app(app)
    migrate.init_app(
        app, db, directory=str(app.root_path + "/../migrations"), compare_type=True, render_as_batch=True
    )
    cache.init_app(app)
    limiter.init_app(app)
    _limit_decorated_views_only(app, limiter)
    auth_service.dummy_hash(app.config["PASSWORD_HASH_METHOD"])  # made once, at start-up
    realtime.init_app(app)
    api.init_app(app)
    api.register_converter(IdConverter, lambda _: {"type": "integer", "minimum": 1, "maximum": 2**31 - 1})
    init_access(app)
    init_inputs(app)  # after the access hook: 401 comes before any 422


def _limit_decorated_views_only(app: Flask, limiter) -> None:
    """Drop flask-limiter's per-request hook: HMS limits only decorated views.

    The hook looks for default, application and blueprint limits on every request, which
    HMS does not set; decorated views check their own limits in their decorator. Without
    the hook the hottest reads skip that work. Setting a default or application limit in
    the configuration would need the hook back, so that is refused.
    """
    for option in ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_DEFAULTS_PER_METHOD"):
        if app.config.get(option):
            raise RuntimeError(f"{option} is not supported: limit views with @limiter.limit")
    app.before_request_funcs[None].remove(limiter._check_request_limit)


def register_blueprints(app: Flask) -> None:
    for blueprint in (
        auth,
        staff,
        reference,
        patients,
        appointments,
        queue,
        tickets,
        billing,
        prescriptions,
        reports,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(ops)
    app.register_blueprint(web)
    app.register_blueprint(reception)
    for page_blueprint in (
        cashier,
        display,
        doctor_screen,
        prints,
        ticket_page,
        reports_page,
        admin_console,
        admin_reference,
    ):
        app.register_blueprint(page_blueprint)
