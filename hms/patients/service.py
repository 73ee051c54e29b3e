"""Patient registration, lookup, update, search and the duplicate check.

The MRN comes from the `patient_mrn` counter in the same transaction as the insert:
the counter row stays locked until the commit, so concurrent registrations queue on it
and can never share a number, and a number is never handed out twice.

Phones are stored in E.164 (hms.core.phones): one typed without "+" takes
CLINIC_COUNTRY_CODE; a number that is not possible for its country is 422. Each row
also keeps `phone_national` (the national number without leading zeros) and
`name_folded` (the name without accents, case-folded: hms.core.text), both kept in step
by the model.

Search picks ONE predicate shape from `q`, so each query can use its index (an OR of a
name match with a phone match makes the planner fall back to a sequential scan):

- "P000012" / "p12"                  -> exact MRN (unique index)
- "+91 98450" / "0091 98450"         -> prefix of the E.164 phone, `phone LIKE '+9198450%'`
                                        (btree text_pattern_ops index)
- "98450", "098450", "(984) 50-1"    -> prefix of the number without its country code,
                                        `phone_national LIKE '98450%'` (leading zeros,
                                        a trunk "0", dropped), OR, for digits not starting
                                        with 0, a number typed with its country code but
                                        no "+", `phone LIKE '+98450%'`: two btree
                                        text_pattern_ops indexes (a BitmapOr on PostgreSQL)
- anything else                      -> part of the folded name, `name_folded LIKE
                                        '%jose%'` (trigram GIN index on PostgreSQL)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import MAXYEAR, MINYEAR, date
from difflib import SequenceMatcher

from sqlalchemy import Select, and_, func, insert, or_, select, text

from hms.auth.service import Identity
from hms.core.db import next_value
from hms.core.idempotency import StoredResponse, run_once
from hms.core.pagination import Page, paginate
from hms.core.phones import PhoneError, national_key, parse_phone, search_key
from hms.core.settings import setting
from hms.core.text import fold
from hms.core.time import clinic_today
from hms.core.uow import unit_of_work
from hms.errors import NotFound, ValidationFailed
from hms.extensions import db
from hms.patients.models import Patient
from hms.queue import touch_queues_of_patient

MRN_COUNTER = "patient_mrn"
EARLIEST_BIRTH = date(1900, 1, 1)
_MRN_QUERY = re.compile(r"^[Pp](\d{1,9})$")
_PHONE_QUERY = re.compile(r"^\+?[0-9 ()\-./]*[0-9][0-9 ()\-./]*$")
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


def normalize_phone(raw: str) -> str:
    """A typed phone in E.164 (CLINIC_COUNTRY_CODE when it has no "+"); 422 if it is
    not a possible number."""
    try:
        return parse_phone(raw, setting("CLINIC_COUNTRY_CODE")).e164
    except PhoneError as error:
        raise ValidationFailed.field("phone", str(error)) from None


def _settle_phone(changes: dict) -> None:
    if changes.get("phone") is not None:
        changes["phone"] = normalize_phone(changes["phone"])


def register_patient(data: dict) -> Patient:
    """Create a patient with the next MRN. `data` is the validated create body; its
    phone is stored in E.164."""
    changes = dict(data)
    _settle_age(changes, None, None)
    _settle_phone(changes)
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
        _settle_phone(changes)
        renamed = "name" in changes and changes["name"] != patient.name
        for field, value in changes.items():
            setattr(patient, field, value)
        if renamed:
            touch_queues_of_patient(patient_id)
    return patient


def patient_json(patient: Patient) -> dict:
    """A patient as POST/GET /api/patients answers it (JSON-able)."""
    return {
        "id": patient.id,
        "mrn": patient.mrn,
        "name": patient.name,
        "gender": patient.gender,
        "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else None,
        "age": age_of(patient),
        "phone": patient.phone,
        "address": patient.address,
        "created_at": patient.created_at.isoformat(),
        "updated_at": patient.updated_at.isoformat(),
    }


def register_patient_once(data: dict, identity: Identity, idempotency_key: str | None) -> StoredResponse:
    """Register a patient, at most once per Idempotency-Key of the caller's account:
    the same key with the same `data` answers the first registration (replayed=True)
    and creates nothing; another body under the key is 422. Without a key, a plain
    registration. `identity` is the caller (anything with an `id`); the answer's body
    is the patient's JSON as the API answers it, status 201."""
    return run_once(
        "patient.register",
        None,
        data,
        user_id=identity.id,
        key=idempotency_key,
        work=lambda _uow: patient_json(register_patient(data)),
    )


