"""Running a read query for the current user.

Every page and callback asks through here so the visibility rules of ``store.access`` always get the user of the
request (``web.auth.viewer()``), never a user passed around from the browser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from dash import callback_context
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


# --- values from the browser ----------------------------------------------------------------------------------
# Callback arguments are JSON that the browser chose: a forged request can put any type in any of them. These turn
# such a value into what a callback expects, or into "nothing", so that it answers with a message instead of an
# error.

MAX_ROW_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL refuses a larger number instead of finding nothing


def row_id(value: Any) -> int | None:
    """A database id from a Store or a pattern-matching id; None for anything else (text, lists, True, 0, ...)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ROW_ID:
        return value
    return None


def clicked(clicks: Any) -> bool:
    """Whether the ``n_clicks`` of a pattern-matching (ALL) input hold a click."""
    return isinstance(clicks, list) and any(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in clicks)


def as_dict(value: Any) -> dict[str, Any]:
    """A Store's content that should be a dict (anything else counts as empty)."""
    return value if isinstance(value, dict) else {}


def trigger_id(key: str) -> int | None:
    """The row id under ``key`` in the id of the pattern-matching component that triggered the callback."""
    trigger = callback_context.triggered_id
    return row_id(trigger.get(key)) if isinstance(trigger, dict) else None
