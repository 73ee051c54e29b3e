"""hms.core.sessions: the cookie session costs nothing when no cookie is sent."""


def test_no_session_serializer_is_built_for_a_request_without_the_cookie(app, client, monkeypatch):
    from flask.sessions import SecureCookieSessionInterface

    built = []
    make = SecureCookieSessionInterface.get_signing_serializer

    def counted(self, app):
        built.append(1)
        return make(self, app)

    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer", counted)
    assert client.get("/healthz").status_code == 200
    assert built == []
    client.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), "not-a-valid-session")
    assert client.get("/healthz").status_code == 200
    assert built == [1]  # a sent cookie is read (and this one, unsigned, ignored)