# --- search ------------------------------------------------------------------------------


def classify_query(q: str) -> tuple[str, str]:
    """("mrn" | "phone" | "name", the value to match) for a search string. A phone is
    its digits, with a leading "+" when it was typed with one (or with "00")."""
    term = q.strip()
    mrn = _MRN_QUERY.fullmatch(term)
    if mrn:
        return "mrn", format_mrn(int(mrn.group(1)))
    if _PHONE_QUERY.fullmatch(term):
        digits = re.sub(r"\D", "", term)
        if term.startswith("+"):
            return "phone", "+" + digits
        if digits.startswith("00") and len(digits) > 2:  # international prefix: "0091 98450"
            return "phone", "+" + digits[2:]
        return "phone", digits
    return "name", fold(term)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def phone_predicate(value: str):
    """The indexed predicate of a phone search (see the module docstring). Patterns are
    built here, not in SQL (`:p || '%'`), so the planner sees a constant prefix and can
    use the text_pattern_ops indexes; digits and "+" are no LIKE wildcards."""
    if value.startswith("+"):
        return Patient.phone.like(value + "%")
    national = Patient.phone_national.like(national_key(value) + "%")
    if value.startswith("0"):
        return national
    return or_(national, Patient.phone.like("+" + value + "%"))


def search_statement(q: str | None) -> Select:
    """The patients matching `q` (all when empty), newest first."""
    stmt = select(Patient).order_by(Patient.id.desc())
    if q is None or not q.strip():
        return stmt
    kind, value = classify_query(q)
    if kind == "mrn":
        return stmt.where(Patient.mrn == value)
    if kind == "phone":
        return stmt.where(phone_predicate(value))
    return stmt.where(Patient.name_folded.like(f"%{_escape_like(value)}%", escape="\\"))


def search_patients(q: str | None, page: int, limit: int) -> Page:
    return paginate(search_statement(q), page, limit)


# --- possible duplicates ---------------------------------------------------------------

SAME_PHONE = "same_phone"
SIMILAR_NAME_SAME_BIRTH_YEAR = "similar_name_same_birth_year"
SAME_NAME = "same_name"
# A reason's weight in the ranking; a patient with several reasons adds them up, and
# its `reason` is the heaviest. Name similarity (0..1) breaks ties.
_WEIGHTS = {SAME_PHONE: 4.0, SIMILAR_NAME_SAME_BIRTH_YEAR: 2.0, SAME_NAME: 1.0}
_CANDIDATES = 50  # rows read per kind of match, at most
_SIMILAR = 0.6  # the least name similarity (difflib ratio) of a "similar name"
_TRIGRAM_THRESHOLD = text("SET LOCAL pg_trgm.similarity_threshold = 0.5")


def _birth_year(born: date | None, age: int | None, today: date) -> tuple[int, bool] | None:
    """(year, exact): from the date of birth (exact), else from the age (one year either way)."""
    if born is not None:
        return born.year, True
    if age is not None:
        return today.year - age, False
    return None


def _same_birth_year(one: tuple[int, bool], other: tuple[int, bool]) -> bool:
    if one[1] and other[1]:
        return one[0] == other[0]
    return abs(one[0] - other[0]) <= 1  # an age says the year only to within one


def _birth_year_window(year: int, today: date):
    """Rows whose birth year may be `year` +- 1, from their date of birth or their age
    (a filter on the rows the name index found, not an index of its own)."""
    first, last = date(max(year - 1, MINYEAR), 1, 1), date(min(year + 1, MAXYEAR), 12, 31)
    return or_(
        and_(Patient.date_of_birth >= first, Patient.date_of_birth <= last),
        and_(
            Patient.date_of_birth.is_(None),
            Patient.age >= today.year - year - 1,
            Patient.age <= today.year - year + 1,
        ),
    )


