"""SQL statement counts: the snapshot and the lists cost the same for 1 row and for 50;
bookings do not go back to the users table for the doctor's fees."""

from __future__ import annotations

import re

from tests.appointments.helpers import book_ok, set_status

USERS_TABLE = re.compile(r"\busers\b", re.IGNORECASE)


def statements(counter) -> list[str]:
    """The SQL statements run, without SQLite's transaction-control BEGIN."""
    return [s for s in counter.statements if not s.lstrip().upper().startswith("BEGIN")]


def counted(count_queries, call):
    with count_queries() as counter:
        res = call()
    assert res.status_code in (200, 201), res.get_json()
    return len(statements(counter)), res.get_json()


def test_snapshot_statements_do_not_grow_with_the_queue(app, reception, dr, new_patient, count_queries):
    def snapshot():
        return counted(count_queries, lambda: reception.get(f"/api/queue/{dr.id}"))

    first = book_ok(reception, new_patient(), dr.id)
    set_status(reception, first["id"], "IN_CONSULTATION")
    book_ok(reception, new_patient(), dr.id)  # a write: the next read is uncached
    small, body = snapshot()
    assert len(body["entries"]) == 2
    cached, _ = snapshot()
    for n in range(48):
        book_ok(reception, new_patient(f"Patient {n}"), dr.id)
    large, body = snapshot()
    assert len(body["entries"]) == 50
    # version + entries in one statement, recent durations in another (the doctor's
    # name comes from the staff cache, warmed by the bookings).
    assert small == large == 2
    assert cached == 0


def test_masked_snapshot_statements_do_not_grow(app, reception, display, dr, new_patient, count_queries):
    book_ok(reception, new_patient(), dr.id)
    small, _ = counted(count_queries, lambda: display.get(f"/api/queue/{dr.id}"))
    for n in range(49):
        book_ok(reception, new_patient(f"Patient {n}"), dr.id)
    large, body = counted(count_queries, lambda: display.get(f"/api/queue/{dr.id}"))
    assert len(body["entries"]) == 50
    assert small == large <= 4


def test_list_statements_do_not_grow_with_the_page(app, reception, cashier, dr, new_patient, count_queries):
    patient_id = new_patient()
    first = book_ok(reception, patient_id, dr.id)
    # Warm the caller's identity cache, so only the list's own statements are counted.
    cashier.get("/api/auth/me")

    def lists():
        return {
            "appointments": counted(count_queries, lambda: cashier.get("/api/appointments?limit=100")),
            "by_doctor": counted(count_queries, lambda: cashier.get(f"/api/appointments?doctor_id={dr.id}")),
            "patient": counted(
                count_queries, lambda: cashier.get(f"/api/patients/{patient_id}/appointments?limit=100")
            ),
            "events": counted(
                count_queries, lambda: cashier.get(f"/api/appointments/{first['id']}/events?limit=100")
            ),
        }

    small = lists()
    for n in range(49):
        book_ok(reception, patient_id, dr.id)
        # more events on the first appointment too
        set_status(reception, first["id"], "NO_SHOW" if n % 2 == 0 else "WAITING")
    large = lists()
    assert len(large["appointments"][1]["data"]) == 50
    assert len(large["patient"][1]["data"]) == 50
    assert large["events"][1]["meta"]["total"] == 50
    counts_small = {name: count for name, (count, _) in small.items()}
    counts_large = {name: count for name, (count, _) in large.items()}
    assert counts_small == counts_large == {"appointments": 2, "by_doctor": 2, "patient": 3, "events": 3}


def test_one_appointment_is_one_statement(reception, cashier, dr, new_patient, count_queries):
    booked = book_ok(reception, new_patient(), dr.id)
    cashier.get("/api/auth/me")
    count, body = counted(count_queries, lambda: cashier.get(f"/api/appointments/{booked['id']}"))
    assert body["id"] == booked["id"]
    assert count == 1


def test_bookings_do_not_query_the_users_table_each_time(app, reception, dr, new_patient, count_queries):
    patients = [new_patient(f"Patient {n}") for n in range(8)]
    book_ok(reception, patients[0], dr.id)  # warms the doctor's cached fees
    per_booking = []
    with count_queries() as counter:
        for patient_id in patients[1:]:
            start = len(statements(counter))
            book_ok(reception, patient_id, dr.id)
            per_booking.append(len(statements(counter)) - start)
    touching_users = [s for s in counter.statements if USERS_TABLE.search(s)]
    assert touching_users == []
    # The same work for the 2nd booking as for the 8th: nothing grows with the queue.
    assert len(set(per_booking)) == 1, per_booking


def test_status_change_and_next_statements_do_not_grow(app, reception, dr, new_patient, count_queries):
    booked = [book_ok(reception, new_patient(f"P {n}"), dr.id) for n in range(4)]
    reception.post(f"/api/queue/{dr.id}/next")  # someone in the room for every measured /next
    small_cancel, _ = counted(count_queries, lambda: set_status(reception, booked[2]["id"], "CANCELLED"))
    small_next, _ = counted(count_queries, lambda: reception.post(f"/api/queue/{dr.id}/next"))
    more = [book_ok(reception, new_patient(f"Q {n}"), dr.id) for n in range(40)]
    large_cancel, _ = counted(count_queries, lambda: set_status(reception, more[-1]["id"], "CANCELLED"))
    large_next, _ = counted(count_queries, lambda: reception.post(f"/api/queue/{dr.id}/next"))
    assert small_cancel == large_cancel
    assert small_next == large_next
