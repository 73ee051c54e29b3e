"""Flask's signed-cookie session, without its per-request cost when no cookie is sent."""

from __future__ import annotations

from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """API clients send a bearer token and no session cookie: for them the session is
    new and empty, as Flask would find it, without building the signing serializer on
    every request (measured in-process: about 4% of a cached snapshot read)."""

    def open_session(self, app, request) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)
