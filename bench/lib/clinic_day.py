"""A patient's clinic day through the HTTP API, as every driver takes it: the day replay
(bench/day_replay.py), the Locust load test (loadtest/locustfile.py) and the tests.

The day: reception registers the patient (or searches for one), looks at a doctor's
queue and books (the booking opens the bill); the doctor calls the next patient in
(`POST /api/queue/<id>/next`, whose answer is the snapshot with the new `version`),
prescribes for the patient in the room and completes the visit; a cashier pays the bill
with an Idempotency-Key. Meanwhile the waiting-room display holds
`GET /api/queue/<id>/stream` open and receives each new snapshot.

Each request is a `Step`: its name (what a run reports per step), method, path template
(one row per step in Locust's statistics), the status of a success and what a success's
body must hold. A driver hands the step functions a `Client`: anything with
`call(step, path, body, headers, valid) -> Answer | None` that sends the request, records
it its own way, and returns the answer when `judge` calls it a success. Some answers are
not the client's fault in a clinic others share (nobody waiting, a bill another desk
paid first): a step lists them as `benign`; Locust counts them under their own name,
the day replay (its clinic is its own) as errors.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from bench.lib.http import Answer
from bench.lib.sse import Event, EventStream

FIRST_NAMES = ("Asha", "Ravi", "Mina", "Omar", "Lena", "Arjun", "Priya", "Imran", "Sara", "Kiran", "Vikram")
SURNAMES = ("Kumar", "Das", "Shah", "Ali", "Roy", "Nair", "Iyer", "Khan", "Rao", "Singh", "Mehta", "Gill")


@dataclass(frozen=True, slots=True)
class Benign:
    """An answer that is not a failure of the client: `status`, and `text` in its body."""

    status: int
    label: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    method: str
    label: str  # the path with its ids as [placeholders]
    status: int  # the status of a success
    valid: Callable[[object], object] | None = None  # truthy for a success's body
    benign: tuple[Benign, ...] = ()


class Client(Protocol):
    def call(
        self,
        step: Step,
        path: str,
        body: object = None,
        headers: dict | None = None,
        valid: Callable[[object], object] | None = None,
    ) -> Answer | None:
        """Send `step.method path`; the answer when `judge` calls it a success, else None."""
        ...


REGISTER = Step("register", "POST", "/api/patients", 201, lambda d: d["id"] and d["mrn"])
SEARCH = Step("search", "GET", "/api/patients?q=[q]", 200, lambda d: isinstance(d["data"], list))
QUEUE = Step("queue", "GET", "/api/queue/[doctor_id]", 200, lambda d: d["waiting_count"] >= 0)
BOOK = Step("book", "POST", "/api/appointments", 201, lambda d: d["status"] == "WAITING" and d["bill_id"])
NEXT = Step("next", "POST", "/api/queue/[doctor_id]/next", 200,
            lambda d: d["in_consultation"]["appointment_id"], (Benign(409, "nobody waiting"),))  # fmt: skip
PRESCRIBE = Step("prescribe", "POST", "/api/appointments/[id]/prescriptions", 201)
COMPLETE = Step(
    "complete", "PATCH", "/api/appointments/[id]/status", 200, lambda d: d["status"] == "COMPLETED"
)
UNPAID_BILLS = Step("bills", "GET", "/api/bills?status=UNPAID", 200, lambda d: isinstance(d["data"], list))
PAY = Step("pay", "POST", "/api/bills/[id]/payments", 201,
           lambda d: d["status"] == "PAID" and d["due_amount"] == "0.00",
           (Benign(422, "paid first by another desk", "due amount"),))  # fmt: skip


def judge(step: Step, answer: Answer, valid: Callable[[object], object] | None = None) -> bool:
    """A success: the step's status, and a body that `valid` (or the step's own check) accepts."""
    if answer.status != step.status:
        return False
    check = valid or step.valid
    if check is None:
        return True
    try:
        return bool(check(answer.data))
    except (KeyError, TypeError, AttributeError, IndexError):
        return False


def benign(step: Step, answer: Answer) -> Benign | None:
    """The step's benign outcome this answer is, if any."""
    text = answer.data if isinstance(answer.data, str) else json.dumps(answer.data)
    return next((b for b in step.benign if b.status == answer.status and b.text in text), None)


# --- reception ---------------------------------------------------------------------------------


def patient_body(rng: random.Random, number: int | None = None) -> dict:
    """A new patient as reception types it in (`number` makes the name unique)."""
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
    return {
        "name": name if number is None else f"{name} {number}",
        "gender": rng.choice(("female", "male", "other")),
        "age": rng.randrange(1, 90),
        "phone": f"+91{rng.choice('6789')}{rng.randrange(10**9):09d}",
    }


def register(client: Client, body: dict) -> Answer | None:
    return client.call(REGISTER, "/api/patients", body)


