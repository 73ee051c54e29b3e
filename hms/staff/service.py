"""Staff accounts and the doctor directory.

A doctor is a staff account with role `doctor`; its id is the doctor_id everywhere.
Only doctors carry fees (0.00 unless given), a specialization and a room: sending them
for another role is 422, and changing a doctor to another role clears them.

Doctor profiles are cached (DOCTOR_CACHE_SECONDS): one key per doctor and the first page
of the unfiltered list (one per page size at most), all tagged with the "doctors"
generation; filtered lists and later pages are read from the database (a key per
filter value or page was unbounded). Every staff write, and every change to a
department or specialization (their names are part of a profile), bumps the generation
after its commit, so the next read sees the change. A reader that loaded the old row
just before a commit stores it under the old tag, which is never read again: no stale
entry can outlive the write.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, load_only

from hms.auth.models import User
from hms.auth.service import Identity, forget_identity, hash_password
from hms.core.cache import bump_generation, cached, cached_in_generation, generation
from hms.core.idempotency import StoredResponse, run_once
from hms.core.pagination import paginate
from hms.core.roles import DOCTOR, may, own_records_only
from hms.core.settings import setting
from hms.core.uow import UnitOfWork, unit_of_work
from hms.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hms.extensions import db
from hms.queue import touch_queues_of_doctor
from hms.reference.models import Department, Specialization

DOCTORS_CACHE_NAMESPACE = "doctors"
ZERO = Decimal("0.00")
# Fields only a doctor's account may carry.
DOCTOR_ONLY_FIELDS = ("specialization_id", "consultation_fee", "hospital_fee", "room")
# Fields an admin may change with PATCH (the password is handled on its own).
_UPDATABLE = (
    "name",
    "role",
    "department_id",
    "specialization_id",
    "consultation_fee",
    "hospital_fee",
    "is_available",
    "active",
)


# --- staff accounts (admin) ----------------------------------------------------------


def create_staff(data: dict[str, Any]) -> User:
    """Create an account; 422 for unknown references, 409 for a taken username."""
    return _create_staff(data, hash_password(data["password"]))  # slow: before the transaction


def create_staff_once(
    data: dict[str, Any], identity: Identity, idempotency_key: str | None
) -> StoredResponse:
    """Create an account at most once per idempotency key of the caller (the admin's
    console: a double submit of one rendered form makes one account, and answers its
    {id, username, name, role} again). The password is hashed before the key's
    transaction begins (a slow hash must not hold it open) and left out of the key's
    fingerprint, which is stored: a replay is recognised by the other fields."""
    password_hash = hash_password(data["password"])
    return run_once(
        "staff.create",
        None,
        {name: value for name, value in data.items() if name != "password"},
        user_id=identity.id,
        key=idempotency_key,
        work=lambda _uow: _created(_create_staff(data, password_hash)),
    )


def _created(user: User) -> dict:
    return {"id": user.id, "username": user.username, "name": user.name, "role": user.role}


def _create_staff(data: dict[str, Any], password_hash: str) -> User:
    role = data["role"]
    doctor_fields = _doctor_fields(role, dict.fromkeys(DOCTOR_ONLY_FIELDS), data)
    username = data["username"]
    taken = f"The username {username!r} is taken."
    with unit_of_work(conflict=taken) as uow:
        _check_references(data.get("department_id"), doctor_fields["specialization_id"])
        if db.session.scalar(select(User.id).where(User.username == username)) is not None:
            raise Conflict(taken)
        user = User(
            username=username,
            password_hash=password_hash,
            name=data["name"],
            role=role,
            department_id=data.get("department_id"),
            is_available=data.get("is_available", True),
            **doctor_fields,
        )
        db.session.add(user)
        db.session.flush()  # the id, for the after-commit step
        _account_changed(uow, user.id)
    return user


def list_staff(*, role: str | None = None, q: str | None = None, page: int, limit: int) -> dict:
    stmt = select(User)
    if role:
        stmt = stmt.where(User.role == role)
    if q:
        stmt = stmt.where(
            or_(User.name.icontains(q, autoescape=True), User.username.icontains(q.lower(), autoescape=True))
        )
    return paginate(stmt.order_by(User.name, User.id), page, limit).as_dict()


def get_staff(staff_id: int) -> User:
    user = db.session.get(User, staff_id)
    if user is None:
        raise NotFound("No staff member with this id.")
    return user


def update_staff(staff_id: int, changes: dict[str, Any], actor: Identity) -> User:
    """Change an account. An admin may change anything but cannot disable or demote
    themselves; a doctor may set only their own `is_available`.

    Disabling the account or changing its password bumps its token epoch in the same
    commit, so every token and session issued before stops working at once.
    """
    if not may(actor.role, "staff.manage") and not _sets_availability(actor, staff_id, changes):
        raise Forbidden("A doctor may change only their own is_available.")
    if actor.id == staff_id and (
        changes.get("active") is False or changes.get("role", actor.role) != actor.role
    ):
        raise Conflict("You cannot disable your own account or change your own role.")
    # Hash before taking any lock: a slow hash must not hold the row.
    password_hash = hash_password(changes["password"]) if "password" in changes else None
    with unit_of_work(conflict="This change conflicts with another account.") as uow:
        # Registered first: the queues' announcement after the commit reads the new profile.
        _account_changed(uow, staff_id)
        # A doctor's name and room are in the snapshots of their queues: replace them
        # (screens update). Before locking the account: a booking locks its queue first and
        # the account (its foreign key) after, so this order cannot deadlock with it.
        if "name" in changes or "room" in changes:
            touch_queues_of_doctor(staff_id)
        user = _lock_accounts(staff_id, actor)
        role = changes.get("role", user.role)
        current = {name: getattr(user, name) for name in DOCTOR_ONLY_FIELDS}
        doctor_fields = _doctor_fields(role, current, changes)
        _check_references(
            changes.get("department_id"),
            doctor_fields["specialization_id"] if "specialization_id" in changes else None,
        )
        for name in _UPDATABLE:
            if name in changes:
                setattr(user, name, changes[name])
        for name, value in doctor_fields.items():
            setattr(user, name, value)
        if password_hash is not None:
            user.password_hash = password_hash
        if password_hash is not None or changes.get("active") is False:
            user.token_epoch = user.token_epoch + 1
    return user


def _lock_accounts(staff_id: int, actor: Identity) -> User:
    """Lock the account and the caller's own in one statement, in id order (no deadlock):
    two admins disabling each other at once cannot leave the clinic without an admin.
    Returns the account; 404 if it is gone, 409 if the caller's own account changed."""
    rows = {
        row.id: row
        for row in db.session.scalars(
            select(User).where(User.id.in_({staff_id, actor.id})).order_by(User.id).with_for_update()
        )
    }
    user = rows.get(staff_id)
    if user is None:
        raise NotFound("No staff member with this id.")
    caller = rows.get(actor.id)
    if caller is None or not caller.active or caller.role != actor.role:
        raise Conflict("Your own account changed while this request ran; sign in again.")
    return user


