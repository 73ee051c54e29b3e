"""Text folded for search: accents and case ignored ("José" and "jose" fold alike).

`fold()` decomposes (NFKD), drops the combining marks, case-folds ("ß" -> "ss") and
collapses runs of whitespace to one space. A folded column is stored next to the text it
folds (patients' names, medicines' names) and searched with the folded query, so the
database needs no accent-stripping function of its own (SQLite has none; PostgreSQL's
unaccent is an extension and not immutable, so it cannot be indexed).
"""

from __future__ import annotations

import unicodedata

FOLDED_MAX = 240  # characters stored: NFKD can lengthen a 120-character name


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())[:FOLDED_MAX]
