"""The one access-control mechanism: authentication and the role check, before any view.

Views are marked in hms.core.access: `@allow(action, ...)` (actions of the role matrix,
hms.core.roles), `@page(...)` or `@public`. A single before-request hook authenticates
the caller (bearer token, or the session cookie for safe methods) and checks the role
against the matrix before the view, its argument parsing or its validation run: 401
always comes before any 422. Object-level rules ("a doctor, on own appointments") are
the services' business, asked of the same matrix. The same hook counts the call against
its rate limit (hms.auth.ratelimit): the account's once it is known, else the client
address's.

`check_policies(app)` runs at start-up and refuses to start if any route has no
declared policy, so a route cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, g, redirect, request, session, url_for

from hms.auth.ratelimit import Refused, limit_account, limit_address, refusal_page
from hms.auth.service import Identity, identity_from_session, identity_from_token
from hms.core.access import (
    PUBLIC,
    declared_policy,
    is_page,
    policy_admits,
    roles_admitted,
    set_current_identity,
)
from hms.errors import Forbidden, Unauthorized

# Endpoints added by libraries (flask-smorest's docs, Flask's static files).
_LIBRARY_PUBLIC = {"static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _handler_of(endpoint: str, method: str) -> Callable | None:
    view = current_app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    handler = getattr(view_class, method.lower(), None)
    if handler is None and method == "HEAD":
        handler = getattr(view_class, "get", None)
    return handler


def policy_of(endpoint: str, method: str):
    """The declared policy of an endpoint for one HTTP method, or None."""
    if endpoint in _LIBRARY_PUBLIC:
        return PUBLIC
    return _policy_of_handler(_handler_of(endpoint, method), method)


def _policy_of_handler(handler: Callable | None, method: str):
    if handler is None:
        return PUBLIC if method == "OPTIONS" else None
    return declared_policy(handler)


def roles_of(endpoint: str, method: str) -> frozenset[str] | str | None:
    """Who may call an endpoint with one HTTP method: PUBLIC, the roles, or None."""
    policy = policy_of(endpoint, method)
    if policy is None or policy == PUBLIC:
        return policy
    return roles_admitted(policy)


def _authenticate() -> Identity | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return identity_from_token(token.strip())
    # The session cookie serves the pages and a browser EventSource. It is not accepted
    # for state-changing API calls, which would make them open to cross-site requests.
    if request.method in _SAFE_METHODS or not request.path.startswith("/api/"):
        identity = identity_from_session(session)
        if identity is not None:
            g.hms_session_id = session["sid"]
        return identity
    return None


def current_session_id() -> str | None:
    """The page session the caller was authenticated by, or None (a bearer token)."""
    return g.get("hms_session_id")


def enforce_policy():
    """Authenticate, count the call against its rate limit, check the role."""
    try:
        return _enforce_policy()
    except Refused as refused:
        if request.path.startswith("/api/"):
            raise
        return refusal_page(refused)


def _enforce_policy():
    if request.routing_exception is not None or request.endpoint is None:
        return None  # 404 / 405 render as usual
    if request.method == "OPTIONS":
        return None
    endpoint = request.endpoint
    if endpoint in _LIBRARY_PUBLIC:
        limit_address(endpoint)
        return None
    handler = _handler_of(endpoint, request.method)
    policy = _policy_of_handler(handler, request.method)
    if policy == PUBLIC:
        limit_address(endpoint)
        return None
    if policy is None:  # check_policies() makes this unreachable; fail closed anyway
        raise Forbidden("This route has no access policy.")
    identity = _authenticate()
    if identity is None:
        limit_address(endpoint)
        if is_page(current_app.view_functions[endpoint]):
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        raise Unauthorized("Authentication required: send Authorization: Bearer <token>.")
    limit_account(identity.id)
    set_current_identity(identity)
    if not policy_admits(policy, identity.role):
        raise Forbidden(f"The {identity.role} role may not do this.")
    return None


def check_policies(app: Flask) -> None:
    """Refuse to start with a route that declares no policy."""
    missing = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods - {"OPTIONS"}):
                if policy_of(rule.endpoint, method) is None:
                    missing.append(f"{method} {rule.rule}")
    if missing:
        raise RuntimeError("routes without an access policy: " + ", ".join(missing))


def init_access(app: Flask) -> None:
    app.before_request(enforce_policy)
