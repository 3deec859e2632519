"""The one place that decides what a user may see or change (DESIGN section 11).

Every page, callback, file route and API route filters collections through ``visible_collections`` (or the
helpers built on it): anonymous users see public collections; a curator sees public ones and their own; an admin
sees everything. Only owners and admins change or delete.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, or_, true

from store.models import Collection, User


def access_user(user: Any) -> User | None:
    """Flask-Login's anonymous user (or None) -> None; an authenticated, active user -> the User."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if not getattr(user, "active", True):
        return None
    return user


def authenticated(user: Any) -> User | None:
    """The signed-in, active user, or None for an anonymous visitor (or a deactivated account)."""
    return access_user(user)


def visible_collections(user: Any) -> ColumnElement[bool]:
    """A WHERE clause on Collection for what ``user`` may see."""
    u = access_user(user)
    if u is None:
        return Collection.visibility == "public"
    if u.role == "admin":
        return true()
    return or_(Collection.visibility == "public", Collection.owner_id == u.id)


def can_view(user: Any, collection: Collection | None) -> bool:
    if collection is None:
        return False
    u = access_user(user)
    return collection.visibility == "public" or (u is not None and (u.role == "admin" or u.id == collection.owner_id))


def can_edit(user: Any, collection: Collection | None) -> bool:
    u = access_user(user)
    return collection is not None and u is not None and (u.role == "admin" or u.id == collection.owner_id)


def editable_collections(user: Any) -> ColumnElement[bool]:
    u = access_user(user)
    if u is None:
        return false()
    if u.role == "admin":
        return true()
    return Collection.owner_id == u.id
