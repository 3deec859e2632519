"""Running a read query for the current user.

Every page and callback asks through here so the visibility rules of ``store.access`` always get the user of the
request (``web.auth.viewer()``), never a user passed around from the browser.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from store.db import session_scope
from web.auth import viewer

P = ParamSpec("P")
T = TypeVar("T")


def read(fn: Callable[Concatenate[Session, Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(session, current_user, *args, **kwargs)`` in a fresh session (queries return plain data)."""
    with session_scope() as session:
        return fn(session, viewer(), *args, **kwargs)


def arg(query: Mapping[str, Any], name: str, default: str = "") -> str:
    """One query-string value as text (Dash passes repeated parameters as a list)."""
    value = query.get(name, default)
    if isinstance(value, list | tuple):
        value = value[0] if value else default
    return default if value is None else str(value)


def int_arg(query: Mapping[str, Any], name: str, default: int = 1) -> int:
    try:
        return max(1, int(arg(query, name, str(default))))
    except ValueError:
        return default


def text_value(value: Any) -> str:
    """A form value as text: a forged callback body may send numbers, lists or objects where text belongs."""
    return value if isinstance(value, str) else ""