def _sets_availability(actor: Identity, staff_id: int, changes: dict[str, Any]) -> bool:
    """A change of is_available alone, by a role that may make it (a doctor: their own)."""
    action = "staff.set_availability"
    return (
        may(actor.role, action)
        and set(changes) == {"is_available"}
        and (staff_id == actor.id or not own_records_only(actor.role, action))
    )


def _doctor_fields(role: str, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The doctor-only fields of an account of `role` after `changes`."""
    if role == DOCTOR:
        fields = {name: changes.get(name, current[name]) for name in DOCTOR_ONLY_FIELDS}
        for fee in ("consultation_fee", "hospital_fee"):
            if fields[fee] is None:
                fields[fee] = ZERO
        return fields
    for name in DOCTOR_ONLY_FIELDS:
        if changes.get(name) is not None:
            raise ValidationFailed.field(
                name, f"Only doctors have a {name.replace('_', ' ').removesuffix(' id')}."
            )
    return dict.fromkeys(DOCTOR_ONLY_FIELDS)


def _check_references(department_id: int | None, specialization_id: int | None) -> None:
    if department_id is not None and db.session.get(Department, department_id) is None:
        raise ValidationFailed.field("department_id", "Unknown department.")
    if specialization_id is not None and db.session.get(Specialization, specialization_id) is None:
        raise ValidationFailed.field("specialization_id", "Unknown specialization.")


def _account_changed(uow: UnitOfWork, user_id: int) -> None:
    """After the commit: drop the cached identity and every cached doctor profile and page."""
    uow.after_commit(lambda _uow: forget_identity(user_id), key=f"forget-identity:{user_id}")
    uow.after_commit(lambda _uow: forget_doctors(), key="forget-doctors")


# --- the doctor directory (every role but display) ----------------------------------


def forget_doctors() -> None:
    """Invalidate every cached doctor profile and list page (call after commit)."""
    bump_generation(DOCTORS_CACHE_NAMESPACE)


def list_doctors(
    *,
    department_id: int | None = None,
    specialization_id: int | None = None,
    available: bool | None = None,
    page: int,
    limit: int,
) -> dict:
    """Active doctors by name: two statements per page (count, then the page with its
    department and specialization joined in); only the unfiltered first page is cached."""

    def load() -> dict:
        stmt = _doctor_select().where(User.active)
        if department_id is not None:
            stmt = stmt.where(User.department_id == department_id)
        if specialization_id is not None:
            stmt = stmt.where(User.specialization_id == specialization_id)
        if available is not None:
            stmt = stmt.where(User.is_available.is_(available))
        result = paginate(stmt.order_by(User.name, User.id), page, limit)
        result.data = [_profile(user) for user in result.data]
        return result.as_dict()

    if page != 1 or department_id is not None or specialization_id is not None or available is not None:
        return load()
    return cached(
        f"doctors:{generation(DOCTORS_CACHE_NAMESPACE)}:list:{limit}",
        _cache_seconds(),
        load,
        name="doctor_list",
    )


def get_doctor(doctor_id: int) -> dict:
    profile = doctor_profile(doctor_id)
    if profile is None or not profile["active"]:
        raise NotFound("No doctor with this id.")
    return profile


def get_doctor_fees(doctor_id: int) -> dict | None:
    """For booking: {id, name, consultation_fee, hospital_fee (strings), is_available,
    active}, or None if `doctor_id` is no doctor. Read through the profile cache, so
    booking many patients does not query the doctor's row each time."""
    profile = doctor_profile(doctor_id)
    if profile is None:
        return None
    return {
        name: profile[name]
        for name in ("id", "name", "consultation_fee", "hospital_fee", "is_available", "active")
    }


def _profile_key(doctor_id: int) -> str:
    return f"doctor-profile:{doctor_id}"


def doctor_profile(doctor_id: int) -> dict | None:
    """The cached profile of a doctor (active or not), or None if there is no such doctor.

    One cache round trip: the doctors' generation and the profile stored with the
    generation it was read under. A request that needs it twice passes it along."""

    def load() -> dict | None:
        user = db.session.scalar(_doctor_select().where(User.id == doctor_id))
        return _profile(user) if user is not None else None

    return cached_in_generation(
        DOCTORS_CACHE_NAMESPACE, _profile_key(doctor_id), _cache_seconds(), load, name="doctor_profile"
    )


def _doctor_select():
    """Doctors with their department and specialization joined in; only the columns a
    profile shows (no password hash, no timestamps)."""
    return (
        select(User)
        .options(
            load_only(
                User.id,
                User.name,
                User.department_id,
                User.specialization_id,
                User.consultation_fee,
                User.hospital_fee,
                User.room,
                User.is_available,
                User.active,
            ),
            joinedload(User.department).load_only(Department.id, Department.name),
            joinedload(User.specialization).load_only(Specialization.id, Specialization.name),
        )
        .where(User.role == DOCTOR)
    )


def _profile(user: User) -> dict:
    """A doctor as plain JSON-able data (what the cache holds)."""
    return {
        "id": user.id,
        "name": user.name,
        "department": _named(user.department),
        "specialization": _named(user.specialization),
        "consultation_fee": _money(user.consultation_fee),
        "hospital_fee": _money(user.hospital_fee),
        "room": user.room,
        "is_available": user.is_available,
        "active": user.active,
    }


def _named(row: Department | Specialization | None) -> dict | None:
    return {"id": row.id, "name": row.name} if row is not None else None


def _money(amount: Decimal | None) -> str:
    return str((amount if amount is not None else ZERO).quantize(Decimal("0.01")))


def _cache_seconds() -> int:
    return setting("DOCTOR_CACHE_SECONDS")
