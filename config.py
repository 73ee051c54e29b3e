"""Configuration classes: the embedded default, testing and production.

`create_app()` picks one from HMS_ENV (development | testing | production); with no
environment variables at all it runs the embedded default: SQLite under instance/,
an in-memory cache, an in-process broker and in-memory rate limits.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from redis.backoff import NoBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def fail_fast() -> Retry:
    """Redis clients retry once at once (a connection a Redis restart closed), no backoff:
    redis-py 7's default (3 retries, exponential backoff) held every operation on a
    stopped Redis for 8.7 s. A new object per client (a client adapts it)."""
    return Retry(NoBackoff(), 1)


def normalize_database_url(url: str) -> str:
    """Point plain postgres:// URLs at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Config:
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    # Bearer tokens and sessions.
    TOKEN_TTL_SECONDS = _int("TOKEN_TTL_SECONDS", 12 * 3600)
    # How long a worker trusts the account behind a token without asking the cache again:
    # an account change made through another worker or instance applies within this time.
    # 0 (the default) keeps API.md's rule that a disabled account stops working at once.
    IDENTITY_LOCAL_SECONDS = float(os.environ.get("IDENTITY_LOCAL_SECONDS", "0"))
    PASSWORD_HASH_METHOD = "scrypt"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False  # True in production
    # A session is not refreshed by use: it ends SESSION_HOURS after sign-in (checked by
    # the server on its signed sign-in time, and the cookie's own expiry).
    SESSION_REFRESH_EACH_REQUEST = False
    MAX_CONTENT_LENGTH = 1024 * 1024

    # Failed sign-ins allowed (flask-limiter syntax; README "Sign-in limits"): per username
    # from one client address, per client address, and per username across all clients.
    LOGIN_LIMIT_PER_USERNAME_AND_CLIENT = os.environ.get(
        "LOGIN_LIMIT_PER_USERNAME_AND_CLIENT", "5 per minute"
    )
    LOGIN_LIMIT_PER_CLIENT = os.environ.get("LOGIN_LIMIT_PER_CLIENT", "20 per minute")
    LOGIN_LIMIT_PER_USERNAME = os.environ.get("LOGIN_LIMIT_PER_USERNAME", "100 per hour")
    # Successful sign-ins per client address (each costs a password check).
    LOGIN_SUCCESS_LIMIT_PER_CLIENT = os.environ.get("LOGIN_SUCCESS_LIMIT_PER_CLIENT", "60 per minute")
    # Reverse proxies in front of HMS whose X-Forwarded-For/-Proto are trusted (nginx: 1).
    # 0 ignores those headers, so a client cannot claim another address.
    TRUSTED_PROXY_COUNT = _int("TRUSTED_PROXY_COUNT", 0)
    RATELIMIT_HEADERS_ENABLED = True
    # API rate limits (hms/auth/ratelimit.py), a moving window shared through Redis: every
    # call of an account, and per client address the calls without a valid token or
    # session. "0" turns one off.
    RATE_LIMIT_PER_ACCOUNT = os.environ.get("RATE_LIMIT_PER_ACCOUNT", "600 per minute")
    RATE_LIMIT_PER_ADDRESS = os.environ.get("RATE_LIMIT_PER_ADDRESS", "300 per minute")

    # How long an Idempotency-Key's answer is replayed (seconds; API.md: 24 h).
    IDEMPOTENCY_TTL_SECONDS = _int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600)

    # Cache lifetimes (seconds).
    REFERENCE_CACHE_SECONDS = 3600
    DOCTOR_CACHE_SECONDS = 300
    QUEUE_CACHE_SECONDS = 30

    # Live stream.
    SSE_MAX_CONNECTIONS_PER_DOCTOR = _int("SSE_MAX_CONNECTIONS_PER_DOCTOR", 20)
    SSE_MAX_CONNECTIONS_PER_ACCOUNT = _int("SSE_MAX_CONNECTIONS_PER_ACCOUNT", 10)
    SSE_HEARTBEAT_SECONDS = _int("SSE_HEARTBEAT_SECONDS", 15)
    SSE_RETRY_MS = _int("SSE_RETRY_MS", 3000)
    # Streams of one patient's ticket (its own count: never a doctor's or an account's slot).
    TICKET_STREAM_LIMIT = _int("TICKET_STREAM_LIMIT", 3)

    # flask-smorest / OpenAPI.
    API_TITLE = "HMS"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Served by HMS (hms/web/static/vendor/swagger-ui), never a CDN; the page itself is
    # HMS's own template (hms.web.routes.api_docs).
    OPENAPI_SWAGGER_UI_URL = "/static/vendor/swagger-ui/"
    API_SPEC_OPTIONS = {
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    }

    def read_environment(self) -> None:
        """Settings read from the environment when the config is built, not at import."""
        self.SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'hms.sqlite3'}")
        )
        self.REDIS_URL = os.environ.get("REDIS_URL") or None
        self.CLINIC_TIMEZONE = os.environ.get("CLINIC_TIMEZONE", "UTC")
        # The clinic's name on every screen, the waiting-room display and the printouts.
        self.CLINIC_NAME = os.environ.get("CLINIC_NAME", "HMS Clinic")
        # The country calling code a phone typed without "+" belongs to (digits, no "+"):
        # 91 (India) by default, the demo data's numbers; stored phones are E.164.
        self.CLINIC_COUNTRY_CODE = os.environ.get("CLINIC_COUNTRY_CODE", "91").strip().lstrip("+")
        # Lifetime of a page session (a shared clinic PC): from sign-in, not from last use.
        self.SESSION_HOURS = float(os.environ.get("SESSION_HOURS", "12"))
        self.PERMANENT_SESSION_LIFETIME = timedelta(hours=self.SESSION_HOURS)
        # Observability (docs/operations.md). Log lines as plain text or one JSON object
        # per line (production's default).
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
        # Statements slower than this are logged (SQL only, never parameters) and counted.
        self.SLOW_QUERY_MS = float(os.environ.get("SLOW_QUERY_MS", "100"))
        # GET /metrics from an address other than loopback needs `Authorization: Bearer`
        # with this token; unset, only loopback may scrape.
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
        # Unhandled errors go to Sentry (without patient data) when set; unset, the
        # Sentry SDK is not even imported.
        self.SENTRY_DSN = os.environ.get("SENTRY_DSN") or None

    def __init__(self) -> None:
        self.read_environment()
        # Settings that depend on other settings are derived from them.
        if self.SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
            self.SQLALCHEMY_ENGINE_OPTIONS = {"connect_args": {"timeout": 30}}
        else:
            from hms.core.dbpool import FairQueuePool

            self.SQLALCHEMY_ENGINE_OPTIONS = {
                # Connections go to waiting requests in arrival order (hms/core/dbpool.py).
                "poolclass": FairQueuePool,
                "pool_size": _int("DB_POOL_SIZE", 5),
                "max_overflow": _int("DB_MAX_OVERFLOW", 10),
                "pool_pre_ping": True,
                "pool_timeout": 10,
            }
        if self.REDIS_URL:
            self.CACHE_TYPE = "RedisCache"
            self.CACHE_REDIS_URL = self.REDIS_URL
            self.CACHE_KEY_PREFIX = "hms:"
            # Many greenlets per worker read the cache at once: redis-py's default pool
            # (100) would refuse connections under load rather than wait.
            # Fail fast while Redis is down (no backoff).
            self.CACHE_OPTIONS = {
                "socket_timeout": 0.5,
                "socket_connect_timeout": 0.5,
                "max_connections": _int("REDIS_MAX_CONNECTIONS", 500),
                "retry": fail_fast(),
            }
            self.RATELIMIT_STORAGE_URI = self.REDIS_URL
            self.RATELIMIT_STORAGE_OPTIONS = {
                "socket_timeout": 0.5,
                "socket_connect_timeout": 0.5,
                "retry": fail_fast(),
            }
        else:
            self.CACHE_TYPE = "SimpleCache"
            self.CACHE_THRESHOLD = 10000
            self.RATELIMIT_STORAGE_URI = "memory://"
        self.CACHE_DEFAULT_TIMEOUT = 300


