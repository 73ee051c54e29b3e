"""E.164 phones, accent-free name search, the duplicate check and idempotent registration."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import requires_postgres

PATIENTS = "/api/patients"
DUPLICATES = "/api/patients/duplicates"


def register(client, **fields) -> dict:
    res = client.post(PATIENTS, json={"name": "Asha Rao", "gender": "female", **fields})
    assert res.status_code == 201, res.get_json()
    return res.get_json()


def names(res) -> list[str]:
    assert res.status_code == 200, res.get_json()
    return [p["name"] for p in res.get_json()["data"]]


def patient_count(app) -> int:
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Patient))
        db.session.remove()
    return count


def this_year() -> int:
    return datetime.now(UTC).date().year  # CLINIC_TIMEZONE is UTC in the tests


# --- phones in E.164 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, e164",
    [
        ("98450 11223", "+919845011223"),
        ("098450-11223", "+919845011223"),  # trunk 0
        ("+91 98450 11223", "+919845011223"),
        ("0091 (98450) 11223", "+919845011223"),
        ("91 98450 11223", "+919845011223"),
        ("+1 415.555.0100", "+14155550100"),
        ("+44 7700 900123", "+447700900123"),
    ],
)
def test_phones_are_stored_in_e164(reception, typed, e164):
    assert register(reception, phone=typed)["phone"] == e164


@pytest.mark.parametrize("typed", ["12345", "1234567", "+91 98450 1122334455", "+999 1234567", "0000"])
def test_an_impossible_number_is_422_with_a_clear_message(app, reception, typed):
    res = reception.post(PATIENTS, json={"name": "Asha", "gender": "female", "phone": typed})
    assert res.status_code == 422, res.get_json()
    message = res.get_json()["errors"]["json"]["phone"][0]
    assert "phone number" in message.lower()
    assert patient_count(app) == 0


def test_an_impossible_number_in_a_patch_is_422(reception):
    patient = register(reception, phone="98450 11223")
    res = reception.patch(f"{PATIENTS}/{patient['id']}", json={"phone": "12345"})
    assert res.status_code == 422 and "phone" in res.get_json()["errors"]["json"]
    res = reception.patch(f"{PATIENTS}/{patient['id']}", json={"phone": "+1 415 555 0100"})
    assert res.get_json()["phone"] == "+14155550100"
    # The national key follows the number: the old one is no longer found.
    assert names(reception.get(PATIENTS, query_string={"q": "98450"})) == []
    assert names(reception.get(PATIENTS, query_string={"q": "415 555"})) == ["Asha Rao"]


def test_the_clinic_country_code_is_a_setting(app, reception, monkeypatch):
    monkeypatch.setitem(app.config, "CLINIC_COUNTRY_CODE", "1")
    assert register(reception, phone="(415) 555-0100")["phone"] == "+14155550100"
    assert register(reception, phone="+91 98450 11223")["phone"] == "+919845011223"


def test_a_phone_stored_before_e164_is_found_with_and_without_its_country_code(app, reception):
    """A row the migration could not parse keeps its digits and is found by them; a row
    written directly with a national number gets its national key from the model."""
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        db.session.add(Patient(mrn="P900001", name="Old Row", gender="male", phone="+919845011223"))
        db.session.add(Patient(mrn="P900002", name="Odd Row", gender="male", phone="0123"))
        db.session.commit()
        national = db.session.scalars(select(Patient.phone_national).order_by(Patient.id)).all()
        db.session.remove()
    assert national == ["9845011223", "123"]
    for q in ("98450", "+91 98450", "919845"):
        assert names(reception.get(PATIENTS, query_string={"q": q})) == ["Old Row"], q
    assert names(reception.get(PATIENTS, query_string={"q": "0123"})) == ["Odd Row"]


# --- names: accents and case ignored ---------------------------------------------------


@pytest.mark.parametrize(
    "stored, typed",
    [
        ("José Fernandes", "jose"),
        ("José Fernandes", "JOSÉ"),
        ("Jose Fernandes", "josé"),
        ("Zoë D'Souza", "zoe d'"),
        ("Renée Straße", "strasse"),
        ("Ñúñez", "nunez"),
    ],
)
def test_name_search_ignores_accents_and_case(reception, stored, typed):
    register(reception, name=stored)
    register(reception, name="Someone Else")
    assert names(reception.get(PATIENTS, query_string={"q": typed})) == [stored]


def test_a_renamed_patient_is_found_by_the_new_name_only(reception):
    patient = register(reception, name="Asha Rao")
    reception.patch(f"{PATIENTS}/{patient['id']}", json={"name": "Chloé Martin"})
    assert names(reception.get(PATIENTS, query_string={"q": "chloe"})) == ["Chloé Martin"]
    assert names(reception.get(PATIENTS, query_string={"q": "asha"})) == []


def test_bulk_registration_folds_names_and_phones(app, db):
    from hms.patients import service
    from hms.patients.models import Patient

    service.register_many([{"name": "Émile Zola", "gender": "male", "phone": "098450 11223"}])
    row = db.session.execute(select(Patient.name_folded, Patient.phone, Patient.phone_national)).one()
    assert tuple(row) == ("emile zola", "+919845011223", "9845011223")
    assert [p.name for p in service.search_patients("emile", page=1, limit=20).data] == ["Émile Zola"]


# --- the duplicate check ---------------------------------------------------------------


@pytest.fixture
def people(reception) -> dict[str, dict]:
    year = this_year()
    rows = [
        ("José Fernandes", {"date_of_birth": f"{year - 40}-05-01", "phone": "98450 11111"}),
        ("Jose Fernandez", {"date_of_birth": f"{year - 40}-11-30"}),  # typo, same year
        ("José Fernandes", {"date_of_birth": f"{year - 60}-01-01"}),  # same name, other year
        ("Josef Fernando", {"age": 41}),  # a year from the age: 40 +- 1
        ("Ravi Kumar", {"date_of_birth": f"{year - 40}-05-01", "phone": "+91 98450 22222"}),
        ("Priya Shah", {"age": 20, "phone": "98450 11111"}),  # shares José's phone
    ]
    return {f"{name}#{i}": register(reception, name=name, **fields) for i, (name, fields) in enumerate(rows)}


def duplicates(client, **params) -> list[tuple[str, str]]:
    res = client.get(DUPLICATES, query_string=params)
    assert res.status_code == 200, res.get_json()
    return [(row["mrn"], row["reason"]) for row in res.get_json()["data"]]


def test_duplicates_by_phone_come_first(reception, people):
    by_key = {key.split("#")[1]: body for key, body in people.items()}
    found = duplicates(reception, phone="+91 98450-11111")
    assert sorted(found) == sorted([(by_key["0"]["mrn"], "same_phone"), (by_key["5"]["mrn"], "same_phone")])
    # The name and year as well: José (phone + name) ranks above Priya (phone only).
    year = this_year()
    found = duplicates(
        reception, name="jose fernandes", phone="9845011111", date_of_birth=f"{year - 40}-01-01"
    )
    assert found[0] == (by_key["0"]["mrn"], "same_phone")
    assert (by_key["5"]["mrn"], "same_phone") in found


def test_duplicates_by_similar_name_and_birth_year(reception, people):
    by_key = {key.split("#")[1]: body for key, body in people.items()}
    year = this_year()
    found = dict(duplicates(reception, name="Jose Fernandes", date_of_birth=f"{year - 40}-07-07"))
    assert found[by_key["0"]["mrn"]] == "similar_name_same_birth_year"
    assert found[by_key["1"]["mrn"]] == "similar_name_same_birth_year"
    assert found[by_key["3"]["mrn"]] == "similar_name_same_birth_year"  # from the age, to within one
    assert found[by_key["2"]["mrn"]] == "same_name"  # born 20 years earlier
    assert by_key["4"]["mrn"] not in found  # same year, another name
    ranked = duplicates(reception, name="Jose Fernandes", date_of_birth=f"{year - 40}-07-07")
    assert ranked[-1] == (by_key["2"]["mrn"], "same_name")
    # The birth year from an age: 40 years -> this year - 40 (+- 1).
    found = dict(duplicates(reception, name="josé fernandes", age=40))
    assert found[by_key["1"]["mrn"]] == "similar_name_same_birth_year"
    # Another year: only the exact name.
    assert duplicates(reception, name="José Fernandes", date_of_birth="1950-01-01") == [
        (by_key["2"]["mrn"], "same_name"),
        (by_key["0"]["mrn"], "same_name"),
    ]


def test_duplicates_answer_summaries(reception, people):
    res = reception.get(DUPLICATES, query_string={"phone": "98450 22222"})
    assert res.get_json() == {
        "data": [
            {
                "id": people["Ravi Kumar#4"]["id"],
                "mrn": people["Ravi Kumar#4"]["mrn"],
                "name": "Ravi Kumar",
                "gender": "female",
                "age": 40,
                "phone": "+919845022222",
                "date_of_birth": f"{this_year() - 40}-05-01",
                "reason": "same_phone",
            }
        ]
    }


def test_duplicates_are_at_most_ten(reception):
    for n in range(12):
        register(reception, name=f"Same Person {n}", phone="98450 33333")
    found = duplicates(reception, phone="9845033333")
    assert len(found) == 10 and {reason for _, reason in found} == {"same_phone"}


def test_no_duplicates_without_input_or_match(reception, people):
    assert duplicates(reception) == []
    assert duplicates(reception, name="Nobody Here", age=30) == []
    assert duplicates(reception, phone="12") == []  # too few digits to compare
    # A number registration would refuse is compared by its digits.
    assert len(duplicates(reception, phone="98450-1111-1")) == 2


@pytest.mark.parametrize("born", ["0001-01-01", "9999-12-31", "1900-01-01"])
def test_extreme_birth_dates_find_nothing_and_fail_nothing(reception, people, born):
    found = duplicates(reception, name="Jose Fernandes", date_of_birth=born)
    assert {reason for _, reason in found} == {"same_name"}


def test_the_service_answers_the_same(app, reception, people):
    from hms.patients.service import find_duplicates

    with app.app_context():
        found = find_duplicates(phone="98450 22222", name=None, date_of_birth=None, age=None)
        assert [row["reason"] for row in found] == ["same_phone"]
        year = this_year()
        found = find_duplicates(name="Jose Fernandes", date_of_birth=date(year - 40, 1, 1), limit=2)
        assert len(found) == 2 and all(r["reason"] == "similar_name_same_birth_year" for r in found)


@pytest.mark.parametrize(
    "query",
    [
        "age=-1",
        "age=151",
        "age=x",
        "date_of_birth=2020-13-01",
        "date_of_birth=01/02/2020",
        "nick=a",
        "name=" + "x" * 121,
        "phone=" + "9" * 31,
        "name=a%00b",
    ],
)
def test_bad_duplicate_queries_are_422(reception, query):
    assert reception.get(f"{DUPLICATES}?{query}").status_code == 422


def test_duplicates_roles(doctor, cashier, display):
    assert doctor.get(DUPLICATES, query_string={"name": "x"}).status_code == 200
    assert cashier.get(DUPLICATES, query_string={"name": "x"}).status_code == 200
    assert display.get(DUPLICATES, query_string={"name": "x"}).status_code == 403


# --- Idempotency-Key on registration ------------------------------------------------------


def test_a_retried_registration_with_its_key_creates_one_patient(app, reception):
    body = {"name": "Asha Rao", "gender": "female", "phone": "98450 11223"}
    key = {"Idempotency-Key": "desk-1-form-42"}
    first = reception.post(PATIENTS, json=body, headers=key)
    again = reception.post(PATIENTS, json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert patient_count(app) == 1
    assert reception.get(f"{PATIENTS}/{first.get_json()['id']}").get_json() == first.get_json()


def test_a_key_reused_with_another_body_is_422(app, reception):
    key = {"Idempotency-Key": "k-1"}
    assert reception.post(PATIENTS, json={"name": "A", "gender": "male"}, headers=key).status_code == 201
    res = reception.post(PATIENTS, json={"name": "B", "gender": "male"}, headers=key)
    assert res.status_code == 422
    assert "Idempotency-Key" in res.get_json()["errors"]["headers"]
    assert patient_count(app) == 1


def test_keys_are_per_account_and_optional(app, reception, admin):
    body = {"name": "A", "gender": "male"}
    assert reception.post(PATIENTS, json=body, headers={"Idempotency-Key": "same"}).status_code == 201
    res = admin.post(PATIENTS, json=body, headers={"Idempotency-Key": "same"})
    assert res.status_code == 201 and "Idempotent-Replayed" not in res.headers
    assert reception.post(PATIENTS, json=body).status_code == 201
    assert reception.post(PATIENTS, json=body).status_code == 201
    assert patient_count(app) == 4


def test_a_failed_registration_does_not_use_up_its_key(app, reception):
    key = {"Idempotency-Key": "fix-and-retry"}
    bad = {"name": "A", "gender": "male", "phone": "12345"}
    assert reception.post(PATIENTS, json=bad, headers=key).status_code == 422
    res = reception.post(PATIENTS, json={**bad, "phone": "98450 11223"}, headers=key)
    assert res.status_code == 201 and "Idempotent-Replayed" not in res.headers


@pytest.mark.parametrize("key, status", [("k" * 256, 422), ("", 422), ("bad\x01key", 400)])
def test_bad_keys_are_refused(app, reception, key, status):
    res = reception.post(PATIENTS, json={"name": "A", "gender": "male"}, headers={"Idempotency-Key": key})
    assert res.status_code == status, res.get_json()
    assert patient_count(app) == 0


def test_register_patient_once_is_the_service_behind_it(app, make_user):
    from hms.auth.service import Identity
    from hms.patients.service import register_patient_once

    user = make_user("reception")
    identity = Identity(user.id, user.username, user.name, user.role, True, 0)
    data = {"name": "Asha Rao", "gender": "female", "phone": "98450 11223"}
    with app.app_context():
        first = register_patient_once(data, identity, "svc-key")
        again = register_patient_once(data, identity, "svc-key")
        plain = register_patient_once(data, identity, None)
    assert (first.status, first.replayed, again.replayed, plain.replayed) == (201, False, True, False)
    assert again.body == first.body and first.body["phone"] == "+919845011223"
    assert plain.body["id"] != first.body["id"]
    assert patient_count(app) == 2


@requires_postgres
def test_parallel_retries_with_one_key_register_one_patient(app, live_server, make_user):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    make_user("reception", password="desk-pass-1", username="desk")
    login = requests.post(
        f"{live_server}/api/auth/token", json={"username": "desk", "password": "desk-pass-1"}, timeout=10
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}", "Idempotency-Key": "tap-tap-tap"}
    barrier = Barrier(8)

    def send(_):
        barrier.wait(timeout=10)
        body = {"name": "Parallel Asha", "gender": "female", "phone": "98450 11223"}
        return requests.post(f"{live_server}{PATIENTS}", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))
    assert [res.status_code for res in answers] == [201] * 8, [res.text for res in answers]
    assert len({res.json()["id"] for res in answers}) == 1
    assert sum(res.headers.get("Idempotent-Replayed") == "true" for res in answers) == 7
    assert patient_count(app) == 1
