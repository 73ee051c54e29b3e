"""Real parallel HTTP requests against gunicorn on PostgreSQL: locks and idempotency hold."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import requires_postgres

pytestmark = requires_postgres
PARALLEL = 10


def sign_in(base: str, user) -> dict:
    res = requests.post(
        f"{base}/api/auth/token", json={"username": user.username, "password": "secret-pass"}, timeout=10
    )
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['access_token']}"}


def in_parallel(count: int, send) -> list[requests.Response]:
    """Run `send()` on `count` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def go(_):
        barrier.wait(timeout=10)
        return send()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(go, range(count)))


@pytest.fixture
def cash_desk(live_server, make_user, factory):
    """(base URL, cashier headers, a bill of 1000.00)."""
    headers = sign_in(live_server, make_user("cashier"))
    res = requests.post(
        f"{live_server}/api/bills",
        json={
            "patient_id": factory.patient(),
            "items": [{"description": "Surgery", "quantity": 1, "unit_price": "1000.00"}],
        },
        headers=headers,
        timeout=10,
    )
    assert res.status_code == 201, res.text
    return live_server, headers, res.json()


def test_parallel_payments_never_take_the_bill_below_zero_due(cash_desk):
    base, headers, bill = cash_desk
    url = f"{base}/api/bills/{bill['id']}/payments"
    answers = in_parallel(
        PARALLEL,
        lambda: requests.post(url, json={"amount": "300.00", "method": "CASH"}, headers=headers, timeout=30),
    )
    codes = sorted(res.status_code for res in answers)
    assert codes == [201] * 3 + [422] * (PARALLEL - 3), [res.text for res in answers]
    final = requests.get(f"{base}/api/bills/{bill['id']}", headers=headers, timeout=10).json()
    assert (final["paid_amount"], final["due_amount"], final["status"]) == (
        "900.00",
        "100.00",
        "PARTIALLY_PAID",
    )
    assert [p["amount"] for p in final["payments"]] == ["300.00"] * 3


def test_parallel_retries_with_one_key_record_one_payment(cash_desk):
    base, headers, bill = cash_desk
    url = f"{base}/api/bills/{bill['id']}/payments"
    keyed = {**headers, "Idempotency-Key": "till-7-receipt-42"}
    answers = in_parallel(
        PARALLEL,
        lambda: requests.post(url, json={"amount": "250.00", "method": "CARD"}, headers=keyed, timeout=30),
    )
    assert [res.status_code for res in answers] == [201] * PARALLEL, [res.text for res in answers]
    bodies = [res.json() for res in answers]
    assert all(body == bodies[0] for body in bodies)
    assert sum(1 for res in answers if res.headers.get("Idempotent-Replayed") == "true") == PARALLEL - 1
    final = requests.get(f"{base}/api/bills/{bill['id']}", headers=headers, timeout=10).json()
    assert len(final["payments"]) == 1
    assert final["paid_amount"] == "250.00"
    assert bodies[0] == final


def test_parallel_bill_creation_hands_out_unique_numbers(live_server, make_user, factory):
    headers = sign_in(live_server, make_user("reception"))
    patient = factory.patient()
    body = {"patient_id": patient, "items": [{"description": "Visit", "quantity": 1, "unit_price": "10"}]}
    count = 20
    answers = in_parallel(
        count, lambda: requests.post(f"{live_server}/api/bills", json=body, headers=headers, timeout=30)
    )
    assert [res.status_code for res in answers] == [201] * count, [res.text for res in answers]
    numbers = sorted(res.json()["number"] for res in answers)
    assert len(set(numbers)) == count
    assert [int(n[-6:]) for n in numbers] == list(range(1, count + 1))  # no gaps, no duplicates


def test_parallel_payments_and_refunds_keep_the_ledger_true(live_server, make_user, factory):
    """Payments and refunds racing on one bill: paid stays within 0..total, rows match totals."""
    cashier = sign_in(live_server, make_user("cashier"))
    admin = sign_in(live_server, make_user("admin"))
    bill = requests.post(
        f"{live_server}/api/bills",
        json={
            "patient_id": factory.patient(),
            "items": [{"description": "Ward", "quantity": 1, "unit_price": "500"}],
        },
        headers=cashier,
        timeout=10,
    ).json()
    url = f"{live_server}/api/bills/{bill['id']}"
    requests.post(f"{url}/payments", json={"amount": "200", "method": "CASH"}, headers=cashier, timeout=10)
    calls = iter(range(1000))
    lock = threading.Lock()

    def send():
        with lock:
            n = next(calls)
        if n % 2:
            return requests.post(
                f"{url}/refunds", json={"amount": "150", "reason": "race"}, headers=admin, timeout=30
            )
        return requests.post(
            f"{url}/payments", json={"amount": "150", "method": "CASH"}, headers=cashier, timeout=30
        )

    answers = in_parallel(PARALLEL, send)
    assert {res.status_code for res in answers} <= {201, 422}
    final = requests.get(url, headers=cashier, timeout=10).json()
    paid = sum(float(p["amount"]) * (1 if p["kind"] == "PAYMENT" else -1) for p in final["payments"])
    assert 0 <= paid <= 500
    assert f"{paid:.2f}" == final["paid_amount"]
    assert f"{500 - paid:.2f}" == final["due_amount"]
    assert len(final["payments"]) == 1 + sum(1 for res in answers if res.status_code == 201)