class DevelopmentConfig(Config):
    """The embedded default: no environment variables needed."""


class TestingConfig(Config):
    TESTING = True
    # Cheap hashes keep the suite fast; production keeps werkzeug's scrypt defaults.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"
    SSE_HEARTBEAT_SECONDS = 1
    # Off: a test makes many calls as one account from one address; the rate-limit tests
    # turn them on with monkeypatch.
    RATE_LIMIT_PER_ACCOUNT = "0"
    RATE_LIMIT_PER_ADDRESS = "0"

    def read_environment(self) -> None:
        super().read_environment()
        self.SECRET_KEY = "testing-secret"
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            os.environ.get("TEST_DATABASE_URL", "sqlite://")
        )
        self.REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
        self.METRICS_TOKEN = None
        self.SENTRY_DSN = None


class ProductionConfig(Config):
    def read_environment(self) -> None:
        super().read_environment()
        # The session cookie only over HTTPS; SESSION_COOKIE_SECURE=0 for a plain-HTTP test bench.
        self.SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "1") != "0"
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "json").strip().lower()

    def __init__(self) -> None:
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL") if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"production needs {', '.join(missing)} in the environment")
        super().__init__()


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def get_config(name: str | None = None) -> Config:
    name = name or os.environ.get("HMS_ENV", "development")
    try:
        return CONFIGS[name]()
    except KeyError:
        raise RuntimeError(f"unknown HMS_ENV {name!r}; use one of {sorted(CONFIGS)}") from None
