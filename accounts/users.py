"""Curator accounts: registration (finished from a mailed link), sign-in, profile, password change, sessions,
and the administrators' roles and deactivation. Free of Dash and Flask, so the web app, the CLI and the tests
share them; the web side (``web.auth``) only puts the user into the Flask session.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from accounts.mail import send_mail, site_link
from accounts.passwords import PASSWORD_MAX_LENGTH, check_new_password, hash_password
from accounts.throttle import Limit, clear_attempts, count_attempt, throttled_for, wait_message
from accounts.tokens import CONFIRM, MAX_AGE_S, LinkExpired, LinkInvalid, make_token, user_for_token
from store.models import ROLES, User
from store.validation import TEXT_LIMITS, check_choice, has_control_characters

PROFILE_LIMITS = {name: TEXT_LIMITS[name] for name in ("title", "first_name", "last_name", "affiliation")}
TITLES = ("", "Dr.", "Prof.", "Mr.", "Ms.", "Mx.")

LOGIN_PER_ACCOUNT_AND_ADDRESS = Limit("login-ea", 5, 15 * 60)
LOGIN_PER_ADDRESS = Limit("login-a", 50, 15 * 60)
# Every registration attempt counts (not only those that create an account), so the form cannot be used to
# test many addresses quickly.
REGISTER_PER_ADDRESS = Limit("register-a", 10, 60 * 60)


class AccountError(ValueError):
    """One or more messages for the person filling in a form."""

    def __init__(self, messages: str | list[str]):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a forward path, and the column's length
_EMAIL_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_email(email: str) -> str:
    """The address in lower case, or ValueError when it is not one a mail server would take.

    One ``@``; a local part of the usual characters (no quoting, no spaces, no control characters: a CR/LF in an
    address could add header lines to a mail); a domain of at least two dot-separated labels (internationalised
    domains are taken in their IDNA form)."""
    email = (email or "").strip().lower()
    if not email or len(email) > EMAIL_MAX_LENGTH or email.count("@") != 1:
        raise ValueError(f"{email[:80]!r} is not an email address")
    local, domain = email.split("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{email[:80]!r} is not an email address") from None
    labels = domain.split(".")
    if (
        not _EMAIL_LOCAL.match(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(f"{email[:80]!r} is not an email address")
    return f"{local}@{domain}"


def create_user(session: Session, email: str, password: str | None, role: str = "curator", **profile) -> User:
    """Add a user (confirmed unless ``email_confirmed=False`` is passed, as registration does).

    Parameters
    ----------
    email : str
        Any case; stored normalised.
    password : str or None
        None or "" makes an account that cannot sign in until a password is set by a reset link.
    role : {"curator", "admin"}
    **profile
        User columns: title, first_name, last_name, affiliation, email_confirmed.

    Raises
    ------
    ValueError
        Malformed address, unknown role, a password below the minimum, or an address that has an account.
    """
    email = normalise_email(email)
    check_choice(role, ROLES, "role")
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise ValueError(f"a user with the email {email} already exists")
    user = User(email=email, role=role, password_hash=hash_password(password) if password else "", **profile)
    session.add(user)
    session.flush()
    return user


def refuse_when_throttled(what: str, *checks: tuple[Limit, tuple[str, ...]]) -> None:
    """AccountError ("Too many <what>...") when any of the (limit, key parts) checks is exhausted; checks whose
    key has an empty part (no client address, e.g. from the CLI) are skipped."""
    for limit, parts in checks:
        if all(parts) and (wait := throttled_for(limit, *parts)):
            raise AccountError(wait_message(what, wait))


def _clean_profile(fields: dict[str, Any], errors: list[str]) -> dict[str, str]:
    clean = {}
    for name, limit in PROFILE_LIMITS.items():
        if name not in fields:
            continue
        value = " ".join(str(fields.get(name) or "").split())
        if has_control_characters(value):
            errors.append(f"The {name.replace('_', ' ')} contains control characters.")
            value = ""
        if len(value) > limit:
            errors.append(f"The {name.replace('_', ' ')} may have at most {limit} characters.")
        clean[name] = value[:limit]
    return clean


def register(session: Session, email: str, password: str, repeat: str, address: str = "", **profile) -> str:
    """Take the registration form and mail the address; return the address the mail went to.

    The answer is the same whether or not the address has an account, so the form tells nobody who is
    registered: a new address gets a link that finishes the registration (``confirm_email``); an address with an
    account gets a note saying so, with a link to reset its password. Every branch hashes the password once, so
    neither does the time the answer takes (a known address would otherwise answer in milliseconds, a new one
    after a scrypt hash).

    Only a mailbox's owner finishes a registration for it, and only the owner chooses its password. A second form
    for an address whose registration is still pending may come from the owner (someone squatted the address) or
    from an attacker (the owner registered first, and the newest link in the owner's mailbox would otherwise sign
    them in to an account with the attacker's password). Nobody can tell which, so neither form's password is
    kept: the pending password is cleared, which also ends the earlier links, and the new link asks whoever opens
    it to choose the password."""
    refuse_when_throttled("registrations from your address", (REGISTER_PER_ADDRESS, (address,)))
    errors: list[str] = []
    try:
        email = normalise_email(email or "")
    except ValueError:
        errors.append("Enter a valid email address.")
        email = ""
    clean = _clean_profile(profile, errors)
    if not clean.get("first_name"):
        errors.append("Enter your first name.")
    if not clean.get("last_name"):
        errors.append("Enter your last name.")
    errors += check_new_password(password or "", repeat or "", email)
    if errors:
        raise AccountError(errors)
    if address:
        count_attempt(REGISTER_PER_ADDRESS, address)
    password_hash = hash_password(password)  # before the lookup: the same work on every branch
    user = session.scalar(select(User).where(User.email == email))
    if user is not None and user.email_confirmed:
        send_mail(
            email,
            "INcDb: you have an account already",
            f"Hello {user.display_name},\n\nsomeone (probably you) tried to register an INcDb account for "
            f"this address, which has one already. Sign in at {site_link('/account/sign-in')}, or choose a "
            f"new password at {site_link('/account/forgot-password')}.\n\nIf it was not you, ignore this "
            f"message; nothing changed.\n",
        )
        return email
    if user is None:
        user = User(email=email, role="curator", password_hash=password_hash, email_confirmed=False, **clean)
        session.add(user)
        what = "finish creating your INcDb curator account"
    else:
        user.password_hash = ""  # see the docstring: the password is chosen from the link
        for name, value in clean.items():
            setattr(user, name, value)
        what = (
            "choose your password and finish creating your INcDb curator account (this address was "
            "registered more than once, so the password of no form is kept)"
        )
    session.flush()
    link = site_link(f"/account/confirm-email?token={make_token(CONFIRM, user)}")
    send_mail(
        email,
        "INcDb: confirm your email address",
        f"Hello {user.display_name},\n\nopen this link within {MAX_AGE_S[CONFIRM] // 3600} hours to {what}:"
        f"\n\n{link}\n\nIf you did not register, ignore this message; no account is made without the link.\n",
    )
    return email


def password_chosen_on_confirmation(user: User) -> bool:
    """True for a pending registration whose password is chosen from the mailed link (it was registered more than
    once, see ``register``)."""
    return not user.email_confirmed and not user.password_hash


def user_for_confirm_token(session: Session, token: str, max_age_s: int | None = None) -> User:
    """The unconfirmed user a confirmation link names, or AccountError with what to do next."""
    try:
        user = user_for_token(session, CONFIRM, token, max_age_s)
    except LinkExpired:
        raise AccountError("This confirmation link has expired. Register again for a new one.") from None
    except LinkInvalid:
        raise AccountError(
            "This confirmation link is invalid or was replaced by a newer one. Register again for a new link."
        ) from None
    if user.email_confirmed:
        raise AccountError("This email address is confirmed already. Sign in.")
    return user


def confirm_email(session: Session, token: str, password: str = "", repeat: str = "") -> User:
    """Finish a registration from its mailed link; ``password`` and ``repeat`` are read only when the password
    is chosen here (``password_chosen_on_confirmation``)."""
    user = user_for_confirm_token(session, token)
    if password_chosen_on_confirmation(user):
        errors = check_new_password(password or "", repeat or "", user.email)
        if errors:
            raise AccountError(errors)
        user.password_hash = hash_password(password)
    user.email_confirmed = True
    session.flush()
    return user


_dummy: list[str] = []


def _dummy_hash() -> str:
    # A real scrypt hash to check against when the email is unknown: a wrong email costs as long as a wrong password.
    if not _dummy:
        _dummy.append(hash_password("not-a-password-of-anyone"))
    return _dummy[0]


def authenticate(session: Session, email: str, password: str, address: str) -> User:
    """The active user with this email and password, or AccountError; failures are throttled."""
    try:
        email = normalise_email(email or "")
    except ValueError:
        raise AccountError("Enter the email address of your account.") from None
    refuse_when_throttled(
        "failed sign-in attempts", (LOGIN_PER_ACCOUNT_AND_ADDRESS, (email, address)), (LOGIN_PER_ADDRESS, (address,))
    )
    user = session.scalar(select(User).where(User.email == email))
    password = (password or "")[:PASSWORD_MAX_LENGTH]
    ok = check_password_hash(user.password_hash if user and user.password_hash else _dummy_hash(), password)
    if not ok or user is None or not user.password_hash:
        count_attempt(LOGIN_PER_ACCOUNT_AND_ADDRESS, email, address)
        count_attempt(LOGIN_PER_ADDRESS, address)
        raise AccountError("Wrong email address or password.")
    if not user.active:
        raise AccountError("This account is deactivated. Contact an administrator of this site.")
    if not user.email_confirmed:
        raise AccountError(
            "Confirm your email address first: open the link we mailed you when you registered "
            "(register again with the same address for a new link)."
        )
    clear_attempts(LOGIN_PER_ACCOUNT_AND_ADDRESS, email, address)
    return user


def update_profile(session: Session, user_id: int, **fields) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AccountError("Your account no longer exists.")
    errors: list[str] = []
    clean = _clean_profile(fields, errors)
    if "first_name" in clean and not clean["first_name"]:
        errors.append("Enter your first name.")
    if "last_name" in clean and not clean["last_name"]:
        errors.append("Enter your last name.")
    if errors:
        raise AccountError(errors)
    for name, value in clean.items():
        setattr(user, name, value)
    session.flush()
    return user


def change_password(session: Session, user_id: int, current: str, new: str, repeat: str) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise AccountError("Your account no longer exists.")
    if not user.password_hash or not check_password_hash(user.password_hash, (current or "")[:PASSWORD_MAX_LENGTH]):
        raise AccountError("The current password is wrong.")
    errors = check_new_password(new or "", repeat or "", user.email)
    if new and new == current:
        errors.append("The new password is the same as the current one.")
    if errors:
        raise AccountError(errors)
    user.password_hash = hash_password(new)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every session of ``user``: cookies signed in with the old session version are refused from now on."""
    user.session_version = (user.session_version or 0) + 1


def set_role(session: Session, actor: User, user_id: int, role: str) -> User:
    if not actor or not actor.is_admin:
        raise AccountError("Only administrators change roles.")
    try:
        check_choice(role, ROLES, "role")
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    user = session.get(User, user_id)
    if user is None:
        raise AccountError("No such user.")
    if user.id == actor.id and role != "admin":
        raise AccountError("You cannot remove your own administrator role (ask another administrator).")
    user.role = role
    return user


def set_user_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    if not actor or not actor.is_admin:
        raise AccountError("Only administrators activate or deactivate accounts.")
    user = session.get(User, user_id)
    if user is None:
        raise AccountError("No such user.")
    if user.id == actor.id and not active:
        raise AccountError("You cannot deactivate your own account.")
    user.active = bool(active)
    if not user.active:
        end_sessions(user)
    return user
