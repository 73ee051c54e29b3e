"""Pagination: a page of rows plus the total, the list envelope of API.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from hms.extensions import db


@dataclass
class Page:
    data: list[Any]
    page: int
    limit: int
    total: int

    def as_dict(self) -> dict:
        return {"data": self.data, "meta": {"page": self.page, "limit": self.limit, "total": self.total}}


def paginate(stmt: Select, page: int, limit: int) -> Page:
    """Run `stmt` for one page and count its rows: two statements, whatever the page size.

    The count runs over the statement without its ORDER BY (and without eager loads),
    so the database can answer it from an index.
    """
    count_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = db.session.scalar(count_stmt) or 0
    rows: list[Any] = []
    if total and (page - 1) * limit < total:
        rows = list(db.session.scalars(stmt.limit(limit).offset((page - 1) * limit)))
    return Page(rows, page, limit, total)
