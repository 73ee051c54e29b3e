"""deploy/backup: a backup restores into a fresh database with every row and the same
bill totals (PostgreSQL), and old dumps are pruned after HMS_BACKUP_KEEP_DAYS days."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import requires_postgres
from tests.queue.stream_helpers import booking

ROOT = Path(__file__).resolve().parents[2]
BACKUP = ROOT / "deploy" / "backup" / "hms-backup.sh"
RESTORE = ROOT / "deploy" / "backup" / "hms-restore.sh"


def run(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def libpq_url(database_url: str, database: str | None = None) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def table_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def bill_totals(url: str, bill_id: int) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT number, status, total_amount, paid_amount, "
            "(SELECT count(*) FROM bill_items WHERE bill_id = %(id)s), "
            "(SELECT coalesce(sum(amount), 0) FROM payments WHERE bill_id = %(id)s) "
            "FROM bills WHERE id = %(id)s",
            {"id": bill_id},
        ).fetchone()


@requires_postgres
def test_a_backup_restores_into_a_fresh_database_with_every_row(
    app, database_url, reception, cashier, tmp_path
):
    seeded = app.test_cli_runner().invoke(args=["seed-demo", "--patients", "30", "--doctors", "3"])
    assert seeded.exit_code == 0, seeded.output
    doctor_id = reception.get("/api/doctors?limit=1").get_json()["data"][0]["id"]
    patient_id = reception.get("/api/patients?limit=1").get_json()["data"][0]["id"]
    booked = reception.post("/api/appointments", json=booking(patient_id, doctor_id))
    assert booked.status_code == 201, booked.get_json()
    bill_id = booked.get_json()["bill_id"]
    paid = cashier.post(f"/api/bills/{bill_id}/payments", json={"amount": "250.00", "method": "CASH"})
    assert paid.status_code == 201, paid.get_json()

    source = libpq_url(database_url)
    done = run(BACKUP, DATABASE_URL=database_url, HMS_BACKUP_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    dump = Path(done.stdout.strip())
    assert dump.parent == tmp_path and dump.name.startswith("hms-") and dump.suffix == ".dump"

    target = f"{make_url(database_url).database}_restored"
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}"')
    try:
        restored = run(RESTORE, str(dump), target, DATABASE_URL=database_url)
        assert restored.returncode == 0, restored.stderr
        counts = table_counts(source)
        assert counts["patients"] >= 30 and counts["payments"] == 1 and counts["bill_items"] == 2
        assert table_counts(libpq_url(database_url, target)) == counts
        totals = bill_totals(source, bill_id)
        assert (str(totals[2]), str(totals[3]), totals[4], str(totals[5])) == (
            paid.get_json()["total_amount"],
            "250.00",
            2,
            "250.00",
        )
        assert bill_totals(libpq_url(database_url, target), bill_id) == totals
        # A restore never overwrites: the same name again is refused, and nothing changes.
        again = run(RESTORE, str(dump), target, DATABASE_URL=database_url)
        assert again.returncode == 1 and "exists already" in again.stderr
    finally:
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_dumps_older_than_the_kept_days_are_removed(tmp_path):
    """The pruning, with stand-ins for pg_dump and pg_restore (no database needed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in --file=*) echo dump > "${a#--file=}";; esac; done\n'
    )
    (bin_dir / "pg_restore").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    backups = tmp_path / "backups"
    backups.mkdir()
    now = time.time()
    ages = {
        "hms-old.dump": 5.0,
        "hms-edge.dump": 3.1,
        "hms-recent.dump": 2.9,
        "hms-crashed.dump.partial": 4.0,
    }
    for name, days in ages.items():
        (backups / name).write_text("x")
        os.utime(backups / name, (now - days * 86400, now - days * 86400))
    (backups / "notes.txt").write_text("not a dump")
    os.utime(backups / "notes.txt", (now - 30 * 86400, now - 30 * 86400))

    done = run(
        BACKUP,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        DATABASE_URL="postgresql+psycopg://hms@127.0.0.1/hms",
        HMS_BACKUP_DIR=str(backups),
        HMS_BACKUP_KEEP_DAYS="3",
    )
    assert done.returncode == 0, done.stderr
    new = Path(done.stdout.strip())
    assert sorted(path.name for path in backups.iterdir()) == sorted(
        ["hms-recent.dump", "notes.txt", new.name]
    )
    assert new.read_text() == "dump\n"


@pytest.mark.parametrize("keep", ["0", "two", "-1"])
def test_a_bad_keep_days_is_refused_before_anything_is_removed(tmp_path, keep):
    (tmp_path / "hms-old.dump").write_text("x")
    os.utime(tmp_path / "hms-old.dump", (0, 0))
    done = run(
        BACKUP, DATABASE_URL="postgresql://x/y", HMS_BACKUP_DIR=str(tmp_path), HMS_BACKUP_KEEP_DAYS=keep
    )
    assert done.returncode == 2 and "HMS_BACKUP_KEEP_DAYS" in done.stderr
    assert (tmp_path / "hms-old.dump").exists()
