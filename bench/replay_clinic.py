"""The clinic a day replay runs in, set up through the API as an admin would: the two fee
categories, a medicine and an instruction (found, or created), and the run's own doctors
(with fees), reception and cashier desk accounts and a display account, each signed in.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bench.lib.http import Http, SignInFailed, sign_in


class SetupError(Exception):
    """The run could not start (sign-in, accounts, reference data, the URL)."""


# --- the clinic set up for the run -------------------------------------------------------------


@dataclass
class Doctor:
    index: int
    id: int
    token: str
    amount: str  # consultation fee + hospital fee: what each bill comes to
    expected: int  # patients assigned to this doctor
    inbox: object = None  # gevent Queue: one item per booked patient, None at the end of the day
    slots: object = None  # BoundedSemaphore(max_waiting): reception waits when the queue is full
    calls: list[tuple[int, int]] = field(default_factory=list)  # (version, appointment id)
    booked: int = 0


@dataclass(slots=True)
class Booking:
    patient_id: int
    mrn: str
    appointment_id: int
    doctor_id: int
    token: int
    bill_id: int
    amount: str
    appointment_date: str
    paid: bool = False


@dataclass
class Clinic:
    host: str
    port: int
    admin: Http
    doctors: list[Doctor]
    reception_tokens: list[str]
    cashier_tokens: list[str]
    display_token: str
    medicine_id: int
    instruction_id: int | None
    tag: str

    def http(self, token: str) -> Http:
        return Http(self.host, self.port, token)


def login(host: str, port: int, username: str, password: str) -> tuple[str, dict]:
    try:
        return sign_in(f"http://{host}:{port}", username, password)
    except SignInFailed as exc:
        raise SetupError(str(exc)) from None


def _fee(index: int) -> tuple[str, str]:
    consultation, hospital = 300 + 50 * (index % 5), 50 + 25 * (index % 3)
    return f"{consultation}.00", f"{hospital}.00"


def _ensure_categories(admin: Http) -> None:
    """The two fee categories the booking files its bill items under: found, or created."""
    for name in ("Consultation", "Hospital fee"):
        found = admin.request("GET", "/api/categories?" + urlencode({"q": name, "limit": 100}))
        if found.status != 200:
            raise SetupError(f"GET /api/categories failed: {found.brief()}")
        if not any(row["name"] == name for row in found.data["data"]):
            created = admin.request("POST", "/api/categories", {"name": name})
            if created.status not in (201, 409):
                raise SetupError(f"creating category {name!r} failed: {created.brief()}")


def _ensure_reference(admin: Http) -> tuple[int, int | None]:
    """The two fee categories, a medicine and an instruction: found, or created."""
    _ensure_categories(admin)
    medicines = admin.request("GET", "/api/medicines?limit=1")
    if medicines.status != 200:
        raise SetupError(f"GET /api/medicines failed: {medicines.brief()}")
    if medicines.data["data"]:
        medicine_id = medicines.data["data"][0]["id"]
    else:
        body = {"name": "Paracetamol", "generic_name": "Paracetamol", "form": "tablet", "strength": "500 mg"}
        created = admin.request("POST", "/api/medicines", {**body, "unit_price": "2.00"})
        if created.status != 201:
            raise SetupError(f"creating a medicine failed: {created.brief()}")
        medicine_id = created.data["id"]
    instructions = admin.request("GET", "/api/medicine-instructions?limit=1")
    instruction_id = None
    if instructions.status == 200 and instructions.data["data"]:
        instruction_id = instructions.data["data"][0]["id"]
    else:
        created = admin.request("POST", "/api/medicine-instructions", {"text": "After food"})
        if created.status == 201:
            instruction_id = created.data["id"]
    return medicine_id, instruction_id


def prepare_clinic(
    host: str, port: int, admin_user: str, admin_password: str, doctors: int, desks: int, patients: int
) -> Clinic:
    """Sign in as admin; create this run's doctors, desk accounts and display; sign them in."""
    import gevent.pool

    admin_token, admin_account = login(host, port, admin_user, admin_password)
    if admin_account["role"] != "admin":
        raise SetupError(f"{admin_user!r} is a {admin_account['role']} account, not an admin one")
    admin = Http(host, port, admin_token)
    medicine_id, instruction_id = _ensure_reference(admin)
    tag = f"r{int(time.time()):x}{random.randrange(16**3):03x}"
    password = uuid.uuid4().hex

    def create(username: str, role: str, name: str, **extra) -> int:
        client = Http(host, port, admin_token)
        body = {"username": username, "password": password, "name": name, "role": role, **extra}
        answer = client.request("POST", "/api/staff", body)
        client.close()
        if answer.status != 201:
            raise SetupError(f"creating {role} {username!r} failed: {answer.brief()}")
        return answer.data["id"]

    def make_doctor(index: int) -> Doctor:
        consultation, hospital = _fee(index)
        username = f"{tag}-doctor{index + 1}"
        create(
            username,
            "doctor",
            f"Dr. Replay {index + 1}",
            consultation_fee=consultation,
            hospital_fee=hospital,
        )
        token, user = login(host, port, username, password)
        amount = f"{int(consultation[:-3]) + int(hospital[:-3])}.00"
        expected = patients // doctors + (1 if index < patients % doctors else 0)
        return Doctor(index=index, id=user["id"], token=token, amount=amount, expected=expected)

    def make_desk(role: str, number: int) -> str:
        username = f"{tag}-{role}{number}"
        create(username, role, f"Replay {role} {number}")
        return login(host, port, username, password)[0]

    def quietly(make, *args):
        try:
            return make(*args)
        except SetupError as exc:  # raised once below, not once per greenlet
            return exc

    pool = gevent.pool.Pool(8)  # sign-up and sign-in hash passwords: CPU-bound on the server
    doctor_jobs = [pool.spawn(quietly, make_doctor, index) for index in range(doctors)]
    reception_jobs = [pool.spawn(quietly, make_desk, "reception", n + 1) for n in range(desks)]
    cashier_jobs = [pool.spawn(quietly, make_desk, "cashier", n + 1) for n in range(desks)]
    display_job = pool.spawn(quietly, make_desk, "display", 1)
    pool.join(raise_error=True)
    jobs = [*doctor_jobs, *reception_jobs, *cashier_jobs, display_job]
    failed = next((job.value for job in jobs if isinstance(job.value, SetupError)), None)
    if failed is not None:
        raise failed
    return Clinic(
        host=host,
        port=port,
        admin=admin,
        doctors=[job.value for job in doctor_jobs],
        reception_tokens=[job.value for job in reception_jobs],
        cashier_tokens=[job.value for job in cashier_jobs],
        display_token=display_job.value,
        medicine_id=medicine_id,
        instruction_id=instruction_id,
        tag=tag,
    )
