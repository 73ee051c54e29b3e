"""Patient registration, lookup, update and search.

The MRN comes from the `patient_mrn` counter in the same transaction as the insert:
the counter row stays locked until the commit, so concurrent registrations queue on it
and can never share a number, and a number is never handed out twice.

Search picks ONE predicate from the shape of `q`, so each query can use its index
(an OR across three predicates makes the planner fall back to a sequential scan):

- "P000012" / "p12"               -> exact MRN (unique index)
- digits, spaces, + - ( )         -> phone prefix on the normalized phone
                                     (btree text_pattern_ops index)
- anything else                   -> part of the name, case-insensitive
                                     (trigram GIN index on lower(name))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date

from sqlalchemy import Select, func, insert, select, text

from hms.core.db import next_value
from hms.core.pagination import Page, paginate
from hms.core.time import clinic_today
from hms.core.uow import unit_of_work
from hms.errors import NotFound, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient
from hms.queue import touch_queues_of_patient

MRN_COUNTER = "patient_mrn"
EARLIEST_BIRTH = date(1900, 1, 1)
_MRN_QUERY = re.compile(r"^[Pp](\d{1,9})$")
_PHONE_QUERY = re.compile(r"^\+?[0-9 ()\-]*[0-9][0-9 ()\-]*$")
_BULK_CHUNK = 1000


def format_mrn(number: int) -> str:
    return f"P{number:06d}"


def years_between(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_of(patient: Patient) -> int | None:
    """Today's age when the date of birth is known, else the age recorded at registration."""
    if patient.date_of_birth is not None:
        return years_between(patient.date_of_birth, clinic_today())
    return patient.age


def _settle_age(changes: dict, current_dob: date | None, current_age: int | None) -> None:
    """Check date_of_birth and age together and fill in the age the row should store.

    A date of birth decides the age; an age sent along must agree with it (422 if not).
    """
    today = clinic_today()
    if "date_of_birth" in changes and changes["date_of_birth"] is not None:
        born = changes["date_of_birth"]
        if born > today:
            raise ValidationFailed.field("date_of_birth", "Must not be in the future.")
        if born < EARLIEST_BIRTH:
            raise ValidationFailed.field("date_of_birth", "Must not be before 1900-01-01.")
    born = changes.get("date_of_birth", current_dob)
    if born is None:
        changes["age"] = changes.get("age", current_age)
        return
    derived = years_between(born, today)
    sent_age = changes.get("age")
    if sent_age is not None and sent_age != derived:
        raise ValidationFailed.field("age", f"Does not agree with date_of_birth (which gives {derived}).")
    changes["age"] = derived


def register_patient(data: dict) -> Patient:
    """Create a patient with the next MRN. `data` is the validated create body."""
    changes = dict(data)
    _settle_age(changes, None, None)
    with unit_of_work():
        patient = Patient(mrn=format_mrn(next_value(MRN_COUNTER)), **changes)
        db.session.add(patient)
        db.session.flush()
        # Every column is known once the row is inserted (id from RETURNING, timestamps
        # set in Python): detached before COMMIT, the answer is not expired and re-read.
        db.session.expunge(patient)
    return patient


def get_patient(patient_id: int) -> Patient:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"Patient {patient_id} not found.")
    return patient


def update_patient(patient_id: int, data: dict) -> Patient:
    """Change some fields of a patient. The MRN never changes (the schema rejects it).

    A new name shows at once in the queues the patient is in (today on): their versions
    are bumped in the same transaction, and their snapshots replaced after the commit,
    as for any queue change (the waiting-room display shows the initials)."""
    with unit_of_work():
        patient = get_patient(patient_id)
        changes = dict(data)
        _settle_age(changes, patient.date_of_birth, patient.age)
        renamed = "name" in changes and changes["name"] != patient.name
        for field, value in changes.items():
            setattr(patient, field, value)
        if renamed:
            touch_queues_of_patient(patient_id)
    return patient


# --- the queues that show a patient's name (lead: -> hms.queue) ------------------------


def classify_query(q: str) -> tuple[str, str]:
    """("mrn" | "phone" | "name", the value to match) for a search string."""
    term = q.strip()
    mrn = _MRN_QUERY.fullmatch(term)
    if mrn:
        return "mrn", format_mrn(int(mrn.group(1)))
    if _PHONE_QUERY.fullmatch(term):
        digits = re.sub(r"\D", "", term)
        return "phone", ("+" + digits) if term.startswith("+") else digits
    return "name", term.lower()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_statement(q: str | None) -> Select:
    """The patients matching `q` (all when empty), newest first."""
    stmt = select(Patient).order_by(Patient.id.desc())
    if q is None or not q.strip():
        return stmt
    kind, value = classify_query(q)
    if kind == "mrn":
        return stmt.where(Patient.mrn == value)
    if kind == "phone":
        # The pattern is built here, not in SQL (`:p || '%'`), so the planner sees a
        # constant prefix and can use the text_pattern_ops index. Digits and "+" are
        # not LIKE wildcards.
        return stmt.where(Patient.phone.like(value + "%"))
    return stmt.where(func.lower(Patient.name).like(f"%{_escape_like(value)}%", escape="\\"))


def search_patients(q: str | None, page: int, limit: int) -> Page:
    return paginate(search_statement(q), page, limit)


def reserve_mrns(count: int) -> list[str]:
    """Advance the MRN counter by `count` in one statement; the caller's transaction."""
    last = db.session.execute(
        text(
            "INSERT INTO counters (name, value) VALUES (:name, :count) "
            "ON CONFLICT (name) DO UPDATE SET value = counters.value + :count "
            "RETURNING value"
        ),
        {"name": MRN_COUNTER, "count": count},
    ).scalar_one()
    return [format_mrn(number) for number in range(last - count + 1, last + 1)]


def register_many(rows: Iterable[dict], progress: Callable[[int], None] | None = None) -> int:
    """Insert many validated patients in one transaction, in batches (seed data, imports).

    Each row is the create body (name, gender, date_of_birth?, age?, phone?, address?);
    MRNs are reserved for all of them at once. Returns how many were inserted.
    """
    rows = [dict(row) for row in rows]
    if not rows:
        return 0
    for row in rows:
        _settle_age(row, None, None)
    with unit_of_work():
        for row, mrn in zip(rows, reserve_mrns(len(rows)), strict=True):
            row["mrn"] = mrn
        for start in range(0, len(rows), _BULK_CHUNK):
            chunk = rows[start : start + _BULK_CHUNK]
            db.session.execute(insert(Patient), chunk)
            if progress:
                progress(len(chunk))
    return len(rows)


def count_patients() -> int:
    return db.session.scalar(select(func.count()).select_from(Patient)) or 0
