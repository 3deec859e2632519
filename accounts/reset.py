"""Password reset: a mailed link, valid for an hour and only until the password changes.

Requests are throttled per (email, client address) and per address, never per email alone, so nobody can use
up the owner's own requests; the answer is the same whether or not the account exists.

Many client addresses could still flood one mailbox, so the mails to one account are capped too
(``INCDB_RESET_MAILS_PER_HOUR``, in the throttle storage that every process of the machine shares). Past the cap
the request is answered as always and no mail goes out: the request is not refused, so a flood tells nobody
anything and does not block the owner, whose mailbox holds the links of the last hour, and every one of them works
until the password changes.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.mail import send_mail, site_link
from accounts.passwords import check_new_password, hash_password
from accounts.throttle import Limit, count_attempt, take_allowance
from accounts.tokens import MAX_AGE_S, RESET, LinkExpired, LinkInvalid, make_token, user_for_token
from accounts.users import AccountError, end_sessions, normalise_email, refuse_when_throttled
from store.config import get_settings
from store.models import User

log = logging.getLogger("incdb.accounts")

RESET_PER_ACCOUNT_AND_ADDRESS = Limit("reset-ea", 3, 60 * 60)
RESET_PER_ADDRESS = Limit("reset-a", 20, 60 * 60)


def reset_mails_limit() -> Limit | None:
    """The cap on reset mails to one account per hour (``INCDB_RESET_MAILS_PER_HOUR``), None when there is none."""
    per_hour = get_settings().reset_mails_per_hour
    return Limit("reset-mail", per_hour, 60 * 60) if per_hour else None


def make_reset_token(user: User) -> str:
    return make_token(RESET, user)


def user_for_reset_token(session: Session, token: str, max_age_s: int | None = None) -> User:
    """The user a reset link names, or AccountError saying what to do next."""
    try:
        return user_for_token(session, RESET, token, max_age_s)
    except LinkExpired:
        raise AccountError("This password reset link has expired. Ask for a new one.") from None
    except LinkInvalid:
        raise AccountError("This password reset link is invalid or was used already. Ask for a new one.") from None


def request_password_reset(session: Session, email: str, address: str) -> None:
    """Mail a reset link when the account exists. Says nothing either way (no probing for accounts).

    Raises
    ------
    AccountError
        A malformed address, or too many requests from this address (for this account or in all).
    """
    try:
        email = normalise_email(email or "")
    except ValueError:
        raise AccountError("Enter the email address of your account.") from None
    refuse_when_throttled(
        "password reset requests", (RESET_PER_ACCOUNT_AND_ADDRESS, (email, address)), (RESET_PER_ADDRESS, (address,))
    )
    count_attempt(RESET_PER_ACCOUNT_AND_ADDRESS, email, address)
    count_attempt(RESET_PER_ADDRESS, address)
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not user.active:
        log.info("password reset asked for unknown or inactive account %s", email)
        return
    limit = reset_mails_limit()
    if limit is not None and not take_allowance(limit, str(user.id)):
        log.info("password reset mail for %s not sent: %d sent in the last hour already", email, limit.attempts)
        return
    link = site_link(f"/account/reset-password?token={make_reset_token(user)}")
    send_mail(
        user.email,
        "INcDb: reset your password",
        f"Hello {user.display_name},\n\nsomeone (probably you) asked to reset the password of your INcDb "
        f"account. Open this link within {MAX_AGE_S[RESET] // 60} minutes to choose a new password:\n\n"
        f"{link}\n\nIf you did not ask for it, ignore this message; your password stays as it is.\n",
    )


def reset_password(session: Session, token: str, new: str, repeat: str) -> User:
    """Set a new password from a reset link; every session of the user ends."""
    user = user_for_reset_token(session, token)
    errors = check_new_password(new or "", repeat or "", user.email)
    if errors:
        raise AccountError(errors)
    user.password_hash = hash_password(new)
    user.email_confirmed = True  # the link reached the mailbox, which is what confirming shows
    end_sessions(user)
    session.flush()
    return user
