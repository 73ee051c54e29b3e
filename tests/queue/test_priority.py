"""Triage through the HTTP API: URGENT patients wait ahead of NORMAL ones, first come,
first served within each priority; the patient in the room is position 1; a patient who
rejoins goes to the end of their priority. Tokens never change, and after every change
the active positions are exactly 1..K."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.appointments.helpers import assert_queue_invariants, book, book_ok, make_patient, set_status
from tests.conftest import requires_postgres


class Line:
    """One doctor's queue as the tests drive it: books, moves, and checks every snapshot."""

    def __init__(self, app, client, doctor_id: int, new_patient):
        self.app, self.client, self.doctor_id, self.new_patient = app, client, doctor_id, new_patient
        self.tokens: dict[int, int] = {}  # appointment id -> the token it was given
        self.names: dict[str, int] = {}  # the test's name for a booking -> appointment id

    def book(self, name: str, priority: str | None = None) -> dict:
        extra = {"priority": priority} if priority is not None else {}
        body = book_ok(self.client, self.new_patient(f"Patient {name}"), self.doctor_id, **extra)
        self.tokens[body["id"]] = body["token"]
        self.names[name] = body["id"]
        return body

    def move(self, name: str, status: str) -> dict:
        res = set_status(self.client, self.names[name], status)
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def next(self) -> dict:
        res = self.client.post(f"/api/queue/{self.doctor_id}/next")
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def snapshot(self) -> dict:
        res = self.client.get(f"/api/queue/{self.doctor_id}")
        assert res.status_code == 200
        return res.get_json()

    def check(self, *expected: str) -> dict:
        """The line is exactly `expected` (the test's names, by position), and every rule holds."""
        snap = self.snapshot()
        entries = snap["entries"]
        by_id = {appointment_id: name for name, appointment_id in self.names.items()}
        assert [by_id[e["appointment_id"]] for e in entries] == list(expected)
        assert [e["queue_position"] for e in entries] == list(range(1, len(entries) + 1))
        assert all(self.tokens[e["appointment_id"]] == e["token"] for e in entries)  # tokens never change
        # The room first, then URGENT, then NORMAL.
        assert [_rank(e) for e in entries] == sorted(_rank(e) for e in entries)
        assert_queue_invariants(self.app, self.doctor_id)
        return snap


def _rank(entry: dict) -> int:
    return 0 if entry["status"] == "IN_CONSULTATION" else 1 if entry["priority"] == "URGENT" else 2


@pytest.fixture
def line(app, reception, dr, new_patient) -> Line:
    return Line(app, reception, dr.id, new_patient)


def test_booking_answers_its_priority_normal_by_default(line):
    normal = line.book("N1")
    assert normal["priority"] == "NORMAL" and normal["queue_position"] == 1
    assert line.book("N2", "NORMAL")["priority"] == "NORMAL"
    urgent = line.book("U3", "URGENT")
    assert urgent["priority"] == "URGENT" and urgent["queue_position"] == 1  # answered where it joined
    assert [e["priority"] for e in line.check("U3", "N1", "N2")["entries"]] == ["URGENT", "NORMAL", "NORMAL"]


@pytest.mark.parametrize("priority", ["urgent", "HIGH", "", None, 1, ["URGENT"]])
def test_an_invalid_priority_is_422_and_books_nothing(app, reception, dr, new_patient, priority):
    res = book(reception, new_patient(), dr.id, priority=priority)
    assert res.status_code == 422
    assert "priority" in res.get_json()["errors"]["json"]
    assert reception.get(f"/api/queue/{dr.id}").get_json()["entries"] == []
    assert assert_queue_invariants(app, dr.id) == []  # no appointment, no token taken


def test_urgent_goes_ahead_of_every_normal_and_after_earlier_urgent_ones(line):
    assert line.book("N1")["queue_position"] == 1
    assert line.book("N2")["queue_position"] == 2
    assert line.book("U3", "URGENT")["queue_position"] == 1
    line.check("U3", "N1", "N2")
    assert line.book("N4")["queue_position"] == 4
    assert line.book("U5", "URGENT")["queue_position"] == 2  # after U3, who came first
    line.check("U3", "U5", "N1", "N2", "N4")
    assert [line.tokens[line.names[n]] for n in ("N1", "N2", "U3", "N4", "U5")] == [1, 2, 3, 4, 5]
    # Leaving the line moves everyone behind up, whatever their priority.
    line.move("U3", "CANCELLED")
    line.check("U5", "N1", "N2", "N4")
    line.move("N1", "NO_SHOW")
    line.check("U5", "N2", "N4")


