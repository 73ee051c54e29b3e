"""Bad input is rejected where the request is read, never a 500 (API.md, issue #17).

A NUL or an unpaired surrogate in any JSON string (keys included), JSON nested too
deep, a number too long to decode, and a query string or a form with NUL or invalid
UTF-8: each gets a 4xx with the error body of API.md, on every route that reads a
body or a query, and stores nothing.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

BAD = "\x00BAD"  # placeholder, replaced by each bad text below

# Every operation that reads a JSON body: (role, method, path, body with BAD in a text field).
# The ids are those of the `world` fixture. The role is one allowed to call the route, so
# that the body is really read (401/403 come before any parsing).
WRITES = [
    ("public", "POST", "/api/auth/token", {"username": BAD, "password": "secret-pass"}),
    ("public", "POST", "/api/auth/token", {"username": "admin1", "password": BAD}),
    (
        "admin",
        "POST",
        "/api/staff",
        {"username": "nurse1", "password": "long-password", "name": BAD, "role": "reception"},
    ),
    ("admin", "PATCH", "/api/staff/{doctor_id}", {"name": BAD}),
    ("admin", "POST", "/api/departments", {"name": BAD}),
    ("admin", "PATCH", "/api/departments/{department_id}", {"name": BAD}),
    ("admin", "POST", "/api/specializations", {"name": BAD}),
    ("admin", "PATCH", "/api/specializations/{specialization_id}", {"name": BAD}),
    ("admin", "POST", "/api/test-types", {"name": BAD, "price": "10.00"}),
    ("admin", "PATCH", "/api/test-types/{test_type_id}", {"name": BAD}),
    ("admin", "POST", "/api/medicines", {"name": "Ibuprofen", "generic_name": BAD, "unit_price": "1.00"}),
    ("admin", "PATCH", "/api/medicines/{medicine_id}", {"strength": BAD}),
    ("admin", "POST", "/api/medicine-instructions", {"text": BAD}),
    ("admin", "PATCH", "/api/medicine-instructions/{instruction_id}", {"text": BAD}),
    ("admin", "POST", "/api/categories", {"name": BAD}),
    ("admin", "PATCH", "/api/categories/{category_id}", {"name": BAD}),
    ("reception", "POST", "/api/patients", {"name": "Asha Rao", "gender": "female", "address": BAD}),
    ("reception", "PATCH", "/api/patients/{patient_id}", {"address": BAD}),
    (
        "reception",
        "POST",
        "/api/appointments",
        {
            "patient_id": "{patient_id}",
            "doctor_id": "{doctor_id}",
            "appointment_type": "NEW",
            "chief_complaint": BAD,
        },
    ),
    ("reception", "PATCH", "/api/appointments/{appointment_id}/status", {"status": "WAITING", "reason": BAD}),
    (
        "admin",
        "POST",
        "/api/bills",
        {"patient_id": "{patient_id}", "items": [{"description": BAD, "unit_price": "1.00"}]},
    ),
    ("admin", "POST", "/api/bills/{bill_id}/items", {"items": [{"description": BAD, "unit_price": "1.00"}]}),
    (
        "admin",
        "POST",
        "/api/bills/{bill_id}/payments",
        {"amount": "1.00", "method": "CASH", "reference": BAD},
    ),
    ("admin", "POST", "/api/bills/{paid_bill_id}/refunds", {"amount": "1.00", "reason": BAD}),
    ("admin", "POST", "/api/bills/{bill_id}/void", {"reason": BAD}),
    (
        "doctor",
        "POST",
        "/api/appointments/{appointment_id}/prescriptions",
        {
            "notes": BAD,
            "items": [
                {
                    "medicine_id": "{medicine_id}",
                    "dosage": "1 tab",
                    "frequency": "daily",
                    "duration_days": 3,
                    "quantity": 3,
                }
            ],
        },
    ),
]
BAD_TEXTS = {
    "nul": "x\x00y",
    "lone_high_surrogate": "x\ud800y",
    "lone_low_surrogate": "\udfff",
    "nul_only": "\x00",
}


def row_counts(app) -> dict[str, int]:
    from hms.extensions import db

    with app.app_context():
        counts = {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
        return counts


def fill(value, ids: dict, text: str):
    """The body template with its ids filled in and BAD replaced by `text`."""
    if isinstance(value, dict):
        return {key: fill(item, ids, text) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, ids, text) for item in value]
    if value == BAD:
        return text
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value


def send(world, client, role, method, path, data: str, **kwargs):
    ids, clients = world
    url = path.format(**ids)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    opener = client if role == "public" else clients[role]
    if role == "public":
        return opener.open(url, method=method, data=data, headers=headers, **kwargs)
    return opener.open(method, url, data=data, headers=headers, **kwargs)


def assert_error_body(res, code: int):
    assert res.status_code == code, (res.status_code, res.get_data(as_text=True)[:300])
    body = res.get_json()
    assert body["code"] == code and body["status"] and body["message"], body
    return body


def test_the_table_covers_every_operation_that_reads_a_body(client):
    spec = client.get("/api/openapi.json").get_json()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    covered = {(method, path.replace("{paid_bill_id}", "{bill_id}")) for _, method, path, _ in WRITES}
    templated = {
        (method, path.replace("{doctor_id}", "{staff_id}").replace("{department_id}", "{item_id}"))
        for method, path in covered
    }
    normalized = set()
    for method, path in templated:
        for name in ("specialization_id", "test_type_id", "medicine_id", "instruction_id", "category_id"):
            path = path.replace("{" + name + "}", "{item_id}")
        normalized.add((method, path))
    assert documented == normalized


@pytest.mark.parametrize("text", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
@pytest.mark.parametrize(
    ("role", "method", "path", "template"), WRITES, ids=[f"{m} {p}" for _, m, p, _ in WRITES]
)
def test_nul_and_unpaired_surrogates_in_a_json_string_are_422(
    app, client, world, role, method, path, template, text
):
    ids, _ = world
    before = row_counts(app)
    body = json.dumps(fill(template, ids, text))  # ensure_ascii: sent as \u0000, \ud800
    res = send(world, client, role, method, path, body)
    error = assert_error_body(res, 422)
    assert "json" in error["errors"], error
    assert row_counts(app) == before


@pytest.mark.parametrize("text", ["x\x00y", "\ud800"])
def test_a_bad_key_is_422_too(app, client, world, text):
    before = row_counts(app)
    res = send(world, client, "admin", "POST", "/api/departments", json.dumps({"name": "Lab 2", text: 1}))
    assert_error_body(res, 422)
    assert row_counts(app) == before


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("public", "POST", "/api/auth/token"),
        ("admin", "POST", "/api/departments"),
        ("reception", "POST", "/api/appointments"),
        ("admin", "POST", "/api/bills/{bill_id}/payments"),
    ],
)
@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000 + "]" * 1000,
        "[" * 100_000 + "]" * 100_000,
        '{"name": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"name": ' + '{"a":' * 2000 + "1" + "}" * 2000 + "}",
        '{"name": ' + "9" * 4301 + "}",
        '{"amount": -' + "1" * 10_000 + "}",
        "9" * 5000,
        '{"name": NaN}',
        '{"name": Infinity}',
    ],
    ids=[
        "array-1000-deep",
        "array-100000-deep",
        "nested-in-a-field",
        "objects-2000-deep",
        "int-4301-digits",
        "negative-int-10000-digits",
        "bare-int-5000-digits",
        "nan",
        "infinity",
    ],
)
def test_too_deep_too_long_or_non_json_numbers_are_400(app, client, world, role, method, path, body):
    before = row_counts(app)
    res = send(world, client, role, method, path, body)
    error = assert_error_body(res, 400)
    assert "json" in error["errors"], error
    assert row_counts(app) == before


def test_nesting_within_the_limit_is_decoded_and_judged_by_the_schema(world, client):
    # 20 levels is deeper than any HMS body but within the decoder's limit: the schema's 422.
    body = '{"name": ' + "[" * 19 + "]" * 19 + "}"
    res = send(world, client, "admin", "POST", "/api/departments", body)
    assert_error_body(res, 422)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ('"Dr \\ud83d\\ude00 Lab"', "Dr \U0001f600 Lab"),  # an escaped surrogate pair is one character
        ('"C:\\\\u0000 Lab"', "C:\\u0000 Lab"),  # an escaped backslash, then the text u0000
        ('"Caf\\u00e9 Lab"', "Caf\u00e9 Lab"),
        ('"Café Lab"', "Caf\u00e9 Lab"),
    ],
)
def test_escapes_that_are_not_nul_or_lone_surrogates_are_accepted(world, client, raw, stored):
    res = send(world, client, "admin", "POST", "/api/departments", '{"name": ' + raw + "}")
    assert res.status_code == 201, res.get_json()
    assert res.get_json()["name"] == stored


def test_invalid_utf8_in_a_body_is_400(app, world, client):
    before = row_counts(app)
    res = send(world, client, "admin", "POST", "/api/departments", b'{"name": "\xed\xa0\x80"}')
    assert_error_body(res, 400)
    assert row_counts(app) == before


def test_a_body_over_the_size_limit_is_413(app, world, client):
    before = row_counts(app)
    body = json.dumps({"name": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)})
    res = send(world, client, "admin", "POST", "/api/departments", body)
    assert_error_body(res, 413)
    assert row_counts(app) == before


def test_authentication_still_comes_before_a_bad_body(client):
    res = client.post("/api/departments", data='{"name": "\\u0000"}', content_type="application/json")
    assert_error_body(res, 401)


# --- query strings ----------------------------------------------------------------------

LISTS = [
    "/api/staff",
    "/api/departments",
    "/api/specializations",
    "/api/test-types",
    "/api/medicines",
    "/api/medicine-instructions",
    "/api/categories",
    "/api/patients",
]


@pytest.mark.parametrize("query", ["q=%00", "q=a%00b", "q=%ED%A0%80", "q=%FF", b"q=\xff", b"q=a\x00"])
@pytest.mark.parametrize("path", LISTS)
def test_nul_or_invalid_utf8_in_a_search_is_422(admin, path, query):
    if isinstance(query, bytes):  # raw bytes, as a client may put them on the request line
        res = admin.get(path, environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    else:
        res = admin.get(path, query_string=query)
    error = assert_error_body(res, 422)
    assert "query" in error["errors"], error


@pytest.mark.parametrize(
    "url",
    [
        "/api/staff?role=%00",
        "/api/doctors?department_id=%00",
        "/api/appointments?status=%00",
        "/api/bills?status=%00",
        "/api/queue/{doctor_id}?date=%00",
        "/api/patients/{patient_id}/appointments?page=%00",
        "/api/staff?q=ok&%00=1",
    ],
)
def test_nul_in_any_query_value_or_name_is_422(world, url):
    ids, clients = world
    res = clients["admin"].get(url.format(**ids))
    assert_error_body(res, 422)


def test_authentication_still_comes_before_a_bad_query(client):
    assert_error_body(client.get("/api/staff?q=%00"), 401)


def test_a_plain_search_with_non_ascii_text_still_works(admin):
    admin.post("/api/departments", json={"name": "Cardiología"})
    res = admin.get("/api/departments", query_string={"q": "Cardiología"})
    assert res.status_code == 200
    assert [item["name"] for item in res.get_json()["data"]] == ["Cardiología"]


# --- the sign-in form -------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        {"username": "admin1\x00", "password": "secret-pass"},
        {"username": "admin1", "password": "secret\x00pass"},
    ],
)
def test_nul_in_the_login_form_is_422(app, client, make_user, form):
    make_user("admin", username="admin1")
    before = row_counts(app)
    res = client.post("/login", data=form)
    assert_error_body(res, 422)
    assert "form" in res.get_json()["errors"]
    assert row_counts(app) == before


def test_nul_in_the_login_pages_query_is_422(client):
    assert_error_body(client.get("/login?next=%00"), 422)
