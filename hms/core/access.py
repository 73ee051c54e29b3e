"""How a view declares who may call it, and how it learns who is calling.

`@allow("bills.pay")` names one or more actions of the role matrix (hms.core.roles); an
action the matrix does not know fails at import. `@page(...)` is the same for
server-rendered pages (no session: a redirect to /login), `@public` needs no account.
hms.auth.access reads these marks: it authenticates the caller before the view runs,
checks the role against the matrix and stores the identity that `current_identity()`
returns. The roles are looked up at request time, so the matrix is the only place that
says who may call what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flask import g

from hms.core import roles
from hms.core.roles import roles_for

PUBLIC = "public"
_POLICY = "_hms_policy"
_PAGE = "_hms_page"


class Caller(Protocol):
    """What the access check needs of an identity (hms.auth.service.Identity is one)."""

    id: int
    role: str


def allow(*actions: str) -> Callable:
    """Let the roles that may do any of these actions call the view."""
    if not actions:
        raise ValueError("allow() needs at least one action")
    for action in actions:
        roles_for(action)  # an unknown action fails here, at import

    def mark(view: Callable) -> Callable:
        setattr(view, _POLICY, actions)
        return view

    return mark


def public(view: Callable) -> Callable:
    setattr(view, _POLICY, PUBLIC)
    return view


def page(*actions: str) -> Callable:
    """Like allow(), for server-rendered pages: no session redirects to /login."""

    allowed = allow(*actions)

    def mark(view: Callable) -> Callable:
        allowed(view)
        setattr(view, _PAGE, True)
        return view

    return mark


def declared_policy(view: Callable) -> tuple[str, ...] | str | None:
    """PUBLIC, the actions a view was allowed for, or None when it declares nothing."""
    return getattr(view, _POLICY, None)


def is_page(view: Callable) -> bool:
    return getattr(view, _PAGE, False)


def policy_admits(policy: tuple[str, ...], role: str) -> bool:
    """Whether `role` may call a view marked with these actions (allow() checked them)."""
    matrix = roles.MATRIX
    for action in policy:  # noqa: SIM110 - runs on every request; any() and a generator cost 2x
        if role in matrix[action]:
            return True
    return False


def roles_admitted(policy: tuple[str, ...]) -> frozenset[str]:
    """Every role that may call a view marked with these actions."""
    return frozenset().union(*(roles_for(action) for action in policy))


def set_current_identity(identity: Caller) -> None:
    g.identity = identity


def current_identity() -> Any:
    """The authenticated caller of this request (an hms.auth.service.Identity)."""
    return g.identity