def test_the_patient_in_the_room_stays_position_1(line):
    line.book("N1")
    line.book("N2")
    assert line.next()["in_consultation"]["token"] == 1
    line.check("N1", "N2")
    urgent = line.book("U3", "URGENT")
    assert urgent["queue_position"] == 2  # behind the room, ahead of the NORMAL line
    line.check("N1", "U3", "N2")
    line.book("U4", "URGENT")
    line.check("N1", "U3", "U4", "N2")
    # Completing the room moves everyone up by one.
    line.move("N1", "COMPLETED")
    line.check("U3", "U4", "N2")


def test_next_calls_the_first_urgent_patient(line):
    line.book("N1")
    line.book("N2")
    line.book("U3", "URGENT")
    line.book("U4", "URGENT")
    snap = line.next()
    assert snap["in_consultation"]["appointment_id"] == line.names["U3"]
    assert snap == line.check("U3", "U4", "N1", "N2")  # next answers the committed snapshot
    line.book("U5", "URGENT")
    line.check("U3", "U4", "U5", "N1", "N2")
    # With someone in the room: completes them, then calls the first URGENT in.
    assert line.next()["in_consultation"]["appointment_id"] == line.names["U4"]
    line.check("U4", "U5", "N1", "N2")
    assert line.next()["in_consultation"]["appointment_id"] == line.names["U5"]
    assert line.next()["in_consultation"]["appointment_id"] == line.names["N1"]  # no URGENT left
    line.check("N1", "N2")


def test_an_urgent_patient_sent_back_from_the_room_goes_to_the_end_of_the_urgent_line(line):
    line.book("N1")
    line.book("U2", "URGENT")
    line.book("U3", "URGENT")
    line.book("N4")
    line.next()
    line.check("U2", "U3", "N1", "N4")
    line.book("U5", "URGENT")
    line.check("U2", "U3", "U5", "N1", "N4")
    back = line.move("U2", "WAITING")  # sent back (e.g. for a test)
    assert back["queue_position"] == 3
    line.check("U3", "U5", "U2", "N1", "N4")
    # A NORMAL patient sent back goes to the end of the NORMAL line, i.e. the very end.
    line.move("U3", "CANCELLED")
    line.move("N1", "IN_CONSULTATION")
    line.check("N1", "U5", "U2", "N4")
    assert line.move("N1", "WAITING")["queue_position"] == 4
    line.check("U5", "U2", "N4", "N1")


def test_a_late_urgent_arrival_rejoins_at_the_end_of_the_urgent_line(line):
    line.book("U1", "URGENT")
    line.book("U2", "URGENT")
    line.book("N3")
    line.book("U4", "URGENT")
    line.next()  # U1 in the room
    line.move("U2", "NO_SHOW")  # called but absent
    line.check("U1", "U4", "N3")
    line.book("U5", "URGENT")
    line.check("U1", "U4", "U5", "N3")
    late = line.move("U2", "WAITING")  # arrived late
    assert late["queue_position"] == 4
    line.check("U1", "U4", "U5", "U2", "N3")
    # Without anyone in the room, and behind no other URGENT patient: at the head.
    line.move("U1", "COMPLETED")
    line.move("U4", "NO_SHOW")
    line.move("U5", "NO_SHOW")
    line.move("U2", "NO_SHOW")
    line.check("N3")
    assert line.move("U5", "WAITING")["queue_position"] == 1
    line.check("U5", "N3")
    # A late NORMAL arrival goes to the very end.
    line.book("N6")
    line.move("N3", "NO_SHOW")
    assert line.move("N3", "WAITING")["queue_position"] == 3
    line.check("U5", "N6", "N3")


def test_estimated_waits_follow_the_priority_order(line):
    # No history: 10 minutes a consultation; nobody in the room.
    for name, priority in (("N1", None), ("N2", None), ("U3", "URGENT"), ("U4", "URGENT")):
        line.book(name, priority)
    snap = line.check("U3", "U4", "N1", "N2")
    assert [e["estimated_wait_minutes"] for e in snap["entries"]] == [0, 10, 20, 30]
    # Someone in the room who just went in: a whole consultation left, then 10 per patient ahead.
    line.next()
    line.book("U5", "URGENT")
    snap = line.check("U3", "U4", "U5", "N1", "N2")
    assert [e["estimated_wait_minutes"] for e in snap["entries"]] == [0, 10, 20, 30, 40]


def test_the_displays_masked_snapshot_carries_the_priority(line, display):
    line.book("N1")
    line.book("U2", "URGENT")
    line.book("N3")
    line.next()  # the URGENT one goes in
    masked = display.get(f"/api/queue/{line.doctor_id}").get_json()
    tokens = [(e["token"], e["priority"]) for e in masked["entries"]]
    assert tokens == [(2, "URGENT"), (1, "NORMAL"), (3, "NORMAL")]
    assert masked["in_consultation"]["priority"] == "URGENT"
    assert all(set(e["patient"]) == {"initials"} for e in masked["entries"])  # still masked
    full = line.snapshot()
    assert [e["priority"] for e in full["entries"]] == [e["priority"] for e in masked["entries"]]


