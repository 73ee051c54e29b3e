"""Real parallel HTTP requests against gunicorn on PostgreSQL: the queue invariants hold.

Tokens 1..N without gaps or duplicates, active positions exactly 1..K, at most one
patient in the room, and of two racing changes to one appointment exactly one wins.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.appointments.helpers import assert_queue_invariants, make_patient, queue_rows
from tests.conftest import requires_postgres

pytestmark = requires_postgres
PASSWORD = "parallel-pass-1"


class Api:
    """A requests session signed in on the live server."""

    def __init__(self, base: str, username: str):
        self.base = base
        res = requests.post(
            f"{base}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=10
        )
        assert res.status_code == 200, res.text
        self.headers = {"Authorization": f"Bearer {res.json()['access_token']}"}

    def post(self, path: str, json=None) -> requests.Response:
        return requests.post(self.base + path, json=json, headers=self.headers, timeout=60)

    def patch(self, path: str, json=None) -> requests.Response:
        return requests.patch(self.base + path, json=json, headers=self.headers, timeout=60)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=60)


def parallel(calls, workers: int = 25) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture
def setup(app, make_user, live_server):
    desk_user = make_user("reception", password=PASSWORD)
    doctor_user = make_user("doctor", password=PASSWORD)
    return Api(live_server, desk_user.username), doctor_user


def book_all(desk: Api, doctor_id: int, patient_ids: list[int]) -> list[requests.Response]:
    def booking(patient_id):
        body = {"patient_id": patient_id, "doctor_id": doctor_id, "appointment_type": "NEW"}
        return lambda: desk.post("/api/appointments", body)

    return parallel([booking(p) for p in patient_ids])


def test_50_parallel_bookings_get_tokens_and_positions_1_to_50(app, setup):
    desk, doctor = setup
    patients = [make_patient(app, f"Patient {n}") for n in range(50)]
    responses = book_all(desk, doctor.id, patients)
    assert [r.status_code for r in responses] == [201] * 50, [
        r.text for r in responses if r.status_code != 201
    ]
    bodies = [r.json() for r in responses]
    assert sorted(b["token"] for b in bodies) == list(range(1, 51))
    assert sorted(b["queue_position"] for b in bodies) == list(range(1, 51))
    assert len({b["bill_id"] for b in bodies}) == 50
    rows = assert_queue_invariants(app, doctor.id)
    # Positions follow tokens: each booking joined the end of the line under the lock.
    assert [row["queue_position"] for row in rows] == list(range(1, 51))
    snap = desk.get(f"/api/queue/{doctor.id}").json()
    assert [e["token"] for e in snap["entries"]] == list(range(1, 51))
    assert snap["version"] == 50


def test_parallel_cancels_and_completions_keep_positions_1_to_k(app, setup):
    desk, doctor = setup
    patients = [make_patient(app, f"Patient {n}") for n in range(30)]
    booked = sorted((r.json() for r in book_all(desk, doctor.id, patients)), key=lambda b: b["token"])
    to_cancel = [b["id"] for b in booked[15:27]]  # far enough back never to be called in here

    calls = [
        lambda i=i: desk.patch(f"/api/appointments/{i}/status", {"status": "CANCELLED"}) for i in to_cancel
    ]
    calls += [lambda: desk.post(f"/api/queue/{doctor.id}/next") for _ in range(6)]
    responses = parallel(calls)
    assert [r.status_code for r in responses] == [200] * len(calls), [r.text for r in responses]

    rows = assert_queue_invariants(app, doctor.id)
    statuses = [row["status"] for row in rows]
    assert statuses.count("CANCELLED") == 12
    assert statuses.count("COMPLETED") == 5
    assert statuses.count("IN_CONSULTATION") == 1
    assert [row["token"] for row in rows if row["status"] in ("COMPLETED", "IN_CONSULTATION")] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    # The line kept its order: by token, the room first.
    active = sorted((r for r in rows if r["queue_position"]), key=lambda r: r["queue_position"])
    assert [r["token"] for r in active] == [6, *range(7, 16), 28, 29, 30]


def test_two_parallel_next_calls_leave_exactly_one_patient_in_the_room(app, setup):
    desk, doctor = setup
    for round_ in range(5):
        # One patient waiting: one /next calls them in, the other finds nobody (409),
        # or completes them when it runs second and then finds nobody either (409).
        patients = [make_patient(app, f"Round {round_}")]
        book_all(desk, doctor.id, patients)
        responses = parallel([lambda: desk.post(f"/api/queue/{doctor.id}/next")] * 2, workers=2)
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 409], [r.text for r in responses]
        rows = assert_queue_invariants(app, doctor.id)
        in_room = [row for row in rows if row["status"] == "IN_CONSULTATION"]
        assert len(in_room) == 1 and in_room[0]["token"] == round_ + 1
        winner = next(r for r in responses if r.status_code == 200).json()
        assert winner["in_consultation"]["token"] == round_ + 1

    # With two waiting, both calls succeed one after the other: still one in the room.
    book_all(desk, doctor.id, [make_patient(app, "A"), make_patient(app, "B")])
    responses = parallel([lambda: desk.post(f"/api/queue/{doctor.id}/next")] * 2, workers=2)
    assert [r.status_code for r in responses] == [200, 200]
    rows = assert_queue_invariants(app, doctor.id)
    assert [row["status"] for row in rows].count("IN_CONSULTATION") == 1
    assert rows[-1]["status"] == "IN_CONSULTATION"  # the last token is the one in the room


def test_racing_status_changes_on_one_appointment(app, setup):
    desk, doctor = setup
    patients = [make_patient(app, f"Patient {n}") for n in range(10)]
    booked = [r.json() for r in book_all(desk, doctor.id, patients)]
    for appointment in booked:
        path = f"/api/appointments/{appointment['id']}/status"
        responses = parallel(
            [
                lambda p=path: desk.patch(p, {"status": "CANCELLED"}),
                lambda p=path: desk.patch(p, {"status": "NO_SHOW"}),
            ],
            workers=2,
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 409], [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200).json()["status"]
        row = next(row for row in queue_rows(app, doctor.id) if row["id"] == appointment["id"])
        assert row["status"] == winner
        assert_queue_invariants(app, doctor.id)
        events = desk.get(f"/api/appointments/{appointment['id']}/events").json()["data"]
        assert [e["event_type"] for e in events][1:] == [
            "APPOINTMENT_CANCELLED" if winner == "CANCELLED" else "NO_SHOW"
        ]


def test_two_patients_called_into_the_room_at_once(app, setup):
    desk, doctor = setup
    for _ in range(5):
        patients = [make_patient(app, "First"), make_patient(app, "Second")]
        booked = [r.json() for r in book_all(desk, doctor.id, patients)]
        responses = parallel(
            [
                lambda i=b["id"]: desk.patch(f"/api/appointments/{i}/status", {"status": "IN_CONSULTATION"})
                for b in booked
            ],
            workers=2,
        )
        assert sorted(r.status_code for r in responses) == [200, 409]
        rows = assert_queue_invariants(app, doctor.id)
        assert [row["status"] for row in rows].count("IN_CONSULTATION") == 1
        # Clear the room and the line for the next round.
        in_room = next(row for row in rows if row["status"] == "IN_CONSULTATION")
        assert (
            desk.patch(f"/api/appointments/{in_room['id']}/status", {"status": "COMPLETED"}).status_code
            == 200
        )
        for row in queue_rows(app, doctor.id):
            if row["status"] == "WAITING":
                desk.patch(f"/api/appointments/{row['id']}/status", {"status": "CANCELLED"})
        assert_queue_invariants(app, doctor.id)
