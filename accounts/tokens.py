"""Signed links: password reset and email confirmation.

Both are signed with the app's secret key, expire, and are bound to a fingerprint of the current password hash,
so a link stops working once it has been used, or once the password changed some other way (a second
registration of an unconfirmed address clears the password, and with it the earlier links; the links mailed after
that are bound to the empty password, and each ends when one of them sets the password).
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from store.config import secret_key
from store.models import User

RESET = "incdb-password-reset"
CONFIRM = "incdb-confirm-email"
MAX_AGE_S = {RESET: 3600, CONFIRM: 48 * 3600}


class LinkExpired(Exception):
    """The link was genuine but is older than its kind allows."""


class LinkInvalid(Exception):
    """The link was not made here, was altered, names no user, or was used (the password changed since)."""


def password_fingerprint(user: User) -> str:
    # Not the hash itself: the token is signed, not encrypted, and anyone holding it can read its payload.
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:20]


def make_token(kind: str, user: User) -> str:
    """A link token of ``kind`` (``RESET`` or ``CONFIRM``) for ``user`` as the user is now."""
    return URLSafeTimedSerializer(secret_key(), salt=kind).dumps({"u": user.id, "p": password_fingerprint(user)})


def user_for_token(session: Session, kind: str, token: str, max_age_s: int | None = None) -> User:
    """The user a token of ``kind`` names, while the token is fresh and their password unchanged.

    Raises
    ------
    LinkExpired
        The token is older than ``max_age_s`` (default: the kind's own limit).
    LinkInvalid
        Anything else that makes the token unusable.
    """
    serializer = URLSafeTimedSerializer(secret_key(), salt=kind)
    try:
        data = serializer.loads(token or "", max_age=MAX_AGE_S[kind] if max_age_s is None else max_age_s)
    except SignatureExpired:
        raise LinkExpired() from None
    except BadSignature:
        raise LinkInvalid() from None
    user = session.get(User, data.get("u")) if isinstance(data, dict) and isinstance(data.get("u"), int) else None
    if user is None or not user.active or password_fingerprint(user) != data.get("p"):
        raise LinkInvalid()
    return user
