"""A clinic written straight into a benchmark's database with SQL: staff, doctors with
fees, patients and, optionally, yesterday's completed consultations and today's queues.
Plain SQL in one transaction: seconds for thousands of rows, where the API would take
minutes. Every account's password is PASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

PASSWORD = "bench-password"
# The category names the booking service files the two fees under.
FEE_CATEGORIES = ("Consultation", "Hospital fee")


@dataclass
class Seed:
    admin: str
    reception: str
    password: str
    doctor_ids: list[int]
    patient_ids: list[int]
    department_ids: list[int] = field(default_factory=list)


def search_columns(conn: psycopg.Connection) -> tuple[str, str]:
    """The patients' derived search columns, if the tree under test has them (migration
    6c2d3e4f5a61; older trees are benchmarked too): extra column names and their values
    for an INSERT ... SELECT producing `name` and `phone` (+91 numbers, ASCII names, for
    which lower() is the app's fold())."""
    present = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'patients' AND column_name = 'name_folded'"
    ).fetchone()
    if present is None:
        return "", ""
    return ", name_folded, phone_national", ", lower(name), substr(phone, 4)"


def _password_hash() -> str:
    # The production config's method (werkzeug's scrypt defaults): one hash for every account.
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD, method="scrypt")


def seed_clinic(
    dsn: str,
    *,
    doctors: int = 50,
    patients: int = 2000,
    queue_length: int = 0,
    completed_history: int = 20,
) -> Seed:
    """Staff, doctors with fees, patients, and optionally today's queue of every doctor.

    With `queue_length` L > 0 each doctor gets today's queue as the app would have left
    it: tokens 1..L, the first patient IN_CONSULTATION (entered 5 minutes ago), the
    others WAITING at positions 2..L, and the queue_days row (last_token L, version L).
    `completed_history` COMPLETED consultations per doctor yesterday give the estimated
    waits real lengths to average. Plain SQL, one transaction: seconds for thousands.
    """
    with psycopg.connect(dsn) as conn:
        department_ids = _seed_reference(conn)
        reception_id, doctor_ids = _seed_staff(conn, department_ids, doctors)
        patient_ids = _seed_patients(conn, patients)
        if completed_history:
            _seed_completed_yesterday(conn, doctor_ids, patient_ids, reception_id, completed_history)
        if queue_length:
            _seed_today_queues(conn, doctor_ids, patient_ids, reception_id, queue_length)
    return Seed("bench-admin", "bench-reception", PASSWORD, doctor_ids, patient_ids, department_ids)


def _seed_reference(conn: psycopg.Connection) -> list[int]:
    """Five departments and the two fee categories; the department ids."""
    conn.execute(
        "INSERT INTO departments (name, created_at) SELECT 'Department ' || n, now() FROM generate_series(1, 5) n"
    )
    for category in FEE_CATEGORIES:
        conn.execute(
            "INSERT INTO categories (name, created_at) VALUES (%s, now()) ON CONFLICT DO NOTHING", (category,)
        )
    return [row[0] for row in conn.execute("SELECT id FROM departments ORDER BY id")]


def _seed_staff(conn: psycopg.Connection, department_ids: list[int], doctors: int) -> tuple[int, list[int]]:
    """bench-admin, bench-reception and the doctors (fees 400-800 + 100); (reception id, doctor ids)."""
    password_hash = _password_hash()
    staff = """
        INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee,
                           hospital_fee, is_available, active, token_epoch, created_at, updated_at)
        VALUES (%(username)s, %(hash)s, %(name)s, %(role)s, NULL, NULL, NULL, true, true, 0, now(), now())
        RETURNING id
    """
    conn.execute(
        staff, {"username": "bench-admin", "hash": password_hash, "name": "Bench Admin", "role": "admin"}
    )
    reception_id = conn.execute(
        staff,
        {
            "username": "bench-reception",
            "hash": password_hash,
            "name": "Bench Reception",
            "role": "reception",
        },
    ).fetchone()[0]
    conn.execute(
        """
        INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee,
                           hospital_fee, is_available, active, token_epoch, created_at, updated_at)
        SELECT 'bench-doctor-' || lpad(n::text, 4, '0'), %(hash)s, 'Dr. Bench ' || n, 'doctor',
               (%(departments)s::int[])[1 + n %% %(department_count)s],
               400 + (n %% 5) * 100, 100, true, true, 0, now(), now()
        FROM generate_series(1, %(doctors)s) n
        """,
        {
            "hash": password_hash,
            "departments": department_ids,
            "department_count": len(department_ids),
            "doctors": doctors,
        },
    )
    doctor_ids = [row[0] for row in conn.execute("SELECT id FROM users WHERE role = 'doctor' ORDER BY id")]
    return reception_id, doctor_ids


