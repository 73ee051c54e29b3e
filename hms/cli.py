"""Flask CLI commands: create-user and seed-demo.

    flask --app wsgi create-user USERNAME --role ROLE --name NAME [--password P]
    flask --app wsgi seed-demo [--patients 200] [--doctors 10] [--if-empty]

seed-demo is idempotent: reference data and accounts are matched by their natural keys
(names, usernames) and only the missing ones are added; patients are topped up to
--patients (when at least that many patients exist, none are added). Each phase is one
transaction. It prints the demo logins (the documented demo passwords) and how many
rows it added; create-user never prints the password.
"""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta
from decimal import Decimal

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select
from tqdm import tqdm

from hms.auth.models import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    USERNAME_PATTERN,
    USERNAME_RULE,
    User,
    normalize_username,
)
from hms.auth.service import hash_password
from hms.core.roles import DOCTOR, ROLES
from hms.core.uow import unit_of_work
from hms.errors import Conflict, ValidationFailed
from hms.extensions import cache, db
from hms.patients import service as patients
from hms.reference.models import Category, Department, Medicine, MedicineInstruction, Specialization, TestType

PROGRESS_FROM = 1000  # show a progress bar from this many patients on
DEMO_SEED = 20260101


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_user_command)
    app.cli.add_command(seed_demo_command)


# --- accounts ---------------------------------------------------------------------------


def create_account(
    username: str,
    password: str,
    name: str,
    role: str,
    *,
    password_hash: str | None = None,
    **fields,
) -> User:
    """Add one account to the caller's unit of work. Username trimmed and lower-cased (the
    API's rule, hms.auth.models); doctors get 0.00 fees by default.

    Raises ValidationFailed for a bad username, role, name or password and Conflict for a
    username already taken. `password_hash` lets a caller hash a shared password once.
    """
    username = normalize_username(username)
    name = name.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed(f"Username: {USERNAME_RULE}")
    if role not in ROLES:
        raise ValidationFailed(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.")
    if not name or len(name) > 120:
        raise ValidationFailed("Name: 1 to 120 characters.")
    if password_hash is None and not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValidationFailed(f"Password: {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters.")
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"Username {username!r} is already taken.")
    if role == DOCTOR:
        fields.setdefault("consultation_fee", Decimal("0.00"))
        fields.setdefault("hospital_fee", Decimal("0.00"))
    user = User(
        username=username,
        password_hash=password_hash or hash_password(password),
        name=name,
        role=role,
        **fields,
    )
    db.session.add(user)
    return user


@click.command("create-user")
@click.argument("username")
@click.option("--role", required=True, help=f"One of: {', '.join(ROLES)}.")
@click.option("--name", required=True, help="Display name, e.g. 'Dr. Asha Rao'.")
@click.option(
    "--password",
    help=f"At least {PASSWORD_MIN_LENGTH} characters; prompted for (twice) when omitted.",
)
@with_appcontext
def create_user_command(username: str, role: str, name: str, password: str | None) -> None:
    """Create a staff account (doctors start with 0.00 fees: set them with PATCH /api/staff)."""
    role = role.strip().lower()
    if role not in ROLES:  # checked before prompting for a password
        raise click.BadParameter(f"{role!r} is not one of {', '.join(ROLES)}.", param_hint="--role")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    taken = f"Username {normalize_username(username)!r} is already taken."
    try:
        with unit_of_work(conflict=taken):  # a twin created meanwhile: the unique key says so
            user = create_account(username, password, name, role)
    except (ValidationFailed, Conflict) as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Created {user.role} account {user.username!r} (id {user.id}).")


# --- demo data --------------------------------------------------------------------------