def search(client: Client, q: str) -> Answer | None:
    return client.call(SEARCH, f"/api/patients?{urlencode({'q': q})}")


def waiting_count(client: Client, doctor_id: int) -> int | None:
    """How many wait for the doctor today (None: the queue could not be read)."""
    answer = client.call(QUEUE, f"/api/queue/{doctor_id}")
    return None if answer is None else answer.data["waiting_count"]


def book(client: Client, patient_id: int, doctor_id: int, complaint: str = "fever") -> Answer | None:
    """Book today's visit (the answer: the appointment, WAITING, with its token and bill)."""
    body = {
        "patient_id": patient_id,
        "doctor_id": doctor_id,
        "appointment_type": "NEW",
        "chief_complaint": complaint,
    }
    return client.call(BOOK, "/api/appointments", body)


# --- the consulting room -------------------------------------------------------------------------


def prescription(medicine_id: int, instruction_id: int | None = None) -> dict:
    item = {"medicine_id": medicine_id, "dosage": "1 tablet", "frequency": "twice a day", "duration_days": 5,
            "quantity": 10}  # fmt: skip
    if instruction_id is not None:
        item["instruction_id"] = instruction_id
    return {"notes": "Rest and fluids.", "items": [item]}


@dataclass(slots=True)
class Visit:
    called: Answer  # `next`: the snapshot with the patient in the room and the new version
    prescribed: Answer | None = None
    completed: Answer | None = None

    @property
    def appointment_id(self) -> int:
        return self.called.data["in_consultation"]["appointment_id"]

    @property
    def token(self) -> int:
        return self.called.data["in_consultation"]["token"]

    @property
    def version(self) -> int:
        return self.called.data["version"]


def call_next(client: Client, doctor_id: int) -> Visit | None:
    """Call the next patient in (None: nobody waiting, or the call failed)."""
    answer = client.call(NEXT, f"/api/queue/{doctor_id}/next")
    return None if answer is None else Visit(answer)


def finish_visit(client: Client, visit: Visit, prescribed: dict) -> Visit:
    """Prescribe for the patient in the room, then complete the visit."""
    appointment_id = visit.appointment_id
    visit.prescribed = client.call(
        PRESCRIBE,
        f"/api/appointments/{appointment_id}/prescriptions",
        prescribed,
        valid=lambda d: d["appointment_id"] == appointment_id,
    )
    visit.completed = client.call(
        COMPLETE, f"/api/appointments/{appointment_id}/status", {"status": "COMPLETED"}
    )
    return visit


def see_next_patient(client: Client, doctor_id: int, prescribed: dict) -> Visit | None:
    """The doctor's round: call the next patient in, prescribe, complete."""
    visit = call_next(client, doctor_id)
    return None if visit is None else finish_visit(client, visit, prescribed)


# --- the cash desk -----------------------------------------------------------------------------


def unpaid_bills(client: Client, limit: int = 20) -> list[dict]:
    answer = client.call(UNPAID_BILLS, f"/api/bills?status=UNPAID&limit={limit}")
    return [] if answer is None else answer.data["data"]


def pay(
    client: Client, bill_id: int, amount: str, method: str = "CASH", reference: str | None = None
) -> Answer | None:
    """Pay `amount` of the bill, with an Idempotency-Key as a till sends it (a retry is safe)."""
    body = {"amount": amount, "method": method}
    if reference is not None:
        body["reference"] = reference
    return client.call(
        PAY, f"/api/bills/{bill_id}/payments", body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )


# --- the waiting-room display -------------------------------------------------------------------


def open_display(
    host: str, port: int, doctor_id: int, token: str, last_version: int | None = None, timeout: float = 60.0
) -> EventStream:
    """The doctor's queue stream as a display holds it (HTTP/1.0: the body is the event
    stream itself), resuming after `last_version` if given; StreamEnded if refused."""
    return EventStream.open(
        host,
        port,
        f"/api/queue/{doctor_id}/stream",
        {"Authorization": f"Bearer {token}"},
        last_event_id=last_version,
        protocol="HTTP/1.0",
        timeout=timeout,
    )


def snapshots(stream: EventStream) -> Iterator[tuple[float, int, bytes]]:
    """(arrival time, version, JSON bytes) of each snapshot the stream delivers (pings skipped)."""
    for received, item in stream.items():
        if isinstance(item, Event) and item.id is not None:
            yield received, int(item.id), item.data


def read_snapshot(data: bytes, version: int) -> dict:
    """The snapshot an event carries; ValueError if it is not the version its id says."""
    snapshot = json.loads(data)
    if snapshot["version"] != version:
        raise ValueError(f"event id {version} carries snapshot version {snapshot['version']}")
    return snapshot


def shows_identity(snapshot: dict) -> bool:
    """True if a display's snapshot names a patient (the display role must see them masked)."""
    return any("name" in entry["patient"] or "mrn" in entry["patient"] for entry in snapshot["entries"])