def _seed_patients(conn: psycopg.Connection, patients: int) -> list[int]:
    """`patients` patients P000001..., and the MRN counter after them, as the app expects."""
    folded, folded_values = search_columns(conn)
    conn.execute(
        f"""
        INSERT INTO patients (mrn, name, gender, age, phone, address, created_at, updated_at{folded})
        SELECT 'P' || lpad(n::text, 6, '0'), name, (ARRAY['male','female','other'])[1 + n %% 3], 1 + n %% 90,
               phone, n || ', MG Road', now(), now(){folded_values}
        FROM (
            SELECT n,
                   (ARRAY['Asha','Ravi','Meera','Imran','Priya','Joseph','Kavya','Arjun'])[1 + n %% 8]
                     || ' ' || (ARRAY['Rao','Sharma','Nair','Khan','Patel','Iyer','Das'])[1 + n %% 7] AS name,
                   '+9198' || lpad(n::text, 8, '0') AS phone
            FROM generate_series(1, %(patients)s) n
        ) generated
        """,
        {"patients": patients},
    )
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('patient_mrn', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        (patients,),
    )
    return [row[0] for row in conn.execute("SELECT id FROM patients ORDER BY id")]


def _seed_completed_yesterday(conn, doctor_ids, patient_ids, creator_id, per_doctor) -> None:
    """COMPLETED consultations of 5..19 minutes, yesterday, tokens 1..per_doctor."""
    conn.execute(
        """
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, created_by_id, created_at, waiting_since, entry_time,
                                  exit_time, updated_at)
        SELECT (%(patients)s::int[])[1 + (d.i * 97 + t) %% %(patient_count)s], d.id, day, 'NEW', 'COMPLETED', t,
               NULL, %(creator)s, day + time '08:00', day + time '08:00',
               day + time '09:00' + t * interval '15 minutes',
               day + time '09:00' + t * interval '15 minutes' + (5 + (t * 7) %% 15) * interval '1 minute',
               now()
        FROM unnest(%(doctors)s::int[]) WITH ORDINALITY AS d(id, i),
             generate_series(1, %(per_doctor)s) t,
             (SELECT (now() AT TIME ZONE 'UTC')::date - 1 AS day) y
        """,
        {
            "patients": patient_ids,
            "patient_count": len(patient_ids),
            "creator": creator_id,
            "doctors": doctor_ids,
            "per_doctor": per_doctor,
        },
    )
    conn.execute(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT id, (now() AT TIME ZONE 'UTC')::date - 1, %(per_doctor)s, 3 * %(per_doctor)s
        FROM unnest(%(doctors)s::int[]) AS d(id)
        """,
        {"doctors": doctor_ids, "per_doctor": per_doctor},
    )


def _seed_today_queues(conn, doctor_ids, patient_ids, creator_id, length) -> None:
    conn.execute(
        """
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, chief_complaint, created_by_id, created_at, waiting_since,
                                  entry_time, updated_at)
        SELECT (%(patients)s::int[])[1 + (d.i * 131 + t * 7) %% %(patient_count)s], d.id,
               (now() AT TIME ZONE 'UTC')::date, 'NEW',
               CASE WHEN t = 1 THEN 'IN_CONSULTATION' ELSE 'WAITING' END, t, t, 'Fever and cough',
               %(creator)s, now() - interval '2 hours' + t * interval '1 minute',
               now() - interval '2 hours' + t * interval '1 minute',
               CASE WHEN t = 1 THEN now() - interval '5 minutes' END, now()
        FROM unnest(%(doctors)s::int[]) WITH ORDINALITY AS d(id, i), generate_series(1, %(length)s) t
        """,
        {
            "patients": patient_ids,
            "patient_count": len(patient_ids),
            "creator": creator_id,
            "doctors": doctor_ids,
            "length": length,
        },
    )
    conn.execute(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT id, (now() AT TIME ZONE 'UTC')::date, %(length)s, 3 * %(length)s + 1
        FROM unnest(%(doctors)s::int[]) AS d(id)
        """,
        {"doctors": doctor_ids, "length": length},
    )
