"""Patients over HTTP: register, read, update, search; roles; rejected input; MRNs under load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pytest
import requests
from sqlalchemy import select

from tests.conftest import requires_postgres

PATIENTS = "/api/patients"


def today() -> date:
    return datetime.now(UTC).date()  # CLINIC_TIMEZONE is UTC in the tests


def years_ago(years: int) -> date:
    now = today()
    return date(now.year - years, now.month, 28 if now.day > 28 else now.day)


def stored(app) -> list[tuple]:
    """Every patient row as (mrn, name, gender, date_of_birth, age, phone, address), by id."""
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        rows = db.session.execute(
            select(
                Patient.mrn,
                Patient.name,
                Patient.gender,
                Patient.date_of_birth,
                Patient.age,
                Patient.phone,
                Patient.address,
            ).order_by(Patient.id)
        ).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def mrn_counter(app) -> int | None:
    from hms.core.db import Counter
    from hms.extensions import db

    with app.app_context():
        value = db.session.scalar(select(Counter.value).where(Counter.name == "patient_mrn"))
        db.session.remove()
    return value


def register(client, **fields):
    body = {"name": "Asha Rao", "gender": "female", **fields}
    res = client.post(PATIENTS, json=body)
    assert res.status_code == 201, res.get_json()
    return res.get_json()


# --- register and read ------------------------------------------------------------------


def test_register_assigns_consecutive_mrns_and_reads_back(reception, admin):
    first = register(reception, name="  Asha Rao ", phone="98765 43210", address="12 MG Road")
    assert first["mrn"] == "P000001"
    assert first["name"] == "Asha Rao"
    assert first["gender"] == "female"
    assert first["phone"] == "+919876543210"  # E.164 with CLINIC_COUNTRY_CODE (91)
    assert first["address"] == "12 MG Road"
    assert first["date_of_birth"] is None and first["age"] is None
    assert isinstance(first["id"], int)
    assert datetime.fromisoformat(first["created_at"]).utcoffset() is not None

    second = register(admin, name="Ravi Kumar", gender="male", age=40)
    assert second["mrn"] == "P000002" and second["age"] == 40

    res = reception.get(f"{PATIENTS}/{first['id']}")
    assert res.status_code == 200
    assert res.get_json() == first


def test_date_of_birth_derives_the_age(reception):
    born = years_ago(30)
    body = register(reception, date_of_birth=born.isoformat())
    assert body["date_of_birth"] == born.isoformat()
    assert body["age"] == 30


def test_date_of_birth_with_matching_age_is_accepted(reception):
    body = register(reception, date_of_birth=years_ago(5).isoformat(), age=5)
    assert body["age"] == 5


def test_age_disagreeing_with_date_of_birth_is_422_and_stores_nothing(app, reception):
    res = reception.post(
        PATIENTS,
        json={"name": "Asha", "gender": "female", "date_of_birth": years_ago(30).isoformat(), "age": 25},
    )
    assert res.status_code == 422
    assert "age" in res.get_json()["errors"]["json"]
    assert stored(app) == []
    # The rejected registration used no MRN.
    assert register(reception)["mrn"] == "P000001"


def test_phone_is_stored_normalized(app, reception):
    body = register(reception, phone=" +91 (98) 765-43210 ")
    assert body["phone"] == "+919876543210"
    assert stored(app)[0][5] == "+919876543210"


def test_date_of_birth_today_and_in_1900_are_valid(reception):
    assert register(reception, date_of_birth=today().isoformat())["age"] == 0
    assert register(reception, date_of_birth="1900-01-01")["date_of_birth"] == "1900-01-01"


# --- rejected input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"gender": "male"},
        {"name": "", "gender": "male"},
        {"name": "   ", "gender": "male"},
        {"name": None, "gender": "male"},
        {"name": 123, "gender": "male"},
        {"name": ["Asha"], "gender": "male"},
        {"name": "x" * 121, "gender": "male"},
        {"name": "x" * 100_000, "gender": "male"},
        {"name": "Asha\x00Rao", "gender": "female"},
        {"name": "Asha"},
        {"name": "Asha", "gender": "woman"},
        {"name": "Asha", "gender": "Female"},
        {"name": "Asha", "gender": 1},
        {"name": "Asha", "gender": "female", "age": -1},
        {"name": "Asha", "gender": "female", "age": 151},
        {"name": "Asha", "gender": "female", "age": "30"},
        {"name": "Asha", "gender": "female", "age": 30.5},
        {"name": "Asha", "gender": "female", "age": True},
        {"name": "Asha", "gender": "female", "age": 10**20},
        {"name": "Asha", "gender": "female", "date_of_birth": "2999-01-01"},
        {"name": "Asha", "gender": "female", "date_of_birth": "1899-12-31"},
        {"name": "Asha", "gender": "female", "date_of_birth": "2020-02-30"},
        {"name": "Asha", "gender": "female", "date_of_birth": "20200101"},
        {"name": "Asha", "gender": "female", "date_of_birth": "01/02/2020"},
        {"name": "Asha", "gender": "female", "date_of_birth": 20200101},
        {"name": "Asha", "gender": "female", "phone": "12"},
        {"name": "Asha", "gender": "female", "phone": "9" * 21},
        {"name": "Asha", "gender": "female", "phone": "98765abc"},
        {"name": "Asha", "gender": "female", "phone": "98+765"},
        {"name": "Asha", "gender": "female", "phone": "+ ( ) - 1"},
        {"name": "Asha", "gender": "female", "phone": 9876543210},
        {"name": "Asha", "gender": "female", "address": "x" * 301},
        {"name": "Asha", "gender": "female", "address": {"city": "Pune"}},
        {"name": "Asha", "gender": "female", "mrn": "P999999"},
        {"name": "Asha", "gender": "female", "id": 5},
        {"name": "Asha", "gender": "female", "nickname": "A"},
    ],
)
def test_invalid_registration_is_422_and_stores_nothing(app, reception, body):
    res = reception.post(PATIENTS, json=body)
    assert res.status_code == 422, res.get_json()
    error = res.get_json()
    assert error["code"] == 422 and error["errors"]
    assert stored(app) == []
    assert mrn_counter(app) is None


@pytest.mark.parametrize("body", ["[]", '"Asha"', "null", "{not json"])
def test_non_object_bodies_are_rejected(app, reception, body):
    res = reception.post(PATIENTS, data=body, content_type="application/json")
    assert res.status_code in (400, 422)
    assert stored(app) == []


def test_a_future_date_of_birth_names_the_field(reception):
    res = reception.post(PATIENTS, json={"name": "Asha", "gender": "female", "date_of_birth": "2999-01-01"})
    assert list(res.get_json()["errors"]["json"]) == ["date_of_birth"]


# --- roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["doctor", "cashier"])
def test_doctor_and_cashier_read_but_never_write(app, as_role, reception, role):
    patient = register(reception)
    reader = as_role(role)
    assert reader.get(PATIENTS).status_code == 200
    assert reader.get(f"{PATIENTS}/{patient['id']}").status_code == 200
    assert reader.post(PATIENTS, json={"name": "New", "gender": "male"}).status_code == 403
    assert reader.patch(f"{PATIENTS}/{patient['id']}", json={"name": "Changed"}).status_code == 403
    assert [row[1] for row in stored(app)] == ["Asha Rao"]


def test_display_may_do_nothing(app, display, reception):
    patient = register(reception)
    assert display.get(PATIENTS).status_code == 403
    assert display.get(f"{PATIENTS}/{patient['id']}").status_code == 403
    assert display.post(PATIENTS, json={"name": "New", "gender": "male"}).status_code == 403
    res = display.patch(f"{PATIENTS}/{patient['id']}", json={"name": "Changed"})
    assert res.status_code == 403 and res.get_json()["code"] == 403
    assert [row[1] for row in stored(app)] == ["Asha Rao"]


def test_403_comes_before_validation(display):
    assert display.post(PATIENTS, json={"bogus": True}).status_code == 403


@pytest.mark.parametrize(
    "method, url",
    [("GET", PATIENTS), ("POST", PATIENTS), ("GET", f"{PATIENTS}/1"), ("PATCH", f"{PATIENTS}/1")],
)
def test_without_a_token_everything_is_401(app, client, method, url):
    res = client.open(url, method=method, json={"name": "X", "gender": "male"})
    assert res.status_code == 401
    assert res.get_json()["code"] == 401
    assert stored(app) == []


# --- 404 --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["999", "0", "-1", "abc", "1.5", str(2**31), "99999999999999999999"])
def test_unknown_or_malformed_ids_are_404(reception, suffix):
    assert reception.get(f"{PATIENTS}/{suffix}").status_code == 404
    res = reception.patch(f"{PATIENTS}/{suffix}", json={"name": "X"})
    assert res.status_code == 404
    assert res.get_json()["code"] == 404


# --- update -----------------------------------------------------------------------------


def test_patch_changes_only_what_is_sent(reception, admin):
    patient = register(reception, phone="9876543210", address="Old street")
    res = admin.patch(
        f"{PATIENTS}/{patient['id']}", json={"name": "Asha R. Rao", "phone": "+1 (555) 010-9999"}
    )
    assert res.status_code == 200
    body = res.get_json()
    assert body["name"] == "Asha R. Rao"
    assert body["phone"] == "+15550109999"
    assert body["address"] == "Old street"
    assert body["mrn"] == patient["mrn"] and body["id"] == patient["id"]
    assert reception.get(f"{PATIENTS}/{patient['id']}").get_json() == body


def test_patch_date_of_birth_rederives_the_age_and_null_clears(reception):
    patient = register(reception, age=70)
    url = f"{PATIENTS}/{patient['id']}"
    res = reception.patch(url, json={"date_of_birth": years_ago(42).isoformat()})
    assert res.status_code == 200 and res.get_json()["age"] == 42
    # An age alone that contradicts the stored date of birth is rejected.
    res = reception.patch(url, json={"age": 41})
    assert res.status_code == 422 and "age" in res.get_json()["errors"]["json"]
    # Dropping the date of birth keeps the age last known; then an age alone is fine.
    res = reception.patch(url, json={"date_of_birth": None})
    assert res.status_code == 200 and res.get_json()["date_of_birth"] is None
    assert res.get_json()["age"] == 42
    assert reception.patch(url, json={"age": 43}).get_json()["age"] == 43
    assert reception.patch(url, json={"phone": None, "address": None}).get_json()["phone"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"mrn": "P000999"},
        {"mrn": "P000001", "name": "Renamed"},
        {},
        {"name": ""},
        {"name": None},
        {"gender": None},
        {"gender": "x"},
        {"age": -3},
        {"date_of_birth": "2999-12-31"},
        {"phone": "abc"},
        {"id": 7},
        {"created_at": "2020-01-01T00:00:00+00:00"},
        {"unknown": 1},
    ],
)
def test_invalid_patch_is_422_and_changes_nothing(app, reception, body):
    patient = register(reception, date_of_birth=years_ago(20).isoformat(), phone="9876543210")
    before = stored(app)
    res = reception.patch(f"{PATIENTS}/{patient['id']}", json=body)
    assert res.status_code == 422, res.get_json()
    assert stored(app) == before


def test_sending_the_mrn_says_why(reception):
    patient = register(reception)
    res = reception.patch(f"{PATIENTS}/{patient['id']}", json={"mrn": "P000002"})
    assert "mrn" in res.get_json()["errors"]["json"]


# --- search -----------------------------------------------------------------------------


@pytest.fixture
def registry(reception):
    """Five patients; returns {name: body} (registration order = id order)."""
    people = [
        ("Asha Rao", "+91 98450 11111"),
        ("Ravi Kumar", "98450 22222"),
        ("Priya Raoji", "080-2222-3333"),
        ("Meena 100% Iyer", None),
        ("John_Smith", "+1 415 555 0100"),
    ]
    return {name: register(reception, name=name, phone=phone) for name, phone in people}


def names(res) -> list[str]:
    assert res.status_code == 200, res.get_json()
    return [p["name"] for p in res.get_json()["data"]]


def test_list_is_newest_first_with_meta(reception, registry):
    res = reception.get(PATIENTS)
    assert names(res) == list(reversed(list(registry)))
    assert res.get_json()["meta"] == {"page": 1, "limit": 20, "total": 5}


def test_pagination(reception, registry):
    everyone = list(reversed(list(registry)))
    res = reception.get(f"{PATIENTS}?limit=2&page=2")
    assert names(res) == everyone[2:4]
    assert res.get_json()["meta"] == {"page": 2, "limit": 2, "total": 5}
    assert names(reception.get(f"{PATIENTS}?limit=2&page=3")) == everyone[4:]
    past_the_end = reception.get(f"{PATIENTS}?limit=2&page=4")
    assert names(past_the_end) == [] and past_the_end.get_json()["meta"]["total"] == 5
    assert len(names(reception.get(f"{PATIENTS}?limit=100"))) == 5


@pytest.mark.parametrize("q", ["rao", "RAO", "Rao", " rAo "])
def test_search_by_part_of_the_name_ignores_case(reception, registry, q):
    res = reception.get(PATIENTS, query_string={"q": q})
    assert names(res) == ["Priya Raoji", "Asha Rao"]
    assert res.get_json()["meta"]["total"] == 2


def test_search_by_exact_mrn_any_case(cashier, registry):
    ravi = registry["Ravi Kumar"]
    for q in (ravi["mrn"], ravi["mrn"].lower(), "p2"):
        assert names(cashier.get(PATIENTS, query_string={"q": q})) == ["Ravi Kumar"]
    assert names(cashier.get(PATIENTS, query_string={"q": "P000099"})) == []


def test_search_by_phone_prefix_normalizes_the_query(doctor, registry):
    # Without the country code: a prefix of the national number (both are 98450...).
    assert names(doctor.get(PATIENTS, query_string={"q": "98450"})) == ["Ravi Kumar", "Asha Rao"]
    assert names(doctor.get(PATIENTS, query_string={"q": "98450 1"})) == ["Asha Rao"]
    assert names(doctor.get(PATIENTS, query_string={"q": "(984) 50-2"})) == ["Ravi Kumar"]
    # With it, any punctuation, "+" or "00" or none.
    assert names(doctor.get(PATIENTS, query_string={"q": "+91 98450 2"})) == ["Ravi Kumar"]
    assert names(doctor.get(PATIENTS, query_string={"q": "0091 98450 1"})) == ["Asha Rao"]
    assert names(doctor.get(PATIENTS, query_string={"q": "91 98450-1"})) == ["Asha Rao"]
    assert names(doctor.get(PATIENTS, query_string={"q": "+1 (415)"})) == ["John_Smith"]
    # A trunk "0" typed before the national number.
    assert names(doctor.get(PATIENTS, query_string={"q": "080 2222"})) == ["Priya Raoji"]
    assert names(doctor.get(PATIENTS, query_string={"q": "80.2222"})) == ["Priya Raoji"]
    # A prefix, not a substring; another country code is another number.
    assert names(doctor.get(PATIENTS, query_string={"q": "22222"})) == []
    assert names(doctor.get(PATIENTS, query_string={"q": "+44 98450"})) == []


def test_like_wildcards_in_the_query_are_literal(reception, registry):
    assert names(reception.get(PATIENTS, query_string={"q": "%"})) == ["Meena 100% Iyer"]
    assert names(reception.get(PATIENTS, query_string={"q": "_"})) == ["John_Smith"]
    assert names(reception.get(PATIENTS, query_string={"q": "a%r"})) == []
    assert names(reception.get(PATIENTS, query_string={"q": "\\"})) == []


def test_search_with_no_match_is_an_empty_page(reception, registry):
    res = reception.get(PATIENTS, query_string={"q": "zzz"})
    assert res.get_json() == {"data": [], "meta": {"page": 1, "limit": 20, "total": 0}}


def test_search_pages_are_counted_on_the_filtered_set(reception, registry):
    res = reception.get(PATIENTS, query_string={"q": "a", "limit": 1, "page": 2})
    assert res.get_json()["meta"]["total"] == 4  # every name but John_Smith has an "a"
    assert len(res.get_json()["data"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-5",
        "limit=abc",
        "page=0",
        "page=-1",
        "page=x",
        "page=99999999999999999999",
        "sort=name",
        "q=" + "x" * 101,
        "q=",
        "q=a%00b",
    ],
)
def test_bad_query_strings_are_422(reception, query):
    res = reception.get(f"{PATIENTS}?{query}")
    assert res.status_code == 422, res.get_json()
    assert res.get_json()["code"] == 422


# --- concurrency ------------------------------------------------------------------------


@requires_postgres
def test_parallel_registrations_get_distinct_consecutive_mrns(app, live_server, make_user):
    make_user("reception", password="desk-pass-1", username="desk")
    login = requests.post(
        f"{live_server}/api/auth/token", json={"username": "desk", "password": "desk-pass-1"}, timeout=10
    )
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def register_one(number: int) -> requests.Response:
        return requests.post(
            f"{live_server}{PATIENTS}",
            json={"name": f"Parallel Patient {number}", "gender": "unknown"},
            headers=headers,
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(register_one, range(30)))
    assert [r.status_code for r in responses] == [201] * 30
    mrns = sorted(r.json()["mrn"] for r in responses)
    assert mrns == [f"P{n:06d}" for n in range(1, 31)]
    rows = stored(app)
    assert sorted(row[0] for row in rows) == mrns
    assert mrn_counter(app) == 30
