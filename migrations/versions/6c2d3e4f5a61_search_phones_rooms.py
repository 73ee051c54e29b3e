"""E.164 phones, accent-free name search, medicine search on the generic name, doctors' rooms

Schema and data together:
- patients: `name_folded` (the name without accents, case-folded: searched instead of
  lower(name); trigram GIN index on PostgreSQL replaces ix_patients_name_trgm) and
  `phone_national` (the national number without leading zeros, for a prefix search
  without the country code; btree text_pattern_ops). Stored phones become E.164 with
  CLINIC_COUNTRY_CODE (default 91) for those typed without "+"; a phone that is no
  possible number is left as its digits.
- medicines: `search_folded` (folded name and generic name; trigram GIN on PostgreSQL).
- users: `room` (nullable, up to 40 characters).

The folding and the phone rules are copied here (not imported from hms) so that this
revision keeps doing what it did when the application's code moves on.

Downgrade drops the new columns and indexes and restores ix_patients_name_trgm; phones
stay in E.164, which the older format (digits with an optional leading "+") accepts.

Revision ID: 6c2d3e4f5a61
Revises: 5b1c2e7d9a40
Create Date: 2026-12-03 15:45:00.000000

"""
import os
import re
import unicodedata

import phonenumbers
import sqlalchemy as sa
from alembic import op
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult


# revision identifiers, used by Alembic.
revision = '6c2d3e4f5a61'
down_revision = '5b1c2e7d9a40'
branch_labels = None
depends_on = None

FOLDED_MAX = 240
CHUNK = 1000


def _fold(text):
    decomposed = unicodedata.normalize("NFKD", text or "")
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())[:FOLDED_MAX]


def _country_code():
    try:
        from flask import current_app

        code = current_app.config.get("CLINIC_COUNTRY_CODE")
    except RuntimeError:  # no app: plain alembic
        code = None
    return str(code or os.environ.get("CLINIC_COUNTRY_CODE") or "91").strip().lstrip("+")


def _national_key(digits):
    return re.sub(r"\D", "", digits).lstrip("0")


def _phone(stored, region):
    """(E.164 or the digits, national key) of an old stored phone."""
    try:
        number = phonenumbers.parse(stored, region)
    except NumberParseException:
        number = None
    if number is not None and (
        phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE
    ):
        return (
            phonenumbers.format_number(number, PhoneNumberFormat.E164),
            _national_key(phonenumbers.national_significant_number(number)),
        )
    digits = re.sub(r"\D", "", stored)
    return digits, _national_key(digits)


def _chunks(bind, table, *columns):
    """The rows of `table` (id and `columns`) in chunks, by id (keyset: bounded memory)."""
    last = 0
    while True:
        rows = bind.execute(
            sa.select(table.c.id, *columns).where(table.c.id > last).order_by(table.c.id).limit(CHUNK)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def upgrade():
    bind = op.get_bind()
    region = phonenumbers.region_code_for_country_code(int(_country_code()))
    if region == "ZZ":
        raise RuntimeError(f"CLINIC_COUNTRY_CODE {_country_code()!r} is no country calling code")

    # The old expression index first: SQLite's table rebuild below would drop it anyway.
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_name_trgm', postgresql_using='gin', postgresql_ops={'name_lower': 'gin_trgm_ops'})
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_folded', sa.String(length=FOLDED_MAX), nullable=True))
        batch_op.add_column(sa.Column('phone_national', sa.String(length=20), nullable=True))
    with op.batch_alter_table('medicines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_folded', sa.String(length=481), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('room', sa.String(length=40), nullable=True))

    patients = sa.table(
        'patients',
        sa.column('id', sa.Integer),
        sa.column('name', sa.String),
        sa.column('name_folded', sa.String),
        sa.column('phone', sa.String),
        sa.column('phone_national', sa.String),
    )
    update_patient = (
        patients.update()
        .where(patients.c.id == sa.bindparam('row_id'))
        .values(
            name_folded=sa.bindparam('folded'),
            phone=sa.bindparam('new_phone'),
            phone_national=sa.bindparam('national'),
        )
    )
    for chunk in _chunks(bind, patients, patients.c.name, patients.c.phone):
        params = []
        for row in chunk:
            phone, national = _phone(row.phone, region) if row.phone is not None else (None, None)
            params.append({'row_id': row.id, 'folded': _fold(row.name), 'new_phone': phone, 'national': national})
        bind.execute(update_patient, params)

    medicines = sa.table(
        'medicines',
        sa.column('id', sa.Integer),
        sa.column('name', sa.String),
        sa.column('generic_name', sa.String),
        sa.column('search_folded', sa.String),
    )
    update_medicine = (
        medicines.update()
        .where(medicines.c.id == sa.bindparam('row_id'))
        .values(search_folded=sa.bindparam('folded'))
    )
    for chunk in _chunks(bind, medicines, medicines.c.name, medicines.c.generic_name):
        bind.execute(
            update_medicine,
            [{'row_id': row.id, 'folded': _fold(row.name) + "\n" + _fold(row.generic_name)} for row in chunk],
        )

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.alter_column('name_folded', existing_type=sa.String(length=FOLDED_MAX), nullable=False)
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_index('ix_patients_name_folded_trgm', ['name_folded'], unique=False, postgresql_using='gin', postgresql_ops={'name_folded': 'gin_trgm_ops'})
        batch_op.create_index('ix_patients_phone_national_prefix', ['phone_national'], unique=False, postgresql_ops={'phone_national': 'text_pattern_ops'})
    with op.batch_alter_table('medicines', schema=None) as batch_op:
        batch_op.alter_column('search_folded', existing_type=sa.String(length=481), nullable=False)
    with op.batch_alter_table('medicines', schema=None) as batch_op:
        batch_op.create_index('ix_medicines_search_trgm', ['search_folded'], unique=False, postgresql_using='gin', postgresql_ops={'search_folded': 'gin_trgm_ops'})


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('room')
    with op.batch_alter_table('medicines', schema=None) as batch_op:
        batch_op.drop_index('ix_medicines_search_trgm', postgresql_using='gin', postgresql_ops={'search_folded': 'gin_trgm_ops'})
    with op.batch_alter_table('medicines', schema=None) as batch_op:
        batch_op.drop_column('search_folded')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index('ix_patients_phone_national_prefix', postgresql_ops={'phone_national': 'text_pattern_ops'})
        batch_op.drop_index('ix_patients_name_folded_trgm', postgresql_using='gin', postgresql_ops={'name_folded': 'gin_trgm_ops'})
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_column('phone_national')
        batch_op.drop_column('name_folded')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_index('ix_patients_name_trgm', [sa.literal_column('lower(name)').label('name_lower')], unique=False, postgresql_using='gin', postgresql_ops={'name_lower': 'gin_trgm_ops'})
