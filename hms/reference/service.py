"""Reference data: one implementation for the six lookup resources.

`RESOURCES` is the registry: each entry names the model, the fields a client may set,
the column searched by ?q= and used for ordering, and the columns that make a row a
duplicate. Schemas and routes are generated from the same entries. Medicines are
searched on a folded column instead (brand and generic name, accents and case ignored:
"paracetamol" finds Crocin and Dolo 650), kept in step by the model.

Reads are cached (REFERENCE_CACHE_SECONDS) as plain dicts, per item and for the first
page of each list without ?q= (one key per page size at most), under keys tagged with
the resource's generation. Searches and later pages are read from the database (the
search column is indexed): one cached key per distinct term or page filled Redis. Every write bumps the generation after
its commit, so the next read shows it; a reader that loaded the old row just before the
commit stores it under the old tag, which is never read again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from hms.core.cache import bump_generation, cached, generation
from hms.core.pagination import paginate
from hms.core.settings import setting
from hms.core.text import fold
from hms.core.uow import UnitOfWork, unit_of_work
from hms.errors import Conflict, NotFound
from hms.extensions import db
from hms.reference.models import Category, Department, Medicine, MedicineInstruction, Specialization, TestType

# Reference sits above staff: a doctor's profile shows its department's and
# specialization's names, so renaming either forgets the cached doctor profiles.
from hms.staff.service import forget_doctors


@dataclass(frozen=True)
class Resource:
    """One reference resource, e.g. /api/departments."""

    name: str  # URL segment and cache namespace: "test-types"
    model: type
    label: str  # in messages and API docs: "test type"
    fields: tuple[str, ...]  # the columns a client may set
    search_column: str  # ?q= searches it (case-insensitive), lists are ordered by it
    unique_columns: tuple[str, ...]  # rows equal on these (case-insensitive) are duplicates
    # What forgets other domains' cached data embedding this resource (a doctor's
    # department name): called after every committed write.
    also_forget: tuple[Callable[[], None], ...] = ()
    # A folded column (hms.core.text) that ?q= searches instead of search_column, with
    # the folded query: accents and case ignored, possibly over several names.
    folded_search: str | None = None

    @property
    def schema_prefix(self) -> str:
        return self.label.title().replace(" ", "")

    @property
    def cache_namespace(self) -> str:
        return f"ref:{self.name}"


RESOURCES: tuple[Resource, ...] = (
    Resource("departments", Department, "department", ("name",), "name", ("name",), (forget_doctors,)),
    Resource(
        "specializations",
        Specialization,
        "specialization",
        ("name",),
        "name",
        ("name",),
        (forget_doctors,),
    ),
    Resource("test-types", TestType, "test type", ("name", "price"), "name", ("name",)),
    Resource(
        "medicines",
        Medicine,
        "medicine",
        ("name", "generic_name", "form", "strength", "unit_price"),
        "name",
        ("name", "form", "strength"),
        folded_search="search_folded",
    ),
    Resource(
        "medicine-instructions", MedicineInstruction, "medicine instruction", ("text",), "text", ("text",)
    ),
    Resource("categories", Category, "category", ("name",), "name", ("name",)),
)


def list_items(resource: Resource, *, q: str | None = None, page: int, limit: int) -> dict:
    """One page ordered by the search column (two statements on a cache miss). Only the
    first page without a search is cached: a key per term or page is unbounded."""

    def load() -> dict:
        model = resource.model
        column = getattr(model, resource.search_column)
        stmt = select(model)
        if q and resource.folded_search:
            stmt = stmt.where(getattr(model, resource.folded_search).contains(fold(q), autoescape=True))
        elif q:
            stmt = stmt.where(column.icontains(q, autoescape=True))
        result = paginate(stmt.order_by(column, model.id), page, limit)
        result.data = [_as_dict(resource, row) for row in result.data]
        return result.as_dict()

    if q or page != 1:
        return load()
    key = f"{resource.cache_namespace}:{generation(resource.cache_namespace)}:list:{limit}"
    return cached(key, _cache_seconds(), load, name="reference")


def get_item(resource: Resource, item_id: int) -> dict:
    key = f"{resource.cache_namespace}:{generation(resource.cache_namespace)}:id:{item_id}"

    def load() -> dict | None:
        row = db.session.get(resource.model, item_id)
        return _as_dict(resource, row) if row is not None else None

    item = cached(key, _cache_seconds(), load, name="reference")
    if item is None:
        raise NotFound(f"No {resource.label} with this id.")
    return item


def create_item(resource: Resource, data: dict[str, Any]) -> dict:
    """Add a row; 409 for a duplicate (the unique constraints catch one racing the check)."""
    with unit_of_work(conflict=_duplicate_message(resource)) as uow:
        _refuse_duplicate(resource, {column: data.get(column) for column in resource.unique_columns})
        row = resource.model(**data)
        db.session.add(row)
        return _saved(uow, resource, row)


def update_item(resource: Resource, item_id: int, changes: dict[str, Any]) -> dict:
    with unit_of_work(conflict=_duplicate_message(resource)) as uow:
        row = db.session.get(resource.model, item_id, with_for_update=True)
        if row is None:
            raise NotFound(f"No {resource.label} with this id.")
        if any(column in changes for column in resource.unique_columns):
            key = {column: changes.get(column, getattr(row, column)) for column in resource.unique_columns}
            _refuse_duplicate(resource, key, exclude_id=row.id)
        for field, value in changes.items():
            setattr(row, field, value)
        return _saved(uow, resource, row)


def delete_item(resource: Resource, item_id: int) -> None:
    """Delete a row; 409 while any foreign key still points at it: the database's
    foreign keys decide at the commit, race-free."""
    with unit_of_work(conflict=f"This {resource.label} is still in use and cannot be deleted.") as uow:
        row = db.session.get(resource.model, item_id, with_for_update=True)
        if row is None:
            raise NotFound(f"No {resource.label} with this id.")
        db.session.delete(row)
        _changed(uow, resource)


def _refuse_duplicate(resource: Resource, key: dict[str, Any], exclude_id: int | None = None) -> None:
    """409 if another row has the same unique columns, ignoring case (NULL equals NULL).

    The unique constraints catch an exact duplicate that races past this check.
    """
    model = resource.model
    stmt = select(model.id)
    for column_name, value in key.items():
        column = getattr(model, column_name)
        stmt = stmt.where(column.is_(None) if value is None else func.lower(column) == value.lower())
    if exclude_id is not None:
        stmt = stmt.where(model.id != exclude_id)
    if db.session.scalar(stmt.limit(1)) is not None:
        raise Conflict(_duplicate_message(resource))


def _duplicate_message(resource: Resource) -> str:
    return f"A {resource.label} with this {', '.join(resource.unique_columns)} already exists."


def _saved(uow: UnitOfWork, resource: Resource, row: Any) -> dict:
    """A created or changed row as the API shows it, its caches forgotten after the commit."""
    db.session.flush()  # assigns the id and created_at
    _changed(uow, resource)
    return _as_dict(resource, row)


def _changed(uow: UnitOfWork, resource: Resource) -> None:
    """After the commit: forget every cached item and page of this resource, and the
    other domains' data embedding it."""
    uow.after_commit(lambda _uow: _forget(resource), key=f"forget:{resource.cache_namespace}")


def _forget(resource: Resource) -> None:
    bump_generation(resource.cache_namespace)
    for forget in resource.also_forget:
        forget()


def _as_dict(resource: Resource, row: Any) -> dict:
    """A row as plain JSON-able data (what the cache holds)."""
    item = {"id": row.id}
    for field in resource.fields:
        item[field] = _jsonable(getattr(row, field))
    item["created_at"] = _jsonable(row.created_at)
    return item


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value.quantize(Decimal("0.01")))
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _cache_seconds() -> int:
    return setting("REFERENCE_CACHE_SECONDS")
