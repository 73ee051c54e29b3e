"""Idempotency-Key handling: a retried POST answers its first result and does nothing new.

Used by the money endpoints (payments, refunds: hms.billing), patient registration
(hms.patients) and booking (hms.appointments); it lives in core so that each of them
can use it without importing another domain (the layers of pyproject.toml).

A key is scoped to the account that sent it. Its record holds a fingerprint of the
request (operation, its target, e.g. the bill id, and the canonical JSON of the
validated body) and, once the work is done, the response status and body. The record
is inserted FIRST, in the same transaction as the work it guards, and its response is
stored before that transaction commits:

- PostgreSQL: a second request with the same key blocks on the unique (user_id, key)
  index until the first commits; its INSERT ... ON CONFLICT DO NOTHING then inserts
  nothing, and it reads the committed record (which always carries its response) and
  answers that. If the first rolled back instead, the second's insert simply goes
  through. The usual case, a new key, is that one INSERT and nothing else.
- SQLite: BEGIN IMMEDIATE serializes whole transactions, so the second request's
  look-up already sees the first one's committed record.

Only successful answers are stored: a request that fails (422, 409, 404) rolls back its
record with everything else, records nothing, and a retry is evaluated afresh.
Records live at least the TTL the caller passes (IDEMPOTENCY_TTL_SECONDS, default
24 h). An expired record is replaced when its key comes back; every hundredth record
registers a purge of expired ones to run after its unit of work commits, and
`flask --app wsgi billing purge-idempotency-keys` (hms.billing.cli) purges on demand.

`run_once()` wraps a unit of work in all of this; `claim()`/`complete()` are its steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hms.core.models import IdempotencyRecord
from hms.core.settings import setting
from hms.core.time import utcnow
from hms.core.uow import UnitOfWork, unit_of_work
from hms.errors import Conflict, ValidationFailed
from hms.extensions import db

log = logging.getLogger(__name__)
DEFAULT_TTL_SECONDS = 24 * 3600
DEFAULT_TTL = timedelta(seconds=DEFAULT_TTL_SECONDS)
PURGE_EVERY = 100  # records
PURGE_BATCH = 1000


@dataclass(frozen=True)
class StoredResponse:
    """The answer to a request: freshly made, or replayed from its idempotency record."""

    status: int
    body: dict
    replayed: bool = False


@dataclass(frozen=True)
class ClaimedKey:
    """A key this request inserted (uncommitted): complete it with `complete()`."""

    id: int


# Prebuilt: every payment with a key runs both (the claim per dialect, built on first use).
_records = IdempotencyRecord.__table__
_CLAIM: dict[str, object] = {}
_COMPLETE = (
    update(_records)
    .where(_records.c.id == bindparam("record_id"))
    .values(response_status=bindparam("status"), response_body=bindparam("body"))
)


def ttl_from(config: Mapping[str, Any]) -> timedelta:
    """How long an answer is kept: IDEMPOTENCY_TTL_SECONDS of the app's config, default 24 h."""
    return timedelta(seconds=config.get("IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL_SECONDS))


def configured_ttl() -> timedelta:
    """The running app's IDEMPOTENCY_TTL_SECONDS (default 24 h), for services."""
    try:
        return timedelta(seconds=setting("IDEMPOTENCY_TTL_SECONDS"))
    except KeyError:  # an app configured without it
        return DEFAULT_TTL


def fingerprint(operation: str, target: int | str | None, payload: dict) -> str:
    """sha256 of the operation, its target (a bill id; None for a create) and the
    canonical JSON of the validated body."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    scope = "" if target is None else target
    return hashlib.sha256(f"{operation}:{scope}:{canonical}".encode()).hexdigest()


def canonical_body(data: Mapping[str, Any]) -> dict:
    """The validated body without its absent (None) fields: omitting an optional field
    and sending it as null are the same request."""
    return {name: value for name, value in data.items() if value is not None}


def _find(user_id: int, key: str) -> IdempotencyRecord | None:
    stmt = (
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    return db.session.scalar(stmt)


def _answer(record: IdempotencyRecord, request_fingerprint: str) -> StoredResponse:
    if record.fingerprint != request_fingerprint:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            errors={"headers": {"Idempotency-Key": ["Already used with a different request."]}},
        )
    if record.response_status is None:  # defensive: responses are stored before commit
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly.")
    return StoredResponse(record.response_status, json.loads(record.response_body or "{}"), replayed=True)


def _insert_new(user_id: int, key: str, request_fingerprint: str) -> int | None:
    """INSERT the record unless (user_id, key) exists; its id, or None if it existed.

    On PostgreSQL a concurrent uncommitted insert of the same key makes this wait for
    that transaction: None if it committed, the new id if it rolled back."""
    connection = db.session.connection()
    stmt = _CLAIM.get(connection.dialect.name)
    if stmt is None:
        make_insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
        stmt = _CLAIM[connection.dialect.name] = (
            make_insert(_records)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(_records.c.id)
        )
    params = {"user_id": user_id, "key": key, "fingerprint": request_fingerprint}
    return connection.execute(stmt, params).scalar_one_or_none()


def claim(user_id: int, key: str, request_fingerprint: str, *, ttl: timedelta) -> ClaimedKey | StoredResponse:
    """Claim `key` for this request inside the current transaction, or answer from its record.

    Returns the new (uncommitted) record's ClaimedKey to complete with `complete()`, or
    the stored response of the request that used the key first (a record older than
    `ttl` is expired: the key starts over). A different request under the same key is 422.
    """
    record_id = _insert_new(user_id, key, request_fingerprint)
    if record_id is not None:
        return ClaimedKey(record_id)
    record = _find(user_id, key)
    if record is None:  # it was purged in between: vanishingly rare
        raise Conflict("A request with this Idempotency-Key is in progress; retry shortly.")
    if record.created_at >= utcnow() - ttl:
        return _answer(record, request_fingerprint)
    db.session.delete(record)  # expired: the key starts over
    db.session.flush()
    record_id = _insert_new(user_id, key, request_fingerprint)
    if record_id is None:  # a concurrent request re-claimed the expired key first
        record = _find(user_id, key)
        if record is None:
            raise Conflict("A request with this Idempotency-Key is in progress; retry shortly.")
        return _answer(record, request_fingerprint)
    return ClaimedKey(record_id)


def complete(claimed: ClaimedKey, status: int, body: dict) -> None:
    """Store the answer in the record, in the same transaction as the work it answers."""
    db.session.connection().execute(
        _COMPLETE,
        {"record_id": claimed.id, "status": status, "body": json.dumps(body, separators=(",", ":"))},
    )


def purge_expired(
    *, ttl: timedelta = DEFAULT_TTL, now: datetime | None = None, batch: int = PURGE_BATCH
) -> int:
    """Delete up to `batch` records older than `ttl` (index on created_at), in a unit of
    work of its own; return how many."""
    cutoff = (now or utcnow()) - ttl
    expired = (
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.created_at < cutoff)
        .order_by(IdempotencyRecord.created_at)
        .limit(batch)
    )
    with unit_of_work():
        result = db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
    return result.rowcount or 0


def purge_after_commit(uow: UnitOfWork, claimed: ClaimedKey, *, ttl: timedelta) -> None:
    """Opportunistic purge: every PURGE_EVERY-th record registers one to run after `uow`
    commits (an after-commit step: its failure is logged, never the request's)."""
    if claimed.id % PURGE_EVERY:
        return

    def purge_expired_records(_: UnitOfWork) -> None:
        log.info("purged %d expired idempotency records", purge_expired(ttl=ttl))

    uow.after_commit(purge_expired_records, key="core.idempotency_purge")


def run_once(
    operation: str,
    target: int | str | None,
    data: Mapping[str, Any],
    *,
    user_id: int,
    key: str | None,
    work: Callable[[UnitOfWork], dict],
    status: int = 201,
    ttl: timedelta | None = None,
) -> StoredResponse:
    """Run `work(uow)` (which returns the answer's JSON body) in one unit of work, at most
    once per (user_id, key): with a key, the first request's answer is stored with the
    work and replayed to every retry with the same body; another body under the key is
    422. Without a key, just the unit of work. `ttl`: IDEMPOTENCY_TTL_SECONDS if None.

    The key is claimed before `work` runs, so concurrent retries wait for the first
    (PostgreSQL) or run after it (SQLite) and never do the work twice."""
    with unit_of_work() as uow:
        record = None
        if key is not None:
            ttl = ttl if ttl is not None else configured_ttl()
            claimed = claim(user_id, key, fingerprint(operation, target, canonical_body(data)), ttl=ttl)
            if isinstance(claimed, StoredResponse):
                return claimed  # a replay wrote nothing: its unit of work just ends
            record = claimed
        body = work(uow)
        if record is not None:
            complete(record, status, body)
            purge_after_commit(uow, record, ttl=ttl)
    return StoredResponse(status, body)
