"""Probes and configuration."""

import pytest


def test_healthz(client):
    res = client.get("/healthz")
    assert res.status_code == 200 and res.get_json() == {"status": "ok"}


def test_readyz_reports_database_and_redis(app, client):
    res = client.get("/readyz")
    assert res.status_code == 200
    body = res.get_json()
    assert body["database"] == "ok"
    assert body["redis"] == ("ok" if app.config.get("REDIS_URL") else "disabled")


def test_readyz_is_503_when_redis_is_unreachable(app, client):
    old = app.config.get("REDIS_URL")
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        res = client.get("/readyz")
    finally:
        app.config["REDIS_URL"] = old
    assert res.status_code == 503
    assert res.get_json()["redis"] == "unavailable"
    assert int(res.headers["Retry-After"]) > 0


def test_readyz_is_503_when_the_database_is_unreachable(database_url, tmp_path, monkeypatch):
    from config import TestingConfig
    from hms import create_app

    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    app = create_app(TestingConfig())
    res = app.test_client().get("/readyz")
    assert res.status_code == 503
    assert res.get_json()["database"] == "unavailable"
    assert int(res.headers["Retry-After"]) > 0


def test_openapi_document_and_docs(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.")
    assert "/api/auth/token" in doc["paths"]
    assert client.get("/api/docs").status_code == 200


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL"])
def test_production_refuses_to_start_without_required_settings(monkeypatch, missing):
    from config import ProductionConfig

    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x")
    monkeypatch.delenv(missing)
    with pytest.raises(RuntimeError, match=missing):
        ProductionConfig()


def test_production_uses_psycopg3_and_redis(monkeypatch):
    from config import ProductionConfig

    monkeypatch.setenv("SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db.internal/hms")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    config = ProductionConfig()
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://u@db.internal/hms"
    assert config.CACHE_TYPE == "RedisCache"
    assert config.RATELIMIT_STORAGE_URI == "redis://cache.internal:6379/0"


def test_embedded_default_needs_no_environment(monkeypatch):
    from config import DevelopmentConfig

    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = DevelopmentConfig()
    assert config.SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")
    assert config.SQLALCHEMY_DATABASE_URI.endswith("instance/hms.sqlite3")
    assert config.CACHE_TYPE == "SimpleCache"
    assert config.RATELIMIT_STORAGE_URI == "memory://"