# --- PostgreSQL: real parallel requests --------------------------------------------------

PASSWORD = "triage-pass-1"


def _signed_in(base: str, username: str) -> dict:
    res = requests.post(
        f"{base}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert res.status_code == 200, res.text
    return {"Authorization": f"Bearer {res.json()['access_token']}"}


def _parallel(calls, workers: int = 25) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


@requires_postgres
def test_parallel_urgent_and_normal_bookings_keep_the_line_in_triage_order(app, make_user, live_server):
    headers = _signed_in(live_server, make_user("reception", password=PASSWORD).username)
    doctor_id = make_user("doctor").id

    def booking(patient_id: int, priority: str):
        body = {
            "patient_id": patient_id,
            "doctor_id": doctor_id,
            "appointment_type": "NEW",
            "priority": priority,
        }
        return lambda: requests.post(
            f"{live_server}/api/appointments", json=body, headers=headers, timeout=60
        )

    def status(appointment_id: int, target: str):
        url = f"{live_server}/api/appointments/{appointment_id}/status"
        return lambda: requests.patch(url, json={"status": target}, headers=headers, timeout=60)

    def call_next():
        return requests.post(f"{live_server}/api/queue/{doctor_id}/next", headers=headers, timeout=60)

    def priorities(rows: list[dict]) -> dict[int, str]:
        return {row["id"]: answered[row["id"]] for row in rows}

    # 1. 45 bookings at once, every third one URGENT.
    wanted = ["URGENT" if n % 3 == 0 else "NORMAL" for n in range(45)]
    responses = _parallel([booking(make_patient(app, f"Patient {n}"), p) for n, p in enumerate(wanted)])
    assert [r.status_code for r in responses] == [201] * 45, [
        r.text for r in responses if r.status_code != 201
    ]
    answered = {r.json()["id"]: r.json()["priority"] for r in responses}
    assert sorted(answered.values()) == sorted(wanted)
    rows = assert_queue_invariants(app, doctor_id)  # tokens 1..45, positions 1..45
    kinds = priorities(rows)
    by_position = sorted(rows, key=lambda row: row["queue_position"])
    urgent = [row["token"] for row in by_position if kinds[row["id"]] == "URGENT"]
    normal = [row["token"] for row in by_position if kinds[row["id"]] == "NORMAL"]
    assert [kinds[row["id"]] for row in by_position] == ["URGENT"] * 15 + ["NORMAL"] * 30
    assert urgent == sorted(urgent) and normal == sorted(normal)  # first come, first served in each

    # 2. More bookings of both kinds, racing call-ins and cancellations of NORMAL patients.
    more = [booking(make_patient(app, f"Late {n}"), "URGENT" if n % 2 else "NORMAL") for n in range(10)]
    cancelled = [row["id"] for row in by_position[-6:]]  # the last NORMAL ones: never called in here
    responses = _parallel(more + [status(i, "CANCELLED") for i in cancelled] + [call_next] * 4)
    assert [r.status_code for r in responses[:10]] == [201] * 10, [r.text for r in responses[:10]]
    assert [r.status_code for r in responses[10:]] == [200] * 10, [r.text for r in responses[10:]]
    answered |= {r.json()["id"]: r.json()["priority"] for r in responses[:10]}
    rows = assert_queue_invariants(app, doctor_id)  # tokens 1..55, positions 1..K
    kinds = priorities(rows)
    statuses = [row["status"] for row in rows]
    assert statuses.count("COMPLETED") == 3 and statuses.count("IN_CONSULTATION") == 1
    assert statuses.count("CANCELLED") == 6
    # The four called in were the four first URGENT patients (booked before any late one).
    called = [row["token"] for row in rows if row["status"] in ("COMPLETED", "IN_CONSULTATION")]
    assert called == urgent[:4]
    active = sorted((row for row in rows if row["queue_position"]), key=lambda row: row["queue_position"])
    assert active[0]["status"] == "IN_CONSULTATION"
    waiting = active[1:]
    ranks = [0 if kinds[row["id"]] == "URGENT" else 1 for row in waiting]
    assert ranks == sorted(ranks) and ranks.count(0) == 15 - 4 + 5
    for kind in ("URGENT", "NORMAL"):
        tokens = [row["token"] for row in waiting if kinds[row["id"]] == kind]
        assert tokens == sorted(tokens)
    snap = requests.get(f"{live_server}/api/queue/{doctor_id}", headers=headers, timeout=60).json()
    assert [(e["appointment_id"], e["queue_position"]) for e in snap["entries"]] == [
        (row["id"], row["queue_position"]) for row in active
    ]
