"""Which roles exist and what each may do: API.md's role matrix, as data.

Routes name an action (`@allow("bills.pay")`, hms.core.access) and services ask the same
table (`may`, `own_records_only`, `sees_masked_queue`) instead of comparing role names.
A role gets nothing it is not listed for here: adding a role is one edit to this module
(its name in ROLES, then the rows it may do) plus its tests.

This module is pure data, below every domain and free of Flask, so services, the queue
and realtime may all ask it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

ADMIN = "admin"
RECEPTION = "reception"
DOCTOR = "doctor"
CASHIER = "cashier"
DISPLAY = "display"  # a waiting-room screen

ROLES: tuple[str, ...] = (ADMIN, RECEPTION, DOCTOR, CASHIER, DISPLAY)


def _roles(*names: str) -> frozenset[str]:
    return frozenset(names)


# API.md's matrix, row by row (the first row is two actions). Then what the matrix has no
# row for: reading bills (every staff role, as the other reads), a doctor's own
# is_available (API.md's Staff section), and what any account may do (who am I, the home
# page).
MATRIX: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "staff.manage": _roles(ADMIN),  # staff accounts
        "reference.write": _roles(ADMIN),  # reference-data writes
        "reference.read": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER),  # reference data, doctors
        "patients.write": _roles(ADMIN, RECEPTION),  # create / update patients
        "patients.read": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER),  # read / search patients
        "appointments.book": _roles(ADMIN, RECEPTION),
        "appointments.change_status": _roles(ADMIN, RECEPTION, DOCTOR),  # and "next"
        "prescriptions.write": _roles(DOCTOR),
        "appointments.read": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER),  # and events, prescriptions
        "appointments.ticket": _roles(ADMIN, RECEPTION),  # the patient's ticket link
        "bills.write": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER),  # create bills, add items
        "bills.pay": _roles(ADMIN, RECEPTION, CASHIER),  # take payments
        "bills.refund": _roles(ADMIN),  # refunds, void a bill
        "queue.read": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER, DISPLAY),  # snapshot, stream, screen
        "bills.read": _roles(ADMIN, RECEPTION, DOCTOR, CASHIER),
        "staff.set_availability": _roles(DOCTOR),  # their own is_available
        "signed_in": _roles(*ROLES),  # any account: /api/auth/me, the home page
        "screens.doctor": _roles(ADMIN, DOCTOR),  # the doctor's screen (admin: any doctor's)
        "reports.read": _roles(ADMIN),  # the day-end reports and the reports page
        "reports.cash_up": _roles(ADMIN, CASHIER),  # a cashier: their own cash-up only
    }
)

# The matrix's object-level rules: these roles may do the action on their own records
# only (a doctor: their own appointments, queue, bills, account; a cashier: their own
# cash-up).
OWN_RECORDS_ONLY: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "appointments.change_status": _roles(DOCTOR),
        "prescriptions.write": _roles(DOCTOR),
        "bills.write": _roles(DOCTOR),
        "staff.set_availability": _roles(DOCTOR),
        "reports.cash_up": _roles(CASHIER),
    }
)

# "masked only": these roles see a queue's patients as initials, never id, MRN or name.
MASKED_QUEUE: frozenset[str] = _roles(DISPLAY)


def roles_for(action: str) -> frozenset[str]:
    """The roles that may do `action`; an unknown action is a KeyError, never "nobody"."""
    try:
        return MATRIX[action]
    except KeyError:
        raise KeyError(f"unknown action {action!r}: add it to hms.core.roles.MATRIX") from None


def may(role: str, action: str) -> bool:
    return role in roles_for(action)


def own_records_only(role: str, action: str) -> bool:
    """True when `role` may do `action` only on its own records."""
    roles_for(action)  # a misspelt action must fail, not read as "unrestricted"
    return role in OWN_RECORDS_ONLY.get(action, frozenset())


def sees_masked_queue(role: str) -> bool:
    return role in MASKED_QUEUE


def check_matrix() -> None:
    """Every role named in the tables exists, and an object-level rule narrows a grant."""
    known = set(ROLES)
    for action, roles in MATRIX.items():
        if not roles <= known:
            raise ValueError(f"{action}: unknown roles {sorted(roles - known)}")
    for action, roles in OWN_RECORDS_ONLY.items():
        if not roles <= roles_for(action):
            raise ValueError(f"{action}: own-records rule for roles not granted it")
    if not MASKED_QUEUE.issubset(roles_for("queue.read")):
        raise ValueError("a masked-queue role must be granted queue.read")


check_matrix()
