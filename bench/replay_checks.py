"""The day replay's end: the final state read back through the API (bench/day_replay.py's
docstring lists what must hold), by a pool of admin clients.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from bench.lib.http import Answer, Http
from bench.replay_clinic import Booking, Clinic, Doctor


class Verification:
    """The final state read back through the API by a pool of admin clients."""

    def __init__(self, clinic: Clinic, bookings: dict[int, Booking]):
        self.clinic, self.bookings = clinic, bookings
        self.problems: list[str] = []
        self.final_versions: dict[int, int] = {}
        self._clients: list[Http] = []

    @contextmanager
    def client(self) -> Iterator[Http]:
        conn = (
            self._clients.pop()
            if self._clients
            else Http(self.clinic.host, self.clinic.port, self.clinic.admin.token)
        )
        try:
            yield conn
        finally:
            self._clients.append(conn)

    def close(self) -> None:
        for conn in self._clients:
            conn.close()

    def get(self, path: str) -> Answer:
        with self.client() as api:
            return api.request("GET", path)

    def queue_empty(self, doctor: Doctor) -> None:
        answer = self.get(f"/api/queue/{doctor.id}")
        if answer.status != 200:
            self.problems.append(f"queue of doctor {doctor.id}: {answer.brief()}")
            return
        snapshot = answer.data
        self.final_versions[doctor.id] = snapshot["version"]
        if snapshot["entries"] or snapshot["waiting_count"] or snapshot["in_consultation"]:
            self.problems.append(
                f"queue of doctor {doctor.id} not empty: {snapshot['waiting_count']} waiting, "
                f"{len(snapshot['entries'])} active"
            )

    def _rows(self, path: str, query: dict, what: str) -> list[dict] | None:
        """Every row of a list, 100 a page (None, and a problem, if a page fails)."""
        rows, page = [], 1
        while True:
            answer = self.get(f"{path}?{urlencode({**query, 'limit': 100, 'page': page})}")
            if answer.status != 200:
                self.problems.append(f"{what}: {answer.brief()}")
                return None
            rows.extend(answer.data["data"])
            if page * 100 >= answer.data["meta"]["total"]:
                return rows
            page += 1

    def appointments_of(self, doctor: Doctor) -> None:
        dates = {b.appointment_date for b in self.bookings.values() if b.doctor_id == doctor.id}
        rows: list[dict] = []
        for day in sorted(dates):
            found = self._rows("/api/appointments", {"doctor_id": doctor.id, "date": day},
                               f"appointments of doctor {doctor.id}")  # fmt: skip
            if found is None:
                return
            rows.extend(found)
            tokens = sorted(row["token"] for row in rows if row["appointment_date"] == day)
            if tokens != list(range(1, len(tokens) + 1)):
                self.problems.append(
                    f"doctor {doctor.id} on {day}: tokens are not 1..{len(tokens)} without gaps or duplicates"
                )
        if len(rows) != doctor.expected:
            self.problems.append(f"doctor {doctor.id}: {len(rows)} appointments, expected {doctor.expected}")
        statuses = Counter(row["status"] for row in rows)
        if set(statuses) - {"COMPLETED"}:
            self.problems.append(f"doctor {doctor.id}: appointments not all COMPLETED: {dict(statuses)}")

    def bill_paid(self, booking: Booking) -> None:
        answer = self.get(f"/api/bills/{booking.bill_id}")
        if answer.status != 200:
            self.problems.append(f"bill {booking.bill_id}: {answer.brief()}")
            return
        bill = answer.data
        expected = ("PAID", "0.00", booking.amount, booking.amount)
        if (bill["status"], bill["due_amount"], bill["paid_amount"], bill["total_amount"]) != expected:
            self.problems.append(
                f"bill {bill['id']}: {bill['status']} total {bill['total_amount']} paid {bill['paid_amount']} "
                f"due {bill['due_amount']} (expected {booking.amount} paid in full)"
            )
        elif bill["appointment_id"] != booking.appointment_id or len(bill["payments"]) != 1:
            self.problems.append(f"bill {bill['id']}: wrong appointment or {len(bill['payments'])} payments")

    def none_of_ours_in(self, status: str) -> None:
        ours = {booking.bill_id for booking in self.bookings.values()}
        found = [bill["id"] for bill in self._rows("/api/bills", {"status": status}, f"bills {status}") or []
                 if bill["id"] in ours]  # fmt: skip
        if found:
            self.problems.append(f"{len(found)} of this run's bills are {status}, e.g. bill {found[0]}")

    def bookkeeping(self, patients: int) -> None:
        """What the run's own records must show: every id handed out once, every bill paid."""
        bookings = self.bookings.values()
        if len(bookings) != patients:
            self.problems.append(f"{len(bookings)} appointments booked, expected {patients}")
        for key, what in (("patient_id", "a patient id"), ("mrn", "an MRN"), ("bill_id", "a bill id")):
            if len({getattr(b, key) for b in bookings}) != len(bookings):
                self.problems.append(f"{what} was handed out twice")
        per_day = Counter((b.doctor_id, b.appointment_date, b.token) for b in bookings)
        if any(n > 1 for n in per_day.values()):
            self.problems.append("a token was handed out twice for one doctor and day")
        unpaid = sum(1 for b in bookings if not b.paid)
        if unpaid:
            self.problems.append(f"{unpaid} bills were not paid")


def verify(clinic: Clinic, bookings: dict[int, Booking], args) -> tuple[list[str], dict[int, int]]:
    """Problems found through the API (empty: all good), and each doctor's final queue version."""
    import gevent.pool

    check = Verification(clinic, bookings)
    pool = gevent.pool.Pool(max(1, min(args.concurrency, 50)))
    for doctor in clinic.doctors:
        pool.spawn(check.queue_empty, doctor)
        pool.spawn(check.appointments_of, doctor)
    for status in ("UNPAID", "PARTIALLY_PAID"):
        pool.spawn(check.none_of_ours_in, status)
    chosen = list(bookings.values())
    if args.verify_sample and len(chosen) > args.verify_sample:
        chosen = random.Random(args.seed).sample(chosen, args.verify_sample)
    for booking in chosen:
        pool.spawn(check.bill_paid, booking)
    pool.join(raise_error=True)
    check.close()
    check.bookkeeping(args.patients)
    return check.problems[:200], check.final_versions
