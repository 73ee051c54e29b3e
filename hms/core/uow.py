"""The unit of work: the one way a service writes.

    with unit_of_work() as uow:
        ...statements on db.session...
        uow.after_commit(announce)

On leaving the block without an error: the before-commit hooks run (inside the
transaction, as its last statements: billing numbers the bills it opened), then COMMIT,
then the after-commit hooks (cache invalidation, publishing a queue change). Any error
rolls the whole transaction back (releasing its row locks at once) and no after-commit
hook runs: a rolled-back booking never announces a queue change.

A unique-key violation raised at the commit (or by a statement in the block) becomes
`Conflict(conflict)` when the unit of work is given that message; otherwise it
propagates, and the error handler maps it to 409.

A unit of work opened inside another joins it: the inner block neither commits nor
rolls back, and its hooks run with the outer one's. After-commit hooks never fail the
request (the change is committed): an error is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.exc import IntegrityError

from hms.core.metrics import transaction_ended
from hms.errors import Conflict
from hms.extensions import db

log = logging.getLogger(__name__)
Hook = Callable[["UnitOfWork"], None]
_current: ContextVar[UnitOfWork | None] = ContextVar("hms_unit_of_work", default=None)


class UnitOfWork:
    """The hooks and the per-transaction state of one unit of work."""

    __slots__ = ("_before", "_after", "_keys", "state")

    def __init__(self) -> None:
        self._before: list[Hook] = []
        self._after: list[Hook] = []
        self._keys: set[str] = set()
        # What hooks collect during the transaction (e.g. the bills to number), by name.
        self.state: dict[str, Any] = {}

    def before_commit(self, hook: Hook, *, key: str | None = None) -> None:
        """Run `hook(uow)` inside the transaction, just before COMMIT. With `key`, once
        per unit of work however often it is registered."""
        if self._first(key):
            self._before.append(hook)

    def after_commit(self, hook: Hook, *, key: str | None = None) -> None:
        """Run `hook(uow)` after a successful COMMIT (never after a rollback)."""
        if self._first(key):
            self._after.append(hook)

    def collect(self, name: str, item: Any) -> list:
        """Append `item` to the list `state[name]` (created on first use); return the list."""
        items = self.state.setdefault(name, [])
        items.append(item)
        return items

    def _first(self, key: str | None) -> bool:
        if key is None:
            return True
        if key in self._keys:
            return False
        self._keys.add(key)
        return True

    def _run_before(self) -> None:
        index = 0
        while index < len(self._before):  # a hook may register another
            self._before[index](self)
            index += 1

    def _run_after(self) -> None:
        for hook in self._after:
            try:
                hook(self)
            except Exception:  # noqa: BLE001 - committed: a lost push or stale cache must not fail it
                log.exception("after-commit step %s failed", getattr(hook, "__qualname__", hook))


def current_unit_of_work() -> UnitOfWork:
    """The unit of work the caller runs in; a write outside one is a bug."""
    uow = _current.get()
    if uow is None:
        raise RuntimeError("this write must run inside unit_of_work()")
    return uow


@contextmanager
def unit_of_work(conflict: str | None = None) -> Iterator[UnitOfWork]:
    """One transaction: commit on success (hooks around it), roll back on any error.

    `conflict`: the message of the 409 a unique-key violation becomes."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    uow = UnitOfWork()
    token = _current.set(uow)
    try:
        try:
            yield uow
            uow._run_before()
            db.session.commit()
        except BaseException as error:
            db.session.rollback()
            transaction_ended(committed=False)
            if conflict is not None and isinstance(error, IntegrityError):
                raise Conflict(conflict) from error
            raise
    finally:
        _current.reset(token)
    transaction_ended(committed=True)
    uow._run_after()
