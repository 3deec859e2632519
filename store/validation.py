"""One vocabulary for checking values that come from people: allowed choices, text limits, control characters.

Validators (collection form, accounts, the CLI) and form controls (``maxlength``) read the same limits from here,
so a limit changes in one place; messages name the field as a person would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Longest accepted text per field, in characters: the column lengths of ``store.models`` or, for Text columns,
# a bound that keeps a page readable.
TEXT_LIMITS: dict[str, int] = {
    "collection_name": 255,
    "movie_title": 255,
    "description": 20000,
    "contributors": 5000,
    "dataset_url": 1000,
    "doi": 255,
    "title": 40,
    "first_name": 100,
    "last_name": 100,
    "affiliation": 255,
    "upload_filename": 255,
}


def check_choice(value: Any, allowed: Iterable[str], name: str) -> str:
    """``value`` when it is one of ``allowed``.

    Raises
    ------
    ValueError
        "The <name> must be one of a, b, c." otherwise.
    """
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"The {name} must be one of {', '.join(allowed)}.")
    return value


def has_control_characters(text: str, allow_newlines: bool = False) -> bool:
    """True for NUL and other C0/C1 control characters (PostgreSQL refuses NUL in text, and no title holds any);
    tabs pass, and so do newlines where ``allow_newlines``."""
    allowed = "\n\r\t" if allow_newlines else "\t"
    return any((ord(ch) < 32 and ch not in allowed) or 127 <= ord(ch) < 160 for ch in text)
