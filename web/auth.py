"""Flask-Login wiring: users are loaded per request from the database, detached from any session."""
from __future__ import annotations

import flask
from flask_login import LoginManager, current_user

from store.db import session_scope
from store.models import User

login_manager = LoginManager()
login_manager.login_view = None  # pages show a sign-in prompt themselves


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    with session_scope() as session:
        user = session.get(User, uid)
        if user is None or not user.active:
            return None
        session.expunge(user)
        return user


def init_login(server: flask.Flask) -> None:
    login_manager.init_app(server)


def viewer():
    """The current user for access checks (an anonymous user outside a request)."""
    try:
        return current_user._get_current_object()
    except Exception:  # noqa: BLE001 - outside a request context
        return None
