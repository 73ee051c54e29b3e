"""Database plumbing: SQLite settings for the embedded default, atomic counters."""

from __future__ import annotations

from sqlalchemy import String, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from hms.core.offload import under_gevent
from hms.extensions import db


class Counter(db.Model):
    """Named counters (patient MRNs, bill numbers per year), advanced atomically."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


def next_value(name: str) -> int:
    """Advance counter `name` and return its new value, inside the caller's transaction.

    One statement, an upsert with RETURNING: the row lock (PostgreSQL) or the write lock
    (SQLite) is held until the caller commits, so two transactions can never be handed
    the same value, and a rolled-back one gives its value back.
    """
    return db.session.execute(
        text(
            "INSERT INTO counters (name, value) VALUES (:name, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 "
            "RETURNING value"
        ),
        {"name": name},
    ).scalar_one()


def end_read_transaction() -> None:
    """Under gevent, end the request's read transaction (if one is open) before a call
    that may let another greenlet run (a thread pool, a Redis round trip, starting a
    timer thread). On SQLite every transaction holds the write lock (BEGIN IMMEDIATE,
    below), and a greenlet waiting for it blocks the whole loop, the holder included,
    until the busy timeout. Only reads come before a unit of work, so nothing is lost."""
    if under_gevent() and db.session().in_transaction():
        db.session.rollback()


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record):
    """WAL, a busy timeout and foreign keys for SQLite; manual transaction control.

    pysqlite's own BEGIN is deferred: two writers that both read first then deadlock on
    the upgrade to a write lock. Taking the write lock at BEGIN (IMMEDIATE, below)
    queues writers on the busy timeout instead.
    """
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn):
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