DEPARTMENTS = (
    "General Medicine",
    "Pediatrics",
    "Cardiology",
    "Orthopedics",
    "Dermatology",
    "ENT",
    "Gynecology",
)
SPECIALIZATIONS = (
    "General Physician",
    "Pediatrician",
    "Cardiologist",
    "Orthopedic Surgeon",
    "Dermatologist",
    "ENT Specialist",
    "Gynecologist",
)
TEST_TYPES = (
    ("Complete Blood Count", "350.00"),
    ("Blood Sugar (Fasting)", "120.00"),
    ("HbA1c", "450.00"),
    ("Lipid Profile", "600.00"),
    ("Liver Function Test", "750.00"),
    ("Kidney Function Test", "700.00"),
    ("Thyroid Profile", "550.00"),
    ("Urine Routine", "150.00"),
    ("Chest X-Ray", "450.00"),
    ("ECG", "300.00"),
    ("Ultrasound Abdomen", "1200.00"),
)
# (name, generic name, form, strength, unit price)
MEDICINES = (
    ("Crocin", "Paracetamol", "tablet", "500 mg", "2.00"),
    ("Dolo 650", "Paracetamol", "tablet", "650 mg", "3.00"),
    ("Brufen", "Ibuprofen", "tablet", "400 mg", "2.50"),
    ("Augmentin", "Amoxicillin + Clavulanic acid", "tablet", "625 mg", "22.00"),
    ("Mox", "Amoxicillin", "capsule", "500 mg", "8.00"),
    ("Azithral", "Azithromycin", "tablet", "500 mg", "24.00"),
    ("Ciplox", "Ciprofloxacin", "tablet", "500 mg", "6.00"),
    ("Pan 40", "Pantoprazole", "tablet", "40 mg", "9.00"),
    ("Omez", "Omeprazole", "capsule", "20 mg", "5.00"),
    ("Cetzine", "Cetirizine", "tablet", "10 mg", "2.00"),
    ("Allegra", "Fexofenadine", "tablet", "120 mg", "18.00"),
    ("Glycomet", "Metformin", "tablet", "500 mg", "3.00"),
    ("Amlong", "Amlodipine", "tablet", "5 mg", "4.00"),
    ("Telma", "Telmisartan", "tablet", "40 mg", "10.00"),
    ("Atorva", "Atorvastatin", "tablet", "10 mg", "8.00"),
    ("Ecosprin", "Aspirin", "tablet", "75 mg", "1.00"),
    ("Thyronorm", "Levothyroxine", "tablet", "50 mcg", "2.00"),
    ("Asthalin", "Salbutamol", "inhaler", "100 mcg", "150.00"),
    ("Benadryl", "Diphenhydramine", "syrup", "100 ml", "110.00"),
    ("ORS", "Oral rehydration salts", "sachet", "21 g", "20.00"),
    ("Betadine", "Povidone-iodine", "ointment", "5%", "95.00"),
)
INSTRUCTIONS = (
    "After food",
    "Before food",
    "On an empty stomach",
    "At bedtime",
    "With plenty of water",
    "Do not crush or chew",
    "Shake well before use",
    "Apply a thin layer on the affected area",
)
CATEGORIES = ("Consultation", "Hospital fee", "Laboratory", "Pharmacy", "Procedure", "Radiology")
DEMO_PASSWORDS = {
    "admin": "admin-pass",
    "reception": "reception-pass",
    "doctor": "doctor-pass",
    "cashier": "cashier-pass",
    "display": "display-pass",
}
ROLE_ACCOUNTS = (
    ("admin", "admin", "Demo Admin"),
    ("reception", "reception", "Demo Reception"),
    ("doctor", "doctor", "Dr. Demo Doctor"),
    ("cashier", "cashier", "Demo Cashier"),
    ("display", "display", "Waiting Room Display"),
)
# fmt: off
MALE_NAMES = (
    "Aarav", "Vivaan", "Aditya", "Arjun", "Rohan", "Rahul", "Amit", "Vikram", "Sanjay", "Karan", "Rajesh",
    "Suresh", "Anil", "Manoj", "Nikhil", "Imran", "Farhan", "Joseph", "Thomas", "Harpreet", "Gurdeep",
    "Pranav", "Siddharth", "Varun", "Deepak", "Ravi", "Mohan", "Abdul",
)
FEMALE_NAMES = (
    "Ananya", "Diya", "Aadhya", "Priya", "Neha", "Pooja", "Kavya", "Sneha", "Anjali", "Lakshmi", "Meera",
    "Sunita", "Rekha", "Fatima", "Ayesha", "Mary", "Sarah", "Simran", "Harleen", "Ishita", "Nandini",
    "Divya", "Shreya", "Radha", "Geeta", "Zoya", "Tanvi", "Kiran",
)
SURNAMES = (
    "Sharma", "Verma", "Gupta", "Patel", "Shah", "Mehta", "Iyer", "Nair", "Reddy", "Rao", "Kumar", "Singh",
    "Das", "Bose", "Banerjee", "Mukherjee", "Chatterjee", "Khan", "Qureshi", "Fernandes", "D'Souza",
    "Pillai", "Menon", "Joshi", "Kulkarni", "Deshpande", "Gill", "Sandhu", "Ahmed", "Jain",
)
# fmt: on
STREETS = (
    "MG Road",
    "Station Road",
    "Park Street",
    "Lake View Road",
    "Gandhi Nagar",
    "Nehru Colony",
    "Temple Street",
)
CITIES = ("Pune", "Bengaluru", "Chennai", "Hyderabad", "Kochi", "Jaipur", "Kolkata", "Mumbai", "Delhi")


