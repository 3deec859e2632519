"""Flask-Login wiring, sign-in/out helpers and CSRF protection.

Users are loaded per request from the database, detached from any session. The session holds
``"<user id>:<session version>"``; the loader refuses a session whose version is no longer the user's, so
bumping the version (``end_sessions``: sign-out, password change or reset, deactivation, "sign out everywhere")
ends every copy of the old cookie, wherever it is.

CSRF: a random token lives in the (signed) session and is mirrored in the readable ``_csrf_token`` cookie. Dash's
renderer already sends that cookie back as the ``X-CSRFToken`` header on every callback request, and
``assets/upload.js`` does the same for uploads, so every state-changing request of a signed-in session must carry
the header and match the session (double submit, with the session as the reference). Anonymous requests carry
no privileges; sign-in itself is a Dash callback, a JSON POST that a cross-site form cannot send (and SameSite=Lax
keeps the session cookie off cross-site POSTs in any case).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

import flask
from flask_login import LoginManager, current_user, login_user, logout_user

from accounts.users import end_sessions
from store.config import get_settings
from store.db import session_scope
from store.models import User

login_manager = LoginManager()
login_manager.login_view = None  # pages show a sign-in prompt themselves

CSRF_SESSION_KEY = "_csrf"
CSRF_COOKIE = "_csrf_token"  # the name Dash's renderer reads (Dash(csrf_token_name=...) default)
CSRF_HEADER = "X-CSRFToken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    try:
        uid, version = (int(part) for part in str(session_id).split(":"))
    except (TypeError, ValueError):
        return None  # also a cookie from before session versions: sign in again
    with session_scope() as session:
        user = session.get(User, uid)
        if user is None or not user.active or user.session_version != version:
            return None
        session.expunge(user)
        return user


def init_login(server: flask.Flask) -> None:
    login_manager.init_app(server)
    server.before_request(_check_csrf)
    server.after_request(_set_csrf_cookie)


def viewer():
    """The current user for access checks (an anonymous user outside a request)."""
    try:
        return current_user._get_current_object()
    except Exception:  # noqa: BLE001 - outside a request context
        return None


def signed_in_user() -> User | None:
    user = viewer()
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def client_address() -> str:
    """The client's address for throttling (behind a proxy, configure ProxyFix/gunicorn forwarded_allow_ips so
    that this is the client's and not the proxy's)."""
    try:
        return flask.request.remote_addr or "unknown"
    except RuntimeError:
        return "unknown"


def csrf_token() -> str:
    token = flask.session.get(CSRF_SESSION_KEY)
    if not token:
        token = flask.session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (nothing from the anonymous session survives, the CSRF token is new)."""
    flask.session.clear()
    login_user(user)
    csrf_token()


def sign_out() -> None:
    """End this session and every other of the same user (a copied cookie stops working too)."""
    user = signed_in_user()
    if user is not None:
        _end_sessions(user.id)
    logout_user()
    flask.session.clear()


def sign_out_elsewhere() -> None:
    """End every session of the signed-in user except this one (which is signed in again, with a new CSRF
    token)."""
    user = signed_in_user()
    if user is None:
        return
    fresh = _end_sessions(user.id)
    if fresh is not None:
        sign_in(fresh)


def _end_sessions(user_id: int) -> User | None:
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None:
            return None
        end_sessions(user)
        session.flush()
        session.expunge(user)
        return user


def _check_csrf():
    if flask.request.method in SAFE_METHODS or "_user_id" not in flask.session:
        return None
    expected = flask.session.get(CSRF_SESSION_KEY, "")
    sent = flask.request.headers.get(CSRF_HEADER, "")
    if expected and sent and hmac.compare_digest(expected, sent):
        return None
    return flask.make_response(
        flask.jsonify({"error": "Missing or wrong CSRF token: reload the page and try again."}), 403
    )


def _set_csrf_cookie(response: flask.Response) -> flask.Response:
    # Anonymous visitors get no token (and so no session cookie): they have nothing a forged request could use.
    token = flask.session.get(CSRF_SESSION_KEY) or ("_user_id" in flask.session and csrf_token())
    if token and flask.request.cookies.get(CSRF_COOKIE) != token:
        # Readable by scripts on purpose (they copy it into the header); the session holds the reference value.
        response.set_cookie(
            CSRF_COOKIE, token, httponly=False, samesite="Lax", secure=get_settings().env == "production", path="/"
        )
    return response


def safe_next(target: str | None, default: str = "/contribute") -> str:
    """``target`` when it is a path on this site, else ``default``.

    The value is read as a browser reads a URL: C0 control characters and spaces at the ends are dropped, tabs
    and newlines anywhere are dropped, and a backslash counts as a slash. So '/x' passes, while
    '//evil.example', 'https://evil.example', '/\\evil.example' and '/<tab>\\evil.example' do not."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return default
    cleaned = "".join(ch for ch in target.strip("".join(map(chr, range(33)))) if ch not in "\t\n\r")
    cleaned = cleaned.replace("\\", "/")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        return default
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not cleaned.startswith("/") or cleaned.startswith("//"):
        return default
    if cleaned.startswith("/account/sign-"):
        return default
    return cleaned
