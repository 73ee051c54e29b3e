"""The patients service: MRNs from the counter, age rules, search predicates and their indexes."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select, text

from hms.errors import NotFound, ValidationFailed
from tests.conftest import requires_postgres


@pytest.fixture
def svc(db):
    from hms.patients import service

    return service


@pytest.mark.parametrize(
    "q, expected",
    [
        ("P000012", ("mrn", "P000012")),
        ("p000012", ("mrn", "P000012")),
        (" p12 ", ("mrn", "P000012")),
        ("P1234567", ("mrn", "P1234567")),
        ("98450", ("phone", "98450")),
        ("+91 (984) 50-1", ("phone", "+91984501")),
        ("080-2222", ("phone", "0802222")),
        ("Rao", ("name", "rao")),
        ("  ASHA rao ", ("name", "asha rao")),
        ("P12a", ("name", "p12a")),
        ("P", ("name", "p")),
        ("+", ("name", "+")),
        ("()", ("name", "()")),
        ("1+1", ("name", "1+1")),
    ],
)
def test_the_shape_of_q_picks_one_predicate(svc, q, expected):
    assert svc.classify_query(q) == expected


@pytest.mark.parametrize(
    "born, on, age",
    [
        (date(2000, 2, 29), date(2001, 2, 28), 0),
        (date(2000, 2, 29), date(2001, 3, 1), 1),
        (date(1990, 6, 15), date(2020, 6, 14), 29),
        (date(1990, 6, 15), date(2020, 6, 15), 30),
    ],
)
def test_years_between(svc, born, on, age):
    assert svc.years_between(born, on) == age


def _counter(db) -> int | None:
    from hms.core.db import Counter

    return db.session.scalar(select(Counter.value).where(Counter.name == "patient_mrn"))


def test_bulk_registration_reserves_a_block_of_the_same_counter(svc, db):
    first = svc.register_patient({"name": "First", "gender": "male"})
    added = svc.register_many([{"name": f"Bulk {n}", "gender": "other", "age": n} for n in range(3)])
    last = svc.register_patient({"name": "Last", "gender": "female"})
    assert added == 3
    assert first.mrn == "P000001" and last.mrn == "P000005"
    from hms.patients.models import Patient

    bulk = db.session.scalars(select(Patient.mrn).where(Patient.name.like("Bulk %")).order_by(Patient.mrn))
    assert list(bulk) == ["P000002", "P000003", "P000004"]
    assert _counter(db) == 5


def test_bulk_registration_of_nothing_touches_nothing(svc, db):
    assert svc.register_many([]) == 0
    assert _counter(db) is None


def test_bulk_registration_applies_the_age_rules(svc, db):
    with pytest.raises(ValidationFailed):
        svc.register_many([{"name": "X", "gender": "male", "date_of_birth": date(2999, 1, 1), "age": None}])
    db.session.rollback()
    assert _counter(db) is None


def test_a_rejected_registration_uses_no_mrn(svc, db):
    with pytest.raises(ValidationFailed) as info:
        svc.register_patient({"name": "X", "gender": "male", "date_of_birth": date(1850, 1, 1)})
    assert info.value.errors == {"json": {"date_of_birth": ["Must not be before 1900-01-01."]}}
    db.session.rollback()
    assert _counter(db) is None
    assert svc.register_patient({"name": "Y", "gender": "male"}).mrn == "P000001"


def test_unknown_patient_is_not_found(svc, db):
    with pytest.raises(NotFound):
        svc.get_patient(12345)
    with pytest.raises(NotFound):
        svc.update_patient(12345, {"name": "Z"})


def test_a_search_page_is_two_statements(svc, db, count_queries):
    svc.register_many(
        [{"name": f"Same Name {n}", "gender": "male", "phone": f"98{n:08d}"} for n in range(30)]
    )
    for q in (None, "same", "98000000", "P000007"):
        db.session.expire_all()
        with count_queries() as counter:
            page = svc.search_patients(q, page=1, limit=20)
            [patient.name for patient in page.data]
        selects = [s for s in counter.statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 2, (q, counter.statements)  # SQLite adds its BEGIN IMMEDIATE


def test_search_is_newest_first(svc, db):
    svc.register_many([{"name": f"Person {n}", "gender": "male"} for n in range(3)])
    page = svc.search_patients("person", page=1, limit=20)
    assert [p.name for p in page.data] == ["Person 2", "Person 1", "Person 0"]


@requires_postgres
@pytest.mark.parametrize(
    "q, indexes",
    [
        ("P000042", ["patients_mrn_key"]),
        # Without "+": the national number, or the number with its country code typed bare.
        ("98450", ["ix_patients_phone_national_prefix", "ix_patients_phone_prefix"]),
        ("098450", ["ix_patients_phone_national_prefix"]),
        ("+91 98450", ["ix_patients_phone_prefix"]),
        ("rao", ["ix_patients_name_folded_trgm"]),
        ("José", ["ix_patients_name_folded_trgm"]),
    ],
)
def test_each_search_can_use_its_index_on_postgres(svc, db, q, indexes):
    """With sequential scans priced out, the plan names the index: the predicate matches it."""
    svc.register_many(
        [{"name": f"Patient {n} Rao", "gender": "male", "phone": f"9845{n:06d}"} for n in range(50)]
    )
    stmt = svc.search_statement(q)
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.session.scalars(text(f"EXPLAIN {compiled}")))
    db.session.rollback()
    for index in indexes:
        assert index in plan, plan
    assert "Seq Scan" not in plan, plan


@requires_postgres
def test_the_duplicate_check_uses_indexes_only_on_postgres(svc, db):
    """Every statement of find_duplicates, explained with sequential scans priced out,
    reads patients through an index."""
    from sqlalchemy import event

    svc.register_many(
        [
            {"name": f"Patient {n} Rao", "gender": "male", "phone": f"9845{n:06d}", "age": 40}
            for n in range(50)
        ]
    )
    executed = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            executed.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        found = svc.find_duplicates(name="Patient 7 Rao", phone="9845000007", date_of_birth=date(1986, 1, 1))
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert found and found[0]["reason"] == "same_phone"
    assert len(executed) == 3, executed
    plans = []
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    cursor = db.session.connection().connection.cursor()
    for statement, parameters in executed:
        cursor.execute("EXPLAIN " + statement, parameters)
        plans.append("\n".join(row[0] for row in cursor.fetchall()))
    db.session.rollback()
    for plan in plans:
        assert "Seq Scan" not in plan, plan
    joined = "\n".join(plans)
    for index in (
        "ix_patients_phone_prefix",
        "ix_patients_phone_national_prefix",
        "ix_patients_name_folded_trgm",
    ):
        assert index in joined, joined
