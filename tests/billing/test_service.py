"""The ledger's invariants through the service layer, including property-based sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from sqlalchemy import event, select

from hms.errors import Conflict, ValidationFailed
from tests.conftest import requires_postgres

ZERO = Decimal("0.00")


@pytest.fixture
def cashier_identity(make_user):
    from hms.auth.service import Identity

    def identity(role: str):
        user = make_user(role)
        return Identity(user.id, user.username, user.name, user.role, True, 0)

    return identity


def expected_status(total: Decimal, paid: Decimal, void: bool) -> str:
    if void:
        return "VOID"
    if paid <= 0:
        return "UNPAID"
    return "PAID" if paid >= total else "PARTIALLY_PAID"


def test_bill_status_follows_the_amounts():
    from hms.billing.ledger import bill_status

    assert bill_status(Decimal("10"), ZERO, "UNPAID") == "UNPAID"
    assert bill_status(Decimal("10"), Decimal("4"), "UNPAID") == "PARTIALLY_PAID"
    assert bill_status(Decimal("10"), Decimal("10"), "PARTIALLY_PAID") == "PAID"
    assert bill_status(ZERO, ZERO, "UNPAID") == "UNPAID"
    assert bill_status(Decimal("10"), ZERO, "VOID") == "VOID"


def test_bill_numbers_count_per_year(db):
    from hms.billing.ledger import next_bill_number

    assert [next_bill_number(2025), next_bill_number(2025), next_bill_number(2026)] == [
        "B-2025-000001",
        "B-2025-000002",
        "B-2026-000001",
    ]
    db.session.rollback()
    assert next_bill_number(2025) == "B-2025-000001"  # a rolled-back number is given back


def test_fingerprint_is_canonical():
    from hms.core.idempotency import fingerprint

    one = fingerprint("payment", 1, {"amount": Decimal("10.00"), "method": "CASH"})
    assert one == fingerprint("payment", 1, {"method": "CASH", "amount": Decimal("10.00")})
    assert one != fingerprint("payment", 2, {"amount": Decimal("10.00"), "method": "CASH"})
    assert one != fingerprint("refund", 1, {"amount": Decimal("10.00"), "method": "CASH"})
    assert one != fingerprint("payment", 1, {"amount": Decimal("10.01"), "method": "CASH"})


def test_payments_trust_the_rows_not_the_stored_totals(db, factory, cashier_identity):
    """Tampered stored totals neither allow an overpayment nor survive the next change."""
    from hms.billing import service
    from hms.billing.models import Bill

    cashier = cashier_identity("cashier")
    patient = factory.patient()
    bill = service.create_bill(
        {"patient_id": patient, "items": [{"description": "X", "quantity": 1, "unit_price": Decimal("100")}]},
        cashier,
    )
    service.take_payment(bill.id, {"amount": Decimal("50.00"), "method": "CASH"}, cashier)
    row = db.session.get(Bill, bill.id)
    row.paid_amount, row.due_amount, row.status = ZERO, Decimal("100.00"), "UNPAID"
    db.session.commit()
    with pytest.raises(ValidationFailed):
        service.take_payment(bill.id, {"amount": Decimal("60.00"), "method": "CASH"}, cashier)
    answer = service.take_payment(bill.id, {"amount": Decimal("50.00"), "method": "CASH"}, cashier)
    assert (answer.body["paid_amount"], answer.body["due_amount"], answer.body["status"]) == (
        "100.00",
        "0.00",
        "PAID",
    )


def test_a_failed_payment_leaves_no_pending_rows(db, factory, cashier_identity):
    from hms.billing import service
    from hms.billing.models import IdempotencyRecord, Payment

    cashier = cashier_identity("cashier")
    bill = service.create_bill(
        {
            "patient_id": factory.patient(),
            "items": [{"description": "X", "quantity": 1, "unit_price": Decimal("10")}],
        },
        cashier,
    )
    with pytest.raises(ValidationFailed):
        service.take_payment(bill.id, {"amount": Decimal("11.00"), "method": "CASH"}, cashier, "key-1")
    assert not db.session.new and not db.session.dirty
    assert db.session.scalars(select(Payment)).all() == []
    assert db.session.scalars(select(IdempotencyRecord)).all() == []


# ---- property-based: any sequence of operations keeps the ledger true -----------------

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400.00"), places=2)
add_item = st.tuples(st.just("item"), money, st.integers(min_value=1, max_value=4))
pay = st.tuples(st.just("pay"), money)
refund = st.tuples(st.just("refund"), money)
# Voiding ends a sequence's interest (everything after is 409), so it is drawn rarely.
operation = st.one_of(
    add_item,
    add_item,
    pay,
    pay,
    pay,
    st.tuples(st.just("pay_due")),
    refund,
    refund,
    st.tuples(st.just("refund_all")),
    st.tuples(st.just("void")),
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first_price=money, operations=st.lists(operation, min_size=1, max_size=20))
def test_random_sequences_keep_the_ledger_true(db, factory, cashier_identity, first_price, operations):
    from hms.billing import service
    from hms.billing.ledger import ledger_sums
    from hms.billing.models import Bill, Payment

    cashier = cashier_identity("cashier")
    admin = cashier_identity("admin")
    patient = factory.patient()
    bill_id = service.create_bill(
        {
            "patient_id": patient,
            "items": [{"description": "First", "quantity": 1, "unit_price": first_price}],
        },
        cashier,
    ).id
    total, payments, refunds, void = first_price, ZERO, ZERO, False
    money_rows = 0

    try:
        for op in operations:
            paid = payments - refunds
            status = expected_status(total, paid, void)
            kind = op[0]
            try:
                if kind == "item":
                    line = {"description": "Line", "quantity": op[2], "unit_price": op[1]}
                    service.add_items(bill_id, {"items": [line]}, cashier)
                    assert status not in ("PAID", "VOID"), "items were added to a PAID or VOID bill"
                    total += op[1] * op[2]
                elif kind in ("pay", "pay_due"):
                    amount = op[1] if kind == "pay" else max(total - paid, Decimal("0.01"))
                    service.take_payment(bill_id, {"amount": amount, "method": "CASH"}, cashier)
                    assert not void and amount <= total - paid, "an overpayment was accepted"
                    payments += amount
                    money_rows += 1
                elif kind in ("refund", "refund_all"):
                    amount = op[1] if kind == "refund" else max(paid, Decimal("0.01"))
                    data = {"amount": amount, "reason": "r", "method": "CASH"}
                    service.refund(bill_id, data, admin)
                    assert not void and amount <= paid, "a refund above what was paid was accepted"
                    refunds += amount
                    money_rows += 1
                else:
                    service.void_bill(bill_id, {"reason": "r"}, admin)
                    assert not void and paid == 0, "a bill with money paid (or already void) was voided"
                    void = True
            except Conflict:
                # 409: items on PAID/VOID, money on VOID, void with money paid or twice.
                assert (
                    (kind == "item" and status in ("PAID", "VOID"))
                    or (kind != "item" and void)
                    or (kind == "void" and paid != 0)
                ), (kind, status)
            except ValidationFailed:
                # 422: a payment above the due amount, a refund above what was paid.
                assert not void
                if kind.startswith("pay"):
                    assert amount > total - paid
                else:
                    assert kind.startswith("refund") and amount > paid

            db.session.expire_all()
            bill = db.session.get(Bill, bill_id)
            note(f"{kind} on {status} -> {bill.status}")
            rows_total, rows_paid = ledger_sums(bill_id)
            paid = payments - refunds
            assert (rows_total, rows_paid) == (total, paid)
            assert bill.total_amount == total
            assert bill.paid_amount == paid
            assert bill.due_amount == total - paid >= 0
            assert bill.status == expected_status(total, paid, void)
            rows = db.session.scalars(select(Payment).where(Payment.bill_id == bill_id)).all()
            assert len(rows) == money_rows  # a refused operation records nothing
    finally:
        db.session.rollback()  # never leave a transaction open for the next example


# ---- PostgreSQL: the list queries are the ones the indexes were made for --------------


@requires_postgres
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("", "ix_bills_created_at"),
        ("?status=UNPAID", "ix_bills_status_created"),
        ("?patient_id={patient}", "ix_bills_patient_created"),
        ("?overdue=true", "ix_bills_overdue"),
    ],
)
def test_list_queries_use_their_index(app, reception, open_bill, patient_id, query, index):
    from datetime import timedelta

    from sqlalchemy import text, update

    from hms.billing.models import Bill
    from hms.core.time import clinic_today
    from hms.extensions import db

    open_bill("10.00")
    with app.app_context():
        db.session.execute(update(Bill).values(due_date=clinic_today() - timedelta(days=3)))
        db.session.commit()
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM bills" in statement and "LIMIT" in statement:
            captured.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        res = reception.get(f"/api/bills{query.format(patient=patient_id)}")
        assert res.status_code == 200 and res.get_json()["meta"]["total"] == 1
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = captured
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert index in plan, plan
