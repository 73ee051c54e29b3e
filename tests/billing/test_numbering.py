"""Bill numbers: billing's before-commit step numbers the bills a unit of work opened,
only those, and a rolled-back unit of work takes no number (numbers stay gapless)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from hms.errors import ValidationFailed


def counter_statements(statements: list[str]) -> list[str]:
    return [s for s in statements if "counters" in s]


def numbers(app) -> list[str]:
    from hms.billing.models import Bill
    from hms.extensions import db

    with app.app_context():
        return list(db.session.scalars(select(Bill.number).order_by(Bill.id)))


def expected(app, *sequence: int) -> list[str]:
    from hms.core.time import clinic_today

    with app.app_context():
        year = clinic_today().year
    return [f"B-{year}-{n:06d}" for n in sequence]


def open_one(patient_id: int, created_by_id: int) -> int:
    from hms.billing.ledger import LineItem, open_bill

    return open_bill(
        patient_id=patient_id,
        created_by_id=created_by_id,
        items=[LineItem("Consultation fee", 1, Decimal("500.00"))],
    )


def test_only_a_unit_of_work_that_opened_a_bill_takes_a_number(
    app, reception, admin, open_bill, count_queries, monkeypatch
):
    from hms.billing import ledger

    steps = []
    number_new_bills = ledger._number_new_bills

    def counted(uow):
        steps.append(list(uow.state.get("billing.unnumbered_bills", ())))
        number_new_bills(uow)

    monkeypatch.setattr(ledger, "_number_new_bills", counted)
    with count_queries() as opening:
        bill = open_bill("100.00")
    assert steps == [[bill["id"]]]
    assert len(counter_statements(opening.statements)) == 1
    url = f"/api/bills/{bill['id']}"
    with count_queries() as changing:
        assert (
            reception.post(
                f"{url}/items", json={"items": [{"description": "X", "unit_price": "1"}]}
            ).status_code
            == 201
        )
        assert admin.post(f"{url}/payments", json={"amount": "10", "method": "CASH"}).status_code == 201
        assert admin.post(f"{url}/refunds", json={"amount": "10", "reason": "r"}).status_code == 201
        assert admin.post(f"{url}/void", json={"reason": "r"}).status_code == 200
    assert changing.count > 0
    assert steps == [[bill["id"]]]  # no numbering step in the units of work that opened none
    assert counter_statements(changing.statements) == []
    assert numbers(app) == expected(app, 1)


def test_a_unit_of_work_numbers_every_bill_it_opened(app, db, factory, make_user):
    from hms.core.uow import unit_of_work

    patient, user = factory.patient(), make_user("reception")
    with unit_of_work():
        first, second = open_one(patient, user.id), open_one(patient, user.id)
    assert first < second
    assert numbers(app) == expected(app, 1, 2)


@pytest.mark.parametrize("fail_in", ["block", "a later before-commit step"])
def test_a_rolled_back_unit_of_work_takes_no_number(app, db, factory, make_user, fail_in):
    """A booking that fails after opening its bill (in its block, or at its commit after the
    bill was numbered) gives the number back: the next bill takes it."""
    from hms.billing.models import Bill
    from hms.core.uow import unit_of_work

    patient, user = factory.patient(), make_user("reception")
    with unit_of_work():
        open_one(patient, user.id)

    def fail(uow):
        raise RuntimeError("the booking failed")

    numbered = []
    with pytest.raises(RuntimeError, match="the booking failed"), unit_of_work() as uow:
        bill_id = open_one(patient, user.id)
        if fail_in == "block":
            fail(uow)
        # Registered after the numbering step: it runs once the bill has its number.
        uow.before_commit(lambda u: numbered.append(db.session.get(Bill, bill_id).number))
        uow.before_commit(fail)
    assert numbered == ([] if fail_in == "block" else expected(app, 2))
    with unit_of_work():
        open_one(patient, user.id)
    assert numbers(app) == expected(app, 1, 2)


def test_a_failed_bill_creation_does_not_burn_a_number(app, reception, open_bill, patient_id, monkeypatch):
    """POST /api/bills failing after its bill was inserted: 422, no bill, no number taken."""
    from hms.billing import service

    open_bill("10.00")
    real_open_bill = service.open_bill

    def open_then_fail(**fields):
        real_open_bill(**fields)
        raise ValidationFailed.field("items", "Refused after the bill was inserted.")

    monkeypatch.setattr(service, "open_bill", open_then_fail)
    res = reception.post(
        "/api/bills", json={"patient_id": patient_id, "items": [{"description": "X", "unit_price": "5"}]}
    )
    assert res.status_code == 422, res.get_json()
    monkeypatch.undo()
    open_bill("20.00")
    assert numbers(app) == expected(app, 1, 2)
