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


def _app_on(url, monkeypatch):
    from config import TestingConfig
    from hms import create_app

    monkeypatch.setenv("TEST_DATABASE_URL", url)
    return create_app(TestingConfig())


def _diff(db) -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_6c2d3e4f5a61_downgrades_and_upgrades_again(empty_database_url, monkeypatch):
    from flask_migrate import downgrade, upgrade

    from hms.extensions import db

    app = _app_on(empty_database_url, monkeypatch)
    with app.app_context():
        upgrade()
        downgrade(revision="5b1c2e7d9a40")
        inspector = inspect(db.engine)
        patient_columns = {c["name"] for c in inspector.get_columns("patients")}
        assert not {"name_folded", "phone_national"} & patient_columns
        assert "room" not in {c["name"] for c in inspector.get_columns("users")}
        assert "search_folded" not in {c["name"] for c in inspector.get_columns("medicines")}
        # Read from the catalogue: SQLAlchemy does not reflect SQLite's expression indexes.
        catalogue = (
            "SELECT indexname FROM pg_indexes WHERE tablename = 'patients'"
            if db.engine.dialect.name == "postgresql"
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'patients'"
        )
        with db.engine.connect() as conn:
            indexes = set(conn.scalars(text(catalogue)))
        assert "ix_patients_name_trgm" in indexes
        assert not {"ix_patients_name_folded_trgm", "ix_patients_phone_national_prefix"} & indexes
        upgrade()
        diff = _diff(db)
        db.engine.dispose()
    assert diff == [], f"models and migrations disagree after a round trip: {diff}"


def test_6c2d3e4f5a61_moves_the_data(empty_database_url, monkeypatch):
    """Old phones become E.164 with CLINIC_COUNTRY_CODE (unparseable ones keep their
    digits), names and medicines get their folded search text, and the search finds them."""
    from flask_migrate import upgrade

    from hms.extensions import db

    app = _app_on(empty_database_url, monkeypatch)
    app.config["CLINIC_COUNTRY_CODE"] = "91"
    with app.app_context():
        upgrade(revision="5b1c2e7d9a40")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO patients (id, mrn, name, gender, phone, created_at, updated_at) VALUES "
                    "(1, 'P000001', 'José Fernandes', 'male', '9845011223', :now, :now), "
                    "(2, 'P000002', 'ASHA RAO', 'female', '+919845022222', :now, :now), "
                    "(3, 'P000003', 'Old Short', 'male', '+12', :now, :now), "
                    "(4, 'P000004', 'Trunk Zero', 'male', '08022223333', :now, :now), "
                    "(5, 'P000005', 'No Phone', 'other', NULL, :now, :now)"
                ),
                {"now": "2026-01-01 00:00:00+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO medicines (id, name, generic_name, form, strength, unit_price, created_at) "
                    "VALUES (1, 'Crocin', 'Paracétamol', 'tablet', '500 mg', 2, :now), "
                    "(2, 'Plain', NULL, NULL, NULL, 1, :now)"
                ),
                {"now": "2026-01-01 00:00:00+00:00"},
            )
        upgrade()
        with db.engine.connect() as conn:
            patients = conn.execute(
                text("SELECT name_folded, phone, phone_national FROM patients ORDER BY id")
            ).all()
            medicines = conn.execute(text("SELECT search_folded FROM medicines ORDER BY id")).all()
        assert [tuple(row) for row in patients] == [
            ("jose fernandes", "+919845011223", "9845011223"),
            ("asha rao", "+919845022222", "9845022222"),
            ("old short", "12", "12"),
            ("trunk zero", "+918022223333", "8022223333"),
            ("no phone", None, None),
        ]
        assert [row[0] for row in medicines] == ["crocin\nparacetamol", "plain\n"]

        from hms.patients.service import search_patients

        def found(q):
            return [p.mrn for p in search_patients(q, page=1, limit=20).data]

        assert found("+91 98450") == ["P000002", "P000001"]
        assert found("98450 1") == ["P000001"]
        assert found("jose") == ["P000001"]
        assert found("12") == ["P000003"]
        db.session.remove()
        db.engine.dispose()
