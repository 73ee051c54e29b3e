"""CLI commands: create-user and seed-demo."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select


def counts(app) -> dict[str, int]:
    from hms.extensions import db

    with app.app_context():
        result = {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
    return result


def user_row(app, username: str):
    from hms.auth.models import User
    from hms.extensions import db

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        if user is not None:
            db.session.expunge(user)
        db.session.remove()
    return user


@pytest.fixture
def cli(app):
    return app.test_cli_runner()


def create_user(cli, *args, **kwargs):
    return cli.invoke(args=["create-user", *args], **kwargs)


def test_create_user_lowercases_and_can_sign_in(app, cli, client):
    res = create_user(
        cli, "NewDesk", "--role", "reception", "--name", "New Desk", "--password", "long-enough-1"
    )
    assert res.exit_code == 0, res.output
    assert "newdesk" in res.output and "long-enough-1" not in res.output
    user = user_row(app, "newdesk")
    assert user.role == "reception" and user.name == "New Desk" and user.active
    assert "long-enough-1" not in user.password_hash
    login = client.post("/api/auth/token", json={"username": "NewDesk", "password": "long-enough-1"})
    assert login.status_code == 200 and login.get_json()["user"]["role"] == "reception"


def test_create_user_prompts_for_the_password_twice(app, cli):
    res = create_user(cli, "drx", "--role", "doctor", "--name", "Dr. X", input="pw-typed-123\npw-typed-123\n")
    assert res.exit_code == 0, res.output
    assert "pw-typed-123" not in res.output
    user = user_row(app, "drx")
    assert user.role == "doctor" and user.consultation_fee is not None and user.hospital_fee is not None


def test_create_user_duplicate_is_an_error(app, cli):
    args = ["--role", "admin", "--name", "Boss", "--password", "boss-pass-1"]
    assert create_user(cli, "boss", *args).exit_code == 0
    before = counts(app)
    res = create_user(cli, "BOSS", *args)
    assert res.exit_code != 0
    assert "already taken" in res.output
    assert counts(app) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["someone", "--role", "nurse", "--name", "N", "--password", "long-enough"], "nurse"),
        (["someone", "--role", "reception", "--name", "N", "--password", "short"], "Password"),
        (["bad name!", "--role", "reception", "--name", "N", "--password", "long-enough"], "Username"),
        # The API's rule (hms.auth.models): 3 characters at least, here as there.
        (["ab", "--role", "reception", "--name", "N", "--password", "long-enough"], "Username"),
        (["someone", "--role", "reception", "--name", "   ", "--password", "long-enough"], "Name"),
        (["someone", "--name", "N", "--password", "long-enough"], "--role"),
    ],
)
def test_create_user_rejects_bad_input(app, cli, args, message):
    res = create_user(cli, *args)
    assert res.exit_code != 0
    assert message in res.output
    assert counts(app)["users"] == 0


def seed(cli, *args):
    res = cli.invoke(args=["seed-demo", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_seed_demo_twice_adds_nothing_the_second_time(app, cli, client):
    first = seed(cli, "--patients", "25", "--doctors", "3")
    after_first = counts(app)
    assert after_first["patients"] == 25
    assert after_first["users"] == 5 + 3
    for table in ("departments", "specializations", "test_types", "medicines", "medicine_instructions"):
        assert after_first[table] > 0, table
    assert after_first["medicines"] >= 20 and after_first["medicine_instructions"] >= 8
    assert f"Added {sum(after_first.values()) - after_first['counters']} rows" in first
    for password in ("admin-pass", "reception-pass", "doctor-pass", "cashier-pass", "display-pass"):
        assert password in first

    second = seed(cli, "--patients", "25", "--doctors", "3")
    assert counts(app) == after_first
    assert "Added 0 rows" in second and "admin-pass" in second

    # Every demo login works, and the doctors are bookable (department and fees set).
    for username, password in (
        ("admin", "admin-pass"),
        ("doctor2", "doctor-pass"),
        ("display", "display-pass"),
    ):
        res = client.post("/api/auth/token", json={"username": username, "password": password})
        assert res.status_code == 200, username
    from hms.auth.models import User
    from hms.extensions import db
    from hms.reference.models import Category

    with app.app_context():
        doctors = db.session.scalars(select(User).where(User.role == "doctor")).all()
        assert {d.username for d in doctors} == {"doctor", "doctor1", "doctor2", "doctor3"}
        assert all(d.department_id and d.specialization_id and d.consultation_fee > 0 for d in doctors)
        rooms = {d.username: d.room for d in doctors}
        assert rooms == {"doctor": "Room 1", "doctor1": "Room 2", "doctor2": "Room 3", "doctor3": "Room 4"}
        categories = set(db.session.scalars(select(Category.name)))
        assert {"Consultation", "Hospital fee", "Laboratory", "Pharmacy"} <= categories
        db.session.remove()


def test_seed_demo_tops_patients_up_and_continues_the_mrns(app, cli, reception):
    res = reception.post("/api/patients", json={"name": "Walk In", "gender": "male"})
    assert res.get_json()["mrn"] == "P000001"
    seed(cli, "--patients", "5", "--doctors", "1")
    seed(cli, "--patients", "8", "--doctors", "2")
    assert counts(app)["users"] == 1 + 5 + 2  # the reception fixture's account, 5 roles, 2 doctors
    from hms.extensions import db
    from hms.patients.models import Patient

    with app.app_context():
        mrns = sorted(db.session.scalars(select(Patient.mrn)))
        db.session.remove()
    assert mrns == [f"P{n:06d}" for n in range(1, 9)]
    nxt = reception.post("/api/patients", json={"name": "Next", "gender": "female"})
    assert nxt.get_json()["mrn"] == "P000009"


def test_seed_demo_patients_are_valid_and_searchable(app, cli, reception):
    seed(cli, "--patients", "40", "--doctors", "0")
    page = reception.get("/api/patients?limit=100").get_json()
    assert page["meta"]["total"] == 40
    phones = [p["phone"] for p in page["data"] if p["phone"]]
    assert phones and all(phone.startswith("+91") and len(phone) == 13 for phone in phones)
    some = page["data"][0]
    found = reception.get("/api/patients", query_string={"q": some["name"].split()[0]}).get_json()
    assert some["id"] in [p["id"] for p in found["data"]]
    # By the phone, without and with its country code.
    with_phone = next(p for p in page["data"] if p["phone"])
    for q in (with_phone["phone"][3:8], "+91 " + with_phone["phone"][3:8]):
        found = reception.get("/api/patients", query_string={"q": q}).get_json()
        assert with_phone["id"] in [p["id"] for p in found["data"]], q


def test_seed_demo_medicines_are_found_by_their_generic_name(app, cli, reception):
    seed(cli, "--patients", "0", "--doctors", "0")
    found = reception.get("/api/medicines", query_string={"q": "paracetamol"}).get_json()
    assert {m["name"] for m in found["data"]} == {"Crocin", "Dolo 650"}


def test_seed_demo_if_empty(app, cli, make_user):
    make_user("admin")
    before = counts(app)
    output = seed(cli, "--if-empty", "--patients", "3")
    assert "nothing seeded" in output and "Added 0 rows" in output
    assert counts(app) == before


def test_seed_demo_if_empty_on_an_empty_database_seeds(app, cli):
    output = seed(cli, "--if-empty", "--patients", "3", "--doctors", "1")
    assert counts(app)["patients"] == 3 and counts(app)["users"] == 6
    assert "admin-pass" in output


@pytest.mark.parametrize("args", [["--patients", "-1"], ["--doctors", "x"], ["--patients", "abc"]])
def test_seed_demo_rejects_bad_sizes(app, cli, args):
    res = cli.invoke(args=["seed-demo", *args])
    assert res.exit_code != 0
    assert counts(app)["users"] == 0
