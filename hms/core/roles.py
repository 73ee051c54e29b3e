"""Roles: which exist and what each may do (placeholder until the roles matrix lands)."""

from __future__ import annotations

DOCTOR = "doctor"
DISPLAY = "display"


def own_records_only(role: str, action: str) -> bool:
    """Whether `role` may do `action` on its own records only (a doctor: own queue)."""
    return role == DOCTOR


def sees_masked_queue(role: str) -> bool:
    """Whether `role` sees the queue with patients as initials only."""
    return role == DISPLAY