def _similar_names(folded: str, window) -> list[Patient]:
    """Patients whose folded name is similar to `folded` within the birth-year window:
    pg_trgm's `%` on PostgreSQL (the trigram GIN index on name_folded; threshold 0.5),
    most similar first; elsewhere any of its words as a part of the name (LIKE), newest
    first. The caller keeps those whose difflib ratio is at least _SIMILAR."""
    if db.session.get_bind().dialect.name == "postgresql":
        # pg_trgm's default threshold (0.3) lets "asha sharma" pass for "asha rao": the
        # index then hands over most rows sharing a common first or last name. 0.5, for
        # this transaction only, keeps typos ("asha rai" 0.64, "jose fernandez" 0.76).
        db.session.execute(_TRIGRAM_THRESHOLD)
        stmt = (
            select(Patient)
            .where(Patient.name_folded.op("%")(folded), window)
            .order_by(func.similarity(Patient.name_folded, folded).desc(), Patient.id.desc())
        )
    else:
        words = [word for word in folded.split() if len(word) >= 2] or [folded]
        matches = [Patient.name_folded.like(f"%{_escape_like(word)}%", escape="\\") for word in words]
        stmt = select(Patient).where(or_(*matches), window).order_by(Patient.id.desc())
    return list(db.session.scalars(stmt.limit(_CANDIDATES)))


def _similarity(one: str, other: str) -> float:
    return SequenceMatcher(None, one, other).ratio()


def duplicate_summary(patient: Patient, reason: str) -> dict:
    """A possible duplicate as GET /api/patients/duplicates answers it (JSON-able)."""
    return {
        "id": patient.id,
        "mrn": patient.mrn,
        "name": patient.name,
        "gender": patient.gender,
        "age": age_of(patient),
        "phone": patient.phone,
        "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else None,
        "reason": reason,
    }


def find_duplicates(
    *,
    name: str | None = None,
    phone: str | None = None,
    date_of_birth: date | None = None,
    age: int | None = None,
    limit: int = 10,
) -> list[dict]:
    """Up to `limit` registered patients who may be the one about to be registered, best
    first, each a summary (id, mrn, name, gender, age, phone, date_of_birth) with its
    `reason`:

    - "same_phone": the phone (in E.164 as registration would store it, or, for a
      number registration would refuse, the same national digits);
    - "similar_name_same_birth_year": a similar name (accents and case ignored) born
      the same year (from date_of_birth; from an age, one year either way);
    - "same_name": the same name (folded), whatever the birth year.

    Indexed queries only, at most three: phone equality (btree on phone and
    phone_national), name similarity (trigram GIN on name_folded on PostgreSQL) and
    folded-name equality. `date_of_birth` wins over `age` when both are given.
    """
    today = clinic_today()
    found: dict[int, tuple[Patient, dict[str, float]]] = {}

    def note(patient: Patient, reason: str, similarity: float = 0.0) -> None:
        reasons = found.setdefault(patient.id, (patient, {}))[1]
        reasons[reason] = max(reasons.get(reason, 0.0), similarity)

    if phone and phone.strip():
        try:
            parsed = parse_phone(phone, setting("CLINIC_COUNTRY_CODE"))
            match = or_(Patient.phone == parsed.e164, Patient.phone_national == parsed.national)
        except PhoneError:
            key = national_key(phone)
            match = Patient.phone_national == key if len(key) >= 3 else None
        if match is not None:
            for patient in db.session.scalars(select(Patient).where(match).limit(_CANDIDATES)):
                note(patient, SAME_PHONE)

    folded = fold(name or "")
    if folded:
        wanted = _birth_year(date_of_birth, age, today)
        if wanted is not None:
            for patient in _similar_names(folded, _birth_year_window(wanted[0], today)):
                theirs = _birth_year(patient.date_of_birth, patient.age, today)
                similarity = _similarity(folded, patient.name_folded)
                similar = similarity >= _SIMILAR or folded in patient.name_folded
                if theirs is not None and _same_birth_year(wanted, theirs) and similar:
                    note(patient, SIMILAR_NAME_SAME_BIRTH_YEAR, similarity)
        same = select(Patient).where(Patient.name_folded == folded).order_by(Patient.id.desc())
        for patient in db.session.scalars(same.limit(_CANDIDATES)):
            note(patient, SAME_NAME, 1.0)

    def rank(item: tuple[Patient, dict[str, float]]) -> tuple:
        patient, reasons = item
        return (-sum(_WEIGHTS[r] for r in reasons), -max(reasons.values()), -patient.id)

    best = sorted(found.values(), key=rank)[:limit]
    return [duplicate_summary(patient, max(reasons, key=_WEIGHTS.__getitem__)) for patient, reasons in best]


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
        _settle_phone(row)
        # A Core insert: the model's validators do not run, so the derived columns are set here.
        row["name_folded"] = fold(row["name"])
        row["phone_national"] = search_key(row["phone"]) if row.get("phone") else None
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
