"""A clinic's history written straight into a benchmark's database with set-based SQL
(INSERT ... SELECT generate_series): staff, doctors, patients, appointments over many
days, their events, bills with items, payments and refunds. A million appointments take
a minute or two, not the hours the API would. Used by bench/explain_queue.py and
bench/explain_reports.py.

The shape (`History`): `doctors` doctors each see `per_day` patients a day over as many
days as `appointments` needs, the last `days_ahead` of them after today. Past days are
82% COMPLETED (entered the room at their slot of an 8-hour day, 5-19 minutes inside),
9% CANCELLED, 9% NO_SHOW; today the first 8 tokens are COMPLETED, token 9 IN_CONSULTATION
and the others WAITING; days ahead are WAITING. Each appointment has one consultation bill
(two items, 600 due on the appointment's day, a twentieth of them 30 days later: insurance
claims): of a completed one 80% are PAID in one payment, 5% PAID in two payments by
different methods, 5% paid and then partly refunded (a REFUND row the next day), 5%
PARTIALLY_PAID, 5% UNPAID; a cancelled one's is VOID; a no-show's and a waiting one's
UNPAID. So unpaid and part-paid bills reach back over the whole history (receivables of
every age). Payments are received by `cashiers` cashier accounts a few minutes after the
consultation, by CASH (45%), CARD (25%), UPI (22%), INSURANCE (5%) or OTHER (3%).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from werkzeug.security import generate_password_hash

from bench.lib.seed import search_columns

TABLES = ("appointments", "appointment_events", "bills", "bill_items", "payments", "patients")


@dataclass(frozen=True)
class History:
    appointments: int
    events: int = 0  # appointment events in all; 0: none
    doctors: int = 100
    patients: int = 20_000
    per_day: int = 20
    days_ahead: int = 4
    cashiers: int = 4
    password: str = "bench-password"  # the reception account's (and the cashiers')

    @property
    def days(self) -> int:
        return max(self.days_ahead + 2, -(-self.appointments // (self.doctors * self.per_day)))


def generate(dsn: str, history: History) -> dict:
    """Fill the (empty, migrated) database, then VACUUM ANALYZE (what autovacuum leaves
    a busy table in); row counts and the seconds taken."""
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        ex = conn.execute
        reception, first_doctor, first_cashier = _people(ex, history)
        _appointments(ex, history, reception, first_doctor)
        if history.events:
            _events(ex, max(1, history.events // history.appointments), reception)
        _bills(ex, history, first_cashier)
        counts = {table: ex(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    counts["seconds"] = round(time.perf_counter() - started, 1)
    return counts


def _people(ex, history: History) -> tuple[int, int, int]:
    """Departments, the fee categories, a reception account and `cashiers` cashier
    accounts (password `history.password`), the doctors and the patients; (reception id,
    first doctor id, first cashier id)."""
    ex(
        "INSERT INTO departments (name, created_at) SELECT 'Department ' || n, now() FROM generate_series(1, 8) n"
    )
    ex("INSERT INTO categories (name, created_at) VALUES ('Consultation', now()), ('Hospital fee', now())")
    ex(
        """
        INSERT INTO users (username, password_hash, name, role, department_id, consultation_fee, hospital_fee,
                           is_available, active, token_epoch, created_at, updated_at)
        SELECT 'reception', %(hash)s, 'Reception', 'reception', NULL::integer, NULL::numeric, NULL::numeric, true, true, 0, now(), now()
        UNION ALL
        SELECT 'cashier-' || n, %(hash)s, 'Cashier ' || n, 'cashier', NULL, NULL, NULL, true, true, 0, now(), now()
        FROM generate_series(1, %(cashiers)s) n
        UNION ALL
        SELECT 'doctor-' || n, 'x', 'Dr. ' || n, 'doctor', 1 + mod(n, 8), 500, 100, true, true, 0, now(), now()
        FROM generate_series(1, %(doctors)s) n
        """,
        {
            "doctors": history.doctors,
            "cashiers": max(1, history.cashiers),
            "hash": generate_password_hash(history.password, method="scrypt"),
        },
    )
    folded, folded_values = search_columns(ex.__self__)
    ex(
        f"""
        INSERT INTO patients (mrn, name, gender, age, phone, created_at, updated_at{folded})
        SELECT 'P' || lpad(n::text, 7, '0'), name, (ARRAY['male','female','other'])[1 + n %% 3],
               1 + n %% 90, phone, now(), now(){folded_values}
        FROM (
            SELECT n, 'Patient ' || n AS name, '+9198' || lpad(n::text, 8, '0') AS phone
            FROM generate_series(1, %(patients)s) n
        ) generated
        """,
        {"patients": history.patients},
    )
    reception = ex("SELECT id FROM users WHERE username = 'reception'").fetchone()[0]
    first_doctor = ex("SELECT min(id) FROM users WHERE role = 'doctor'").fetchone()[0]
    first_cashier = ex("SELECT min(id) FROM users WHERE role = 'cashier'").fetchone()[0]
    return reception, first_doctor, first_cashier


def _appointments(ex, history: History, reception: int, first_doctor: int) -> None:
    """The appointments (see the module docstring) and their queue days."""
    doctors, per_day, patients = history.doctors, history.per_day, history.patients
    first_day = f"(now() AT TIME ZONE 'UTC')::date - {history.days - history.days_ahead - 1}"
    slot = max(1, 480 // per_day)  # minutes a consultation slot lasts: an 8-hour day
    ex("SELECT setseed(0.42)")
    ex(
        f"""
        INSERT INTO appointments (patient_id, doctor_id, appointment_date, appointment_type, status, token,
                                  queue_position, chief_complaint, created_by_id, created_at, waiting_since,
                                  entry_time, exit_time, updated_at)
        SELECT patient_id, doctor_id, day, appointment_type, status, token,
               CASE WHEN status IN ('WAITING', 'IN_CONSULTATION')
                    THEN CASE WHEN day = today THEN token - 8 ELSE token END END,
               'Fever', {reception}, booked, booked,
               CASE WHEN status = 'COMPLETED' THEN day + time '09:00' + token * interval '{slot} minutes'
                    WHEN status = 'IN_CONSULTATION' THEN now() - interval '5 minutes' END,
               CASE WHEN status = 'COMPLETED'
                    THEN day + time '09:00' + token * interval '{slot} minutes'
                         + (5 + mod(g, 15)) * interval '1 minute'
               END,
               booked
        FROM (
            SELECT g, 1 + mod(g::bigint * 7919, {patients}) AS patient_id, {first_doctor} + mod(g, {doctors}) AS doctor_id,
                   day, today, token, CASE WHEN mod(g, 3) = 0 THEN 'FOLLOW_UP' ELSE 'NEW' END AS appointment_type,
                   CASE WHEN day < today THEN
                            CASE WHEN r < 0.82 THEN 'COMPLETED' WHEN r < 0.91 THEN 'CANCELLED' ELSE 'NO_SHOW' END
                        WHEN day = today THEN
                            CASE WHEN token <= 8 THEN 'COMPLETED' WHEN token = 9 THEN 'IN_CONSULTATION'
                                 ELSE 'WAITING' END
                        ELSE 'WAITING' END AS status,
                   least(now() - mod(g, 86400) * interval '1 second',
                         day + time '08:00' + token * interval '2 minutes' + mod(g, {doctors}) * interval '1 second')
                       AS booked
            FROM (
                SELECT g, random() AS r, {first_day} + (g / {doctors}) / {per_day} AS day,
                       (now() AT TIME ZONE 'UTC')::date AS today, 1 + mod(g / {doctors}, {per_day}) AS token
                FROM generate_series(0, %(appointments)s - 1) g
            ) numbered
        ) shaped
        """,
        {"appointments": history.appointments},
    )
    ex(
        """
        INSERT INTO queue_days (doctor_id, queue_date, last_token, version)
        SELECT doctor_id, appointment_date, max(token), 2 * count(*) FROM appointments
        GROUP BY doctor_id, appointment_date
        """
    )


def _events(ex, per_appointment: int, reception: int) -> None:
    ex(
        """
        INSERT INTO appointment_events (appointment_id, event_type, from_status, to_status, description,
                                        performed_by_id, performed_at)
        SELECT a.id, (ARRAY['CREATED','ENTERED_ROOM','CONSULTATION_COMPLETED','PAYMENT_RECEIVED',
                            'PRESCRIPTION_ADDED','RETURNED_TO_QUEUE','APPOINTMENT_CANCELLED','NO_SHOW'])[1 + (k - 1) %% 8],
               NULL, NULL, NULL, %(reception)s, a.created_at + k * interval '3 minutes'
        FROM appointments a CROSS JOIN generate_series(1, %(per)s) k
        """,
        {"per": per_appointment, "reception": reception},
    )


# How a completed appointment's bill is settled, by mod(appointment id, 20).
_SPLIT, _REFUNDED, _PART_PAID, _UNPAID = 16, 17, 18, 19
# The method of a payment, by mod(payment's seed, 100).
_METHOD = """CASE WHEN mod({seed}, 100) < 45 THEN 'CASH' WHEN mod({seed}, 100) < 70 THEN 'CARD'
                  WHEN mod({seed}, 100) < 92 THEN 'UPI' WHEN mod({seed}, 100) < 97 THEN 'INSURANCE'
                  ELSE 'OTHER' END"""


def _bills(ex, history: History, first_cashier: int) -> None:
    """One consultation bill per appointment with two items, its payments and refunds
    (see the module docstring)."""
    ex(
        f"""
        INSERT INTO bills (number, patient_id, appointment_id, status, total_amount, paid_amount, due_amount,
                           due_date, void_reason, created_by_id, created_at, updated_at)
        SELECT 'S-' || lpad(id::text, 9, '0'), patient_id, id, bill_status, 600, paid, 600 - paid,
               appointment_date + CASE WHEN mod(id, 20) = 3 THEN 30 ELSE 0 END,
               CASE WHEN bill_status = 'VOID' THEN 'Cancelled' END, created_by_id, created_at,
               coalesce(exit_time, created_at)
        FROM (
            SELECT a.*,
                   CASE WHEN status = 'COMPLETED' THEN
                            CASE mod(id, 20) WHEN {_REFUNDED} THEN 500 WHEN {_PART_PAID} THEN 300
                                             WHEN {_UNPAID} THEN 0 ELSE 600 END
                        ELSE 0 END AS paid,
                   CASE WHEN status = 'COMPLETED' THEN
                            CASE mod(id, 20) WHEN {_REFUNDED} THEN 'PARTIALLY_PAID'
                                             WHEN {_PART_PAID} THEN 'PARTIALLY_PAID'
                                             WHEN {_UNPAID} THEN 'UNPAID' ELSE 'PAID' END
                        WHEN status = 'CANCELLED' THEN 'VOID' ELSE 'UNPAID' END AS bill_status
            FROM appointments a
        ) a
        """
    )
    ex(
        """
        INSERT INTO bill_items (bill_id, category_id, description, quantity, unit_price, amount, created_at)
        SELECT b.id, k, CASE k WHEN 1 THEN 'Consultation fee' ELSE 'Hospital fee' END, 1,
               CASE k WHEN 1 THEN 500 ELSE 100 END, CASE k WHEN 1 THEN 500 ELSE 100 END, b.created_at
        FROM bills b CROSS JOIN generate_series(1, 2) k
        """
    )
    cashiers = max(1, history.cashiers)
    # The first payment of every bill with money paid (the whole fee before a refund;
    # half of it when a second payment follows), a few minutes after the consultation.
    ex(
        f"""
        INSERT INTO payments (bill_id, kind, amount, method, reference, reason, received_by_id, created_at)
        SELECT b.id, 'PAYMENT',
               CASE mod(a.id, 20) WHEN {_SPLIT} THEN 300 WHEN {_REFUNDED} THEN 600 ELSE b.paid_amount END,
               {_METHOD.format(seed="a.id * 37")},
               NULL, NULL, {first_cashier} + mod(a.id / 7, {cashiers}), a.exit_time + interval '3 minutes'
        FROM bills b JOIN appointments a ON a.id = b.appointment_id
        WHERE a.status = 'COMPLETED' AND b.paid_amount > 0
        """
    )
    ex(
        f"""
        INSERT INTO payments (bill_id, kind, amount, method, reference, reason, received_by_id, created_at)
        SELECT b.id, 'PAYMENT', 300, {_METHOD.format(seed="a.id * 37 + 50")}, NULL, NULL,
               {first_cashier} + mod(a.id / 7 + 1, {cashiers}), a.exit_time + interval '6 minutes'
        FROM bills b JOIN appointments a ON a.id = b.appointment_id
        WHERE a.status = 'COMPLETED' AND mod(a.id, 20) = {_SPLIT}
        """
    )
    ex(
        f"""
        INSERT INTO payments (bill_id, kind, amount, method, reference, reason, received_by_id, created_at)
        SELECT b.id, 'REFUND', 100, 'CASH', NULL, 'Fee waived in part', {first_cashier} + mod(a.id, {cashiers}),
               least(a.exit_time + interval '1 day', now())
        FROM bills b JOIN appointments a ON a.id = b.appointment_id
        WHERE a.status = 'COMPLETED' AND mod(a.id, 20) = {_REFUNDED}
        """
    )
