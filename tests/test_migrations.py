"""The migrations build the whole schema on an empty database and match the models."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url


@pytest.fixture
def empty_database_url(tmp_path):
    """An empty database of the same kind as the suite's: a new SQLite file, or a new
    PostgreSQL database next to the test database (dropped afterwards)."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    from config import normalize_database_url

    base = make_url(normalize_database_url(url))
    name = f"hms_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_builds_the_schema_and_matches_the_models(empty_database_url, monkeypatch):
    from flask_migrate import upgrade

    from config import TestingConfig
    from hms import create_app
    from hms.extensions import db

    monkeypatch.setenv("TEST_DATABASE_URL", empty_database_url)
    app = create_app(TestingConfig())
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} <= tables
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
