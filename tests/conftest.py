"""Fixtures: the app, a clean database per test, clients acting as each role,
an SQL statement counter and a live gunicorn server.

The suite runs on the embedded default (SQLite file, in-memory cache). With
TEST_DATABASE_URL and TEST_REDIS_URL set it runs against real PostgreSQL and Redis.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    return [
        f"database: {os.environ.get('TEST_DATABASE_URL') or 'sqlite (embedded default)'}",
        f"redis: {os.environ.get('TEST_REDIS_URL') or 'none (in-memory cache)'}",
    ]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hms-test.sqlite3'}"


@pytest.fixture(scope="session")
def app(database_url):
    os.environ["TEST_DATABASE_URL"] = database_url
    from config import TestingConfig
    from hms import create_app
    from hms.extensions import db

    app = create_app(TestingConfig())
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        db.drop_all()
        db.create_all()
    yield app


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Empty every table, the cache and the rate limits after each test."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    from hms.auth.ratelimit import api_limits
    from hms.auth.service import VERIFIED_TOKENS_KEY, local_identities
    from hms.auth.throttle import sign_in_throttle
    from hms.extensions import cache, db, limiter

    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for name in tables:
                    conn.execute(text(f"DELETE FROM {name}"))
        cache.clear()
        local_identities.clear()
        app.extensions.pop(VERIFIED_TOKENS_KEY, None)
        limiter.reset()
        sign_in_throttle.reset()  # its own in-memory counts, used while Redis is down
        api_limits.reset()


@pytest.fixture
def db(app):
    from hms.extensions import db

    with app.app_context():
        yield db
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


_usernames = itertools.count(1)


@pytest.fixture
def make_user(app):
    """Create an account directly in the database: make_user("doctor", name=...)."""
    from hms.auth.models import User
    from hms.auth.service import hash_password
    from hms.extensions import db

    def make(role: str, password: str = "secret-pass", **fields) -> User:
        with app.app_context():
            username = fields.pop("username", f"{role}{next(_usernames)}")
            if role == "doctor":
                fields.setdefault("consultation_fee", "500.00")
                fields.setdefault("hospital_fee", "100.00")
            user = User(
                username=username,
                password_hash=hash_password(password),
                name=fields.pop("name", f"Test {role.title()}"),
                role=role,
                **fields,
            )
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


def token_for(app, user) -> str:
    from hms.auth.service import issue_token, load_identity

    with app.app_context():
        return issue_token(load_identity(user.id))["access_token"]


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token a page's form carries (the session's, made on first use)."""
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def form_login(client, username: str, password: str, next: str | None = None):
    """Sign in through the /login form as a browser does: the form's token, then the POST."""
    token = csrf_token(client)
    url = f"/login?next={next}" if next else "/login"
    return client.post(url, data={"username": username, "password": password, "csrf_token": token})


class RoleClient:
    """A test client that sends one user's bearer token on every request."""

    def __init__(self, client, token: str, user):
        self._client = client
        self.user = user
        self.headers = {"Authorization": f"Bearer {token}"}

    def open(self, method: str, url: str, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self._client.open(url, method=method, headers=headers, **kwargs)

    def get(self, url, **kw):
        return self.open("GET", url, **kw)

    def post(self, url, **kw):
        return self.open("POST", url, **kw)

    def patch(self, url, **kw):
        return self.open("PATCH", url, **kw)

    def put(self, url, **kw):
        return self.open("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.open("DELETE", url, **kw)


@pytest.fixture
def as_role(app, client, make_user):
    """as_role("reception") -> a client acting as a new user of that role.

    as_role("doctor", user=existing_user) acts as an existing account.
    """

    def make(role: str, user=None, **fields) -> RoleClient:
        user = user or make_user(role, **fields)
        return RoleClient(client, token_for(app, user), user)

    return make


@pytest.fixture
def admin(as_role):
    return as_role("admin")


@pytest.fixture
def reception(as_role):
    return as_role("reception")


@pytest.fixture
def cashier(as_role):
    return as_role("cashier")


@pytest.fixture
def display(as_role):
    return as_role("display")


@pytest.fixture
def doctor(as_role):
    """A client acting as a doctor (its account: doctor.user)."""
    return as_role("doctor")


class QueryCounter:
    def __init__(self):
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_queries(app):
    """with count_queries() as counter: ... ; counter.count is the number of SQL statements."""
    from hms.extensions import db

    @contextmanager
    def counting():
        counter = QueryCounter()

        def before(conn, cursor, statement, parameters, context, executemany):
            counter.statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            event.remove(engine, "before_cursor_execute", before)

    return counting


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uses_postgres() -> bool:
    return (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres")


requires_postgres = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
    reason="concurrency is tested against PostgreSQL (set TEST_DATABASE_URL)",
)


@contextmanager
def run_server(database_url: str, workers: int = 2, extra_env: dict | None = None, port: int | None = None):
    """Start gunicorn (gevent workers) on a free port; yield its base URL.

    The listening socket is bound here and handed to gunicorn (`--bind fd://N`), so no
    other process can take the port between choosing it and gunicorn binding it.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port or 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "HMS_ENV": "production",
        "SECRET_KEY": "testing-secret",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    if os.environ.get("TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    env.update(extra_env or {})
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"hms-live-{port}.log", "w")  # noqa: SIM115
    fd = listener.fileno()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"fd://{fd}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(fd,),
    )
    listener.close()  # gunicorn holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {log.name}")
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not come up; see {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        _stop_process_group(proc)
        log.close()


def _stop_process_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)


@pytest.fixture
def live_server(app, database_url):
    """A gunicorn server (2 gevent workers on PostgreSQL, 1 on SQLite) sharing the test database."""
    workers = 2 if database_url.startswith("postgres") else 1
    with run_server(database_url, workers=workers) as base:
        yield base


def cache_key_count(app) -> int:
    """How many keys the app's cache holds now (in process, or in the test Redis database)."""
    from hms.extensions import cache

    backend = app.extensions["cache"][cache]
    if hasattr(backend, "_write_client"):  # Redis
        return sum(1 for _ in backend._write_client.scan_iter(match=backend.key_prefix + "*"))
    return len(backend._cache)