def _demo_patients(count: int) -> list[dict]:
    """`count` patients, always the same ones (seeded), valid for register_many()."""
    rng = random.Random(DEMO_SEED)
    first_day, span = date(1940, 1, 1), (date(2023, 12, 31) - date(1940, 1, 1)).days
    rows = []
    for _ in range(count):
        gender = rng.choices(("male", "female", "other"), weights=(48, 48, 4))[0]
        first = rng.choice(
            MALE_NAMES
            if gender == "male"
            else FEMALE_NAMES
            if gender == "female"
            else MALE_NAMES + FEMALE_NAMES
        )
        born = first_day + timedelta(days=rng.randrange(span))
        with_birth_date = rng.random() < 0.85
        rows.append(
            {
                "name": f"{first} {rng.choice(SURNAMES)}",
                "gender": gender,
                "date_of_birth": born if with_birth_date else None,
                # Without a date of birth only the age is known (as told at the desk).
                "age": None if with_birth_date else max(0, 2024 - born.year),
                "phone": f"+91{rng.choice('6789')}{rng.randrange(10**9):09d}" if rng.random() < 0.9 else None,
                "address": f"{rng.randrange(1, 400)}, {rng.choice(STREETS)}, {rng.choice(CITIES)}",
            }
        )
    return rows


def _missing(model, column, wanted) -> list:
    """The values of `wanted` not yet present in model.column (one query)."""
    present = set(db.session.scalars(select(column).where(column.in_(list(wanted)))))
    return [value for value in wanted if value not in present]


def _seed_reference() -> int:
    """Departments, specializations, test types, medicines, instructions, categories."""
    added = [Department(name=n) for n in _missing(Department, Department.name, DEPARTMENTS)]
    added += [Specialization(name=n) for n in _missing(Specialization, Specialization.name, SPECIALIZATIONS)]
    prices = dict(TEST_TYPES)
    added += [TestType(name=n, price=Decimal(prices[n])) for n in _missing(TestType, TestType.name, prices)]
    added += [
        MedicineInstruction(text=t)
        for t in _missing(MedicineInstruction, MedicineInstruction.text, INSTRUCTIONS)
    ]
    added += [Category(name=n) for n in _missing(Category, Category.name, CATEGORIES)]
    present = set(db.session.execute(select(Medicine.name, Medicine.form, Medicine.strength)).all())
    added += [
        Medicine(name=name, generic_name=generic, form=form, strength=strength, unit_price=Decimal(price))
        for name, generic, form, strength, price in MEDICINES
        if (name, form, strength) not in present
    ]
    db.session.add_all(added)
    return len(added)


