"""The idempotency purge is an after-commit step of the payment that triggers it, and the
TTL comes from the app's config through the route."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update


def keys(app) -> list[str]:
    from hms.billing.models import IdempotencyRecord
    from hms.extensions import db

    with app.app_context():
        return list(db.session.scalars(select(IdempotencyRecord.key).order_by(IdempotencyRecord.id)))


def age(app, key: str, hours: int) -> None:
    from hms.billing.models import IdempotencyRecord
    from hms.core.time import utcnow
    from hms.extensions import db

    with app.app_context():
        db.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(created_at=utcnow() - timedelta(hours=hours))
        )
        db.session.commit()


def pay(cashier, bill: dict, key: str, amount: str = "1"):
    return cashier.post(
        f"/api/bills/{bill['id']}/payments",
        json={"amount": amount, "method": "CASH"},
        headers={"Idempotency-Key": key},
    )


def test_the_triggering_payment_purges_after_its_commit(app, cashier, open_bill, monkeypatch):
    from hms.core import idempotency

    bill = open_bill("100.00")
    assert pay(cashier, bill, "old").status_code == 201
    age(app, "old", hours=25)
    monkeypatch.setattr(idempotency, "PURGE_EVERY", 1)
    assert pay(cashier, bill, "refused", amount="500").status_code == 422  # rolled back: no purge
    assert keys(app) == ["old"]
    assert pay(cashier, bill, "new").status_code == 201
    assert keys(app) == ["new"]


def test_a_failing_purge_is_logged_and_the_payment_stands(app, cashier, open_bill, monkeypatch, caplog):
    from hms.core import idempotency

    def broken(**kwargs):
        raise ConnectionError("database went away")

    bill = open_bill("100.00")
    monkeypatch.setattr(idempotency, "PURGE_EVERY", 1)
    monkeypatch.setattr(idempotency, "purge_expired", broken)
    with caplog.at_level(logging.ERROR, logger="hms.core.uow"):
        res = pay(cashier, bill, "k-1")
    assert res.status_code == 201
    assert res.get_json()["paid_amount"] == "1.00"
    assert keys(app) == ["k-1"]
    assert any(isinstance(r.exc_info[1], ConnectionError) for r in caplog.records if r.exc_info)
    replay = pay(cashier, bill, "k-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json() == res.get_json()


def test_the_ttl_comes_from_the_apps_config(app, cashier, open_bill, monkeypatch):
    bill = open_bill("100.00")
    first = pay(cashier, bill, "k")
    age(app, "k", hours=2)
    assert pay(cashier, bill, "k").get_json() == first.get_json()  # within the default 24 h
    monkeypatch.setitem(app.config, "IDEMPOTENCY_TTL_SECONDS", 3600)
    again = pay(cashier, bill, "k")  # expired under a 1 h TTL: a new payment
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["paid_amount"] == "2.00"