def _seed_accounts(doctors: int) -> int:
    """One account per role plus doctor1..doctorN (the `doctor` account is extra)."""
    departments = dict(db.session.execute(select(Department.name, Department.id)).all())
    specializations = dict(db.session.execute(select(Specialization.name, Specialization.id)).all())
    wanted = [(username, role, name, {}) for username, role, name in ROLE_ACCOUNTS]
    for number in range(1, doctors + 1):
        first = (MALE_NAMES + FEMALE_NAMES)[(number * 7) % (len(MALE_NAMES) + len(FEMALE_NAMES))]
        wanted.append((f"doctor{number}", DOCTOR, f"Dr. {first} {SURNAMES[number % len(SURNAMES)]}", {}))
    rooms = itertools.count(1)
    for index, (_username, role, _name, fields) in enumerate(wanted):
        if role == DOCTOR:
            slot = index % len(DEPARTMENTS)
            fields.update(
                department_id=departments.get(DEPARTMENTS[slot]),
                specialization_id=specializations.get(SPECIALIZATIONS[slot]),
                consultation_fee=Decimal(300 + 100 * (index % 5)),
                hospital_fee=Decimal(50 + 25 * (index % 3)),
                room=f"Room {next(rooms)}",  # the `doctor` account Room 1, doctor1 Room 2...
            )
    missing = set(_missing(User, User.username, [w[0] for w in wanted]))
    hashes: dict[str, str] = {}  # one hash per demo password, shared by its demo accounts
    added = 0
    for username, role, name, fields in wanted:
        if username not in missing:
            continue
        password = DEMO_PASSWORDS[role]
        if password not in hashes:
            hashes[password] = hash_password(password)
        create_account(username, password, name, role, password_hash=hashes[password], **fields)
        added += 1
    return added


def _seed_patients(count: int) -> int:
    """Top the patients up to `count`, in bulk, with MRNs reserved from the counter."""
    existing = patients.count_patients()
    if existing >= count:
        return 0
    rows = _demo_patients(count)[existing:]
    with tqdm(total=len(rows), desc="patients", unit="row", disable=len(rows) < PROGRESS_FROM) as bar:
        return patients.register_many(rows, progress=bar.update)


def _clear_cache() -> None:
    """Reference lists and doctors are cached: drop them so the new rows show at once."""
    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - seeding must not fail on a cache outage
        click.echo("warning: could not clear the cache; cached lists expire on their own.", err=True)


def _print_logins(doctors: int) -> None:
    click.echo("Demo logins:")
    click.echo(f"  {'role':<10} {'username':<20} password")
    for username, role, _name in ROLE_ACCOUNTS:
        click.echo(f"  {role:<10} {username:<20} {DEMO_PASSWORDS[role]}")
    if doctors:
        usernames = "doctor1" if doctors == 1 else f"doctor1..doctor{doctors}"
        click.echo(f"  {'doctor':<10} {usernames:<20} {DEMO_PASSWORDS['doctor']}")


@click.command("seed-demo")
@click.option(
    "--patients", "patient_count", default=200, show_default=True, type=click.IntRange(0, 1_000_000)
)
@click.option("--doctors", default=10, show_default=True, type=click.IntRange(0, 1000))
@click.option("--if-empty", is_flag=True, help="Do nothing when any account exists.")
@with_appcontext
def seed_demo_command(patient_count: int, doctors: int, if_empty: bool) -> None:
    """Load demo data (idempotent): reference data, one login per role, doctors, patients."""
    if if_empty and db.session.scalar(select(User.id).limit(1)) is not None:
        click.echo("Accounts already exist: nothing seeded (--if-empty).")
        click.echo("Added 0 rows.")
        return
    with unit_of_work():
        reference = _seed_reference()
    with unit_of_work():
        accounts = _seed_accounts(doctors)
    added_patients = _seed_patients(patient_count)  # its own unit of work (register_many)
    total = reference + accounts + added_patients
    if total:
        _clear_cache()
    _print_logins(doctors)
    click.echo(
        f"Added {total} rows (reference data {reference}, accounts {accounts}, patients {added_patients})."
    )
