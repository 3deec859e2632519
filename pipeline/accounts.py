"""Accounts and the rules around them, free of Dash and Flask so the web app, the CLI and the tests share them.

- Registration, sign-in, profile and password changes, with messages a person can act on.
- Sign-in throttling: failures are counted per (email, client address) and per client address in a small
  diskcache under the data directory. It needs no table and is shared by every process of one machine (gunicorn
  workers, the embedded server); several web machines each count on their own, so the limits multiply by the
  number of machines.
- Password reset links: signed with the app's secret key, expiring, and bound to the current password hash, so
  a link stops working once it has been used (or the password changed some other way).
- Mail: SMTP when ``INCDB_SMTP_HOST`` is set; otherwise (the embedded mode) the message is written to the log.
- Jobs started from the web: the web process checks the permission and creates the Job; the worker receives only
  the job's token and the user id (from Dash's ``hooks.custom_data``) and checks both again in the database.
"""
from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from pipeline.catalog import (
    PASSWORD_MIN_LENGTH,
    active_job,
    create_user,
    hash_password,
    normalise_email,
)
from pipeline.heartbeat import settle_stalled_jobs
from store.access import can_edit
from store.config import get_settings, secret_key
from store.db import session_scope
from store.models import ROLES, Collection, Job, Upload, User, utcnow

log = logging.getLogger("incdb.accounts")

PASSWORD_MAX_LENGTH = 1024  # scrypt of a megabyte-long "password" would be a cheap way to burn CPU
RESET_MAX_AGE_S = 3600
PROFILE_LIMITS = {"title": 40, "first_name": 100, "last_name": 100, "affiliation": 255}
TITLES = ("", "Dr.", "Prof.", "Mr.", "Ms.", "Mx.")


class AccountError(ValueError):
    """One or more messages for the person filling in a form."""

    def __init__(self, messages: str | list[str]):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


# --- throttling -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    prefix: str
    attempts: int
    window_s: int


LOGIN_PER_ACCOUNT_AND_ADDRESS = Limit("login-ea", 5, 15 * 60)
LOGIN_PER_ADDRESS = Limit("login-a", 50, 15 * 60)
# Keyed on (email, address), not the email alone: a stranger's requests must not use up the owner's own.
RESET_PER_ACCOUNT_AND_ADDRESS = Limit("reset-ea", 3, 60 * 60)
RESET_PER_ADDRESS = Limit("reset-a", 20, 60 * 60)
# Every registration attempt counts (not only those that create an account), so the form cannot be used to
# test many addresses quickly.
REGISTER_PER_ADDRESS = Limit("register-a", 10, 60 * 60)

_caches: dict[str, Any] = {}
_caches_lock = threading.Lock()


def _throttle_cache():
    import diskcache

    directory = str(get_settings().data_dir / "cache" / "throttle")
    with _caches_lock:
        cache = _caches.get(directory)
        if cache is None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            cache = _caches[directory] = diskcache.Cache(directory)
        return cache


def _key(limit: Limit, *parts: str) -> str:
    return limit.prefix + ":" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def throttled_for(limit: Limit, *parts: str) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    count, expires = _throttle_cache().get(_key(limit, *parts), default=0, expire_time=True)
    if count < limit.attempts or expires is None:
        return 0
    return max(1, int(expires - time.time()))


def count_attempt(limit: Limit, *parts: str) -> None:
    """Count one attempt; the window restarts at every attempt, so a lock lasts ``window_s`` after the last."""
    cache = _throttle_cache()
    key = _key(limit, *parts)
    with cache.transact():
        cache.set(key, cache.get(key, default=0) + 1, expire=limit.window_s)


def clear_attempts(limit: Limit, *parts: str) -> None:
    _throttle_cache().delete(_key(limit, *parts))


def _wait_message(what: str, seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"Too many {what}. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


# --- accounts -------------------------------------------------------------------------------------------------

_COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    lines = _COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _guessable(password: str) -> bool:
    """True for a password that a guesser tries first: a leaked favourite, one character repeated, or a run of
    consecutive characters ('abcdefghij', '9876543210')."""
    folded = password.strip().lower()
    if folded in _common_passwords() or len(set(folded)) <= 2:
        return True
    steps = {ord(b) - ord(a) for a, b in zip(folded, folded[1:])}
    return steps in ({1}, {-1})


def _check_new_password(password: str, repeat: str, email: str = "") -> list[str]:
    errors = []
    if len(password or "") < PASSWORD_MIN_LENGTH:
        errors.append(f"The password needs at least {PASSWORD_MIN_LENGTH} characters.")
    elif len(password) > PASSWORD_MAX_LENGTH:
        errors.append(f"The password may have at most {PASSWORD_MAX_LENGTH} characters.")
    elif email and password.strip().lower() in (email, email.split("@")[0]):
        errors.append("The password must not be your email address.")
    elif _guessable(password):
        errors.append("This password is among the first that attackers try. Choose a less common one, "
                      "for example a few unrelated words.")
    if password != repeat:
        errors.append("The two passwords differ.")
    return errors


def _clean_profile(fields: dict[str, Any], errors: list[str]) -> dict[str, str]:
    clean = {}
    for name, limit in PROFILE_LIMITS.items():
        if name not in fields:
            continue
        value = " ".join(str(fields.get(name) or "").split())
        if "\x00" in value or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value):
            errors.append(f"The {name.replace('_', ' ')} contains control characters.")
            value = ""
        if len(value) > limit:
            errors.append(f"The {name.replace('_', ' ')} may have at most {limit} characters.")
        clean[name] = value[:limit]
    return clean


CONFIRM_MAX_AGE_S = 48 * 3600


def register(session: Session, email: str, password: str, repeat: str, address: str = "", **profile) -> str:
    """Take the registration form and mail the address; return the address the mail went to.

    The answer is the same whether or not the address has an account, so the form tells nobody who is
    registered: a new address (or one whose registration was never confirmed) gets a link that finishes the
    registration (``confirm_email``); an address with an account gets a note saying so, with a link to reset
    its password. Only a mailbox's owner can finish a registration for it."""
    if address and (wait := throttled_for(REGISTER_PER_ADDRESS, address)):
        raise AccountError(_wait_message("registrations from your address", wait))
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
    errors += _check_new_password(password or "", repeat or "", email)
    if errors:
        raise AccountError(errors)
    if address:
        count_attempt(REGISTER_PER_ADDRESS, address)
    user = session.scalar(select(User).where(User.email == email))
    if user is not None and user.email_confirmed:
        send_mail(email, "INcDb: you have an account already",
                  f"Hello {user.display_name},\n\nsomeone (probably you) tried to register an INcDb account for "
                  f"this address, which has one already. Sign in at {base_url()}/account/sign-in, or choose a "
                  f"new password at {base_url()}/account/forgot-password.\n\nIf it was not you, ignore this "
                  f"message; nothing changed.\n")
        return email
    if user is None:
        user = create_user(session, email, password, role="curator", email_confirmed=False, **clean)
    else:  # an unconfirmed registration: the newest form wins, and earlier links stop working
        user.password_hash = hash_password(password)
        for name, value in clean.items():
            setattr(user, name, value)
        session.flush()
    link = f"{base_url()}/account/confirm-email?token={make_confirm_token(user)}"
    send_mail(email, "INcDb: confirm your email address",
              f"Hello {user.display_name},\n\nopen this link within {CONFIRM_MAX_AGE_S // 3600} hours to finish "
              f"creating your INcDb curator account:\n\n{link}\n\nIf you did not register, ignore this "
              f"message; no account is made without the link.\n")
    return email


def _confirm_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(), salt="incdb-confirm-email")


def make_confirm_token(user: User) -> str:
    return _confirm_serializer().dumps({"u": user.id, "p": _password_fingerprint(user)})


def user_for_confirm_token(session: Session, token: str, max_age_s: int = CONFIRM_MAX_AGE_S) -> User:
    """The unconfirmed user a confirmation link names, or AccountError."""
    invalid = "This confirmation link is invalid or was replaced by a newer one. Register again for a new link."
    try:
        data = _confirm_serializer().loads(token or "", max_age=max_age_s)
    except SignatureExpired:
        raise AccountError("This confirmation link has expired. Register again for a new one.") from None
    except BadSignature:
        raise AccountError(invalid) from None
    user = session.get(User, data.get("u")) if isinstance(data, dict) else None
    if user is not None and user.email_confirmed and _password_fingerprint(user) == data.get("p"):
        raise AccountError("This email address is confirmed already. Sign in.")
    if user is None or not user.active or _password_fingerprint(user) != data.get("p"):
        raise AccountError(invalid)
    return user


def confirm_email(session: Session, token: str) -> User:
    """Finish a registration from its mailed link."""
    user = user_for_confirm_token(session, token)
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
    for limit, parts in ((LOGIN_PER_ACCOUNT_AND_ADDRESS, (email, address)), (LOGIN_PER_ADDRESS, (address,))):
        wait = throttled_for(limit, *parts)
        if wait:
            raise AccountError(_wait_message("failed sign-in attempts", wait))
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
        raise AccountError("Confirm your email address first: open the link we mailed you when you registered "
                           "(register again with the same address for a new link).")
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
    errors = _check_new_password(new or "", repeat or "", user.email)
    if new and new == current:
        errors.append("The new password is the same as the current one.")
    if errors:
        raise AccountError(errors)
    user.password_hash = hash_password(new)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every session of ``user``: cookies signed in with the old session version are refused from now on."""
    user.session_version = (user.session_version or 0) + 1


# --- password reset -------------------------------------------------------------------------------------------

def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(), salt="incdb-password-reset")


def _password_fingerprint(user: User) -> str:
    # Not the hash itself: the token is signed, not encrypted, and anyone holding it can read its payload.
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:20]


def make_reset_token(user: User) -> str:
    return _reset_serializer().dumps({"u": user.id, "p": _password_fingerprint(user)})


def user_for_reset_token(session: Session, token: str, max_age_s: int = RESET_MAX_AGE_S) -> User:
    invalid = "This password reset link is invalid or was used already. Ask for a new one."
    try:
        data = _reset_serializer().loads(token or "", max_age=max_age_s)
    except SignatureExpired:
        raise AccountError("This password reset link has expired. Ask for a new one.") from None
    except BadSignature:
        raise AccountError(invalid) from None
    user = session.get(User, data.get("u")) if isinstance(data, dict) else None
    if user is None or not user.active or _password_fingerprint(user) != data.get("p"):
        raise AccountError(invalid)
    return user


def reset_password(session: Session, token: str, new: str, repeat: str) -> User:
    user = user_for_reset_token(session, token)
    errors = _check_new_password(new or "", repeat or "", user.email)
    if errors:
        raise AccountError(errors)
    user.password_hash = hash_password(new)
    user.email_confirmed = True  # the link reached the mailbox, which is what confirming shows
    end_sessions(user)
    session.flush()
    return user


def base_url() -> str:
    """Where links in mails point: the configured site address, never the request's Host or X-Forwarded-Host
    (either can be forged, and a reset link on a stranger's host hands them the account)."""
    return get_settings().base_url


def request_password_reset(session: Session, email: str, address: str) -> None:
    """Mail a reset link when the account exists. Says nothing either way (no probing for accounts)."""
    try:
        email = normalise_email(email or "")
    except ValueError:
        raise AccountError("Enter the email address of your account.") from None
    for limit, parts in ((RESET_PER_ACCOUNT_AND_ADDRESS, (email, address)), (RESET_PER_ADDRESS, (address,))):
        wait = throttled_for(limit, *parts)
        if wait:
            raise AccountError(_wait_message("password reset requests", wait))
    count_attempt(RESET_PER_ACCOUNT_AND_ADDRESS, email, address)
    count_attempt(RESET_PER_ADDRESS, address)
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not user.active:
        log.info("password reset asked for unknown or inactive account %s", email)
        return
    link = f"{base_url()}/account/reset-password?token={make_reset_token(user)}"
    send_mail(user.email, "INcDb: reset your password",
              f"Hello {user.display_name},\n\nsomeone (probably you) asked to reset the password of your INcDb "
              f"account. Open this link within {RESET_MAX_AGE_S // 60} minutes to choose a new password:\n\n"
              f"{link}\n\nIf you did not ask for it, ignore this message; your password stays as it is.\n")


def send_mail(to: str, subject: str, body: str) -> None:
    host = os.environ.get("INCDB_SMTP_HOST")
    if not host:
        log.warning("mail (INCDB_SMTP_HOST is not set, so it is written here instead)\nTo: %s\nSubject: %s\n\n%s",
                    to, subject, body)
        return
    message = EmailMessage()
    message["From"] = os.environ.get("INCDB_SMTP_FROM") or f"INcDb <no-reply@{host}>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    port = int(os.environ.get("INCDB_SMTP_PORT") or 587)
    user, password = os.environ.get("INCDB_SMTP_USER"), os.environ.get("INCDB_SMTP_PASSWORD")
    context = ssl.create_default_context()
    if port == 465:
        client = smtplib.SMTP_SSL(host, port, timeout=30, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=30)
    with client:
        if port != 465 and os.environ.get("INCDB_SMTP_STARTTLS", "1") != "0":
            client.starttls(context=context)
        if user:
            client.login(user, password or "")
        client.send_message(message)


# --- administration -------------------------------------------------------------------------------------------

def set_role(session: Session, actor: User, user_id: int, role: str) -> User:
    if not actor or not actor.is_admin:
        raise AccountError("Only administrators change roles.")
    if role not in ROLES:
        raise AccountError(f"The role must be one of {', '.join(ROLES)}.")
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


# --- jobs started from the web --------------------------------------------------------------------------------

class JobRefused(RuntimeError):
    """The job may not run for this user (or no longer exists)."""


class JobCancelled(BaseException):
    """Raised from the progress callback to stop a job the curator cancelled. A BaseException, so that the
    pipeline's ``except Exception`` handlers do not record it as a failure."""


FINISHED = ("succeeded", "failed", "cancelled")


def start_ingest_job(session: Session, user: Any, collection: Collection) -> Job:
    """Create the ingest job for a collection after checking, in the web process, that ``user`` may run it.
    A queued job that no browser picked up is reused rather than doubled."""
    if not can_edit(user, collection):
        raise JobRefused("You may not process this collection.")
    if collection.license_confirmed_at is None:
        raise JobRefused("Confirm the license first.")
    if not session.scalar(select(func.count(Upload.id)).where(Upload.collection_id == collection.id)):
        raise JobRefused("Upload at least one file first.")
    current = active_job(session, collection.id)
    if current is not None:
        if current.status == "queued":
            return current
        raise JobRefused("This collection is being processed already. Wait for it, or cancel it first.")
    from pipeline.jobs import create_job

    return create_job(session, "ingest", collection.id, user.id)


def start_redecode_job(session: Session, user: Any) -> Job:
    if not (getattr(user, "is_authenticated", False) and getattr(user, "is_admin", False)):
        raise JobRefused("Only administrators re-decode the database.")
    settle_stalled_jobs(session)
    current = session.scalar(select(Job).where(Job.kind.in_(("redecode", "merge")),
                                               Job.status.in_(("queued", "running"))))
    if current is not None:
        if current.status == "queued":
            return current
        raise JobRefused("A re-decoding job is running already.")
    from pipeline.jobs import create_job

    return create_job(session, "redecode", None, user.id)


def _authorized(session: Session, job: Job | None, user_id: Any) -> User:
    """Check again, where the job runs, that the user who asked may run this job."""
    if job is None:
        raise JobRefused("This job does not exist (any more).")
    try:
        user = session.get(User, int(user_id)) if user_id is not None else None
    except (TypeError, ValueError):
        user = None
    if user is None or not user.active:
        raise JobRefused("Sign in to run jobs.")
    if job.collection_id is not None:
        if not can_edit(user, session.get(Collection, job.collection_id)):
            raise JobRefused("You may not process this collection.")
    elif not user.is_admin:
        raise JobRefused("Only administrators run this job.")
    if job.created_by_id not in (None, user.id) and not user.is_admin:
        raise JobRefused("This job was started by someone else.")
    return user


def job_summary(session: Session, job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status, "done": job.progress_done,
            "total": job.progress_total, "message": job.message, "error": job.error,
            "warnings": list(job.warnings or []), "attempts": job.attempts,
            "collection_id": job.collection_id}


def run_authorized_job(token: str, user_id: Any, progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a job given its token, as ``user_id``, and return the Job row's summary.

    Errors are caught and recorded on the Job row (a background callback's exceptions would otherwise be
    swallowed by Dash). Cancellation is cooperative too: the progress callback stops the job once its row says
    cancelled, which also covers pools that cannot kill a running task."""
    from pipeline.ingest import update_job
    from pipeline.jobs import run_job

    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.token == str(token or "")))
        _authorized(session, job, user_id)
        job_id, collection_id, kind = job.id, job.collection_id, job.kind
        if job.status in FINISHED:
            return job_summary(session, job)
    log.info("job %s (%s, collection %s) runs in process %s", job_id, kind, collection_id, os.getpid())

    def checked_progress(done: int, total: int) -> None:
        with session_scope() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status == "cancelled":
            raise JobCancelled()
        if progress:
            progress(done, total)

    try:
        run_job(job_id, checked_progress)
    except JobCancelled:
        log.info("job %s stopped: cancelled", job_id)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status not in FINISHED:
                job.status, job.finished = "failed", utcnow()
            if job is not None and not job.error:
                job.error = str(exc) or type(exc).__name__
            if collection_id is not None and (c := session.get(Collection, collection_id)) is not None:
                c.status = "failed"
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobRefused("The job was deleted while it ran.")
        if job.status == "cancelled":
            _settle_cancelled_collection(session, job)
        elif job.status in ("queued", "running"):  # run_job returned without finishing the row
            update_job(job_id, status="succeeded", finished=utcnow())
            session.refresh(job)
        return job_summary(session, job)


def _settle_cancelled_collection(session: Session, job: Job) -> None:
    from store.models import Component

    if job.collection_id is None:
        return
    collection = session.get(Collection, job.collection_id)
    if collection is not None and collection.status == "processing":
        n = session.scalar(select(func.count(Component.id)).where(Component.collection_id == collection.id))
        collection.status = "ready" if n else "empty"


def cancel_job(session: Session, user: Any, token: str) -> Job:
    """Mark a job cancelled (the web process kills the task; a run that still reports progress stops)."""
    job = session.scalar(select(Job).where(Job.token == str(token or "")))
    if job is None:
        raise JobRefused("This job does not exist (any more).")
    _authorized(session, job, getattr(user, "id", None))
    if job.status in ("queued", "running"):
        job.status, job.finished = "cancelled", utcnow()
        job.message = "cancelled"
        _settle_cancelled_collection(session, job)
    return job




# --- the collection form ----------------------------------------------------------------------------------------

DATASET_URL_MAX_LENGTH = 1000  # the column's length


def _has_control_characters(text: str, allow_newlines: bool = False) -> bool:
    """NUL and other C0/C1 control characters: PostgreSQL refuses NUL in text, and none belongs in a title."""
    allowed = "\n\r\t" if allow_newlines else "\t"
    return any((ord(ch) < 32 and ch not in allowed) or 127 <= ord(ch) < 160 for ch in text)


_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")


def validate_collection_form(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The create/edit form's values -> (clean values, messages). Metadata groups go through
    ``pipeline.metadata.validate_metadata``; the rest is checked here."""
    import re

    from pipeline.metadata import validate_metadata
    from store.models import LICENSES, VISIBILITIES

    errors: list[str] = []
    # Text fields hold text; a forged request may send lists or objects, which count as empty.
    text_keys = ("name", "movie", "contributors", "description", "dataset_url", "doi", "license", "visibility")
    raw = {k: ("" if k in text_keys and not isinstance(v, str) else v) for k, v in raw.items()}
    if not isinstance(raw.get("year"), (str, int)) or isinstance(raw.get("year"), bool):
        raw["year"] = ""
    if not isinstance(raw.get("metadata"), dict):
        raw["metadata"] = {}
    for key, label in (("name", "name"), ("movie", "movie title"), ("contributors", "contributors"),
                       ("description", "description"), ("dataset_url", "dataset URL"), ("doi", "DOI")):
        if _has_control_characters(raw.get(key) or "", allow_newlines=key == "description"):
            errors.append(f"The {label} contains control characters; type or paste it again as plain text.")
            raw[key] = ""
    text = {k: " ".join(str(raw.get(k) or "").split()) for k in ("name", "movie", "contributors")}
    clean: dict[str, Any] = {"name": text["name"], "movie": text["movie"], "contributors": text["contributors"],
                             "description": str(raw.get("description") or "").strip()}
    if not clean["name"]:
        errors.append("Give the collection a name.")
    elif len(clean["name"]) > 255:
        errors.append("The name may have at most 255 characters.")
    if not clean["movie"]:
        errors.append("Name the movie the participants watched.")
    elif len(clean["movie"]) > 255:
        errors.append("The movie title may have at most 255 characters.")
    year = str(raw.get("year") or "").strip()
    clean["year"] = None
    if year:
        if not year.isdigit() or not 1888 <= int(year) <= 2100:
            errors.append("The movie's year must be a year such as 1994.")
        else:
            clean["year"] = int(year)
    url = str(raw.get("dataset_url") or "").strip()
    if len(url) > DATASET_URL_MAX_LENGTH:
        errors.append(f"The dataset URL may have at most {DATASET_URL_MAX_LENGTH} characters.")
        url = ""
    if url and not re.match(r"^https?://[^\s/]+\.[^\s]+$", url):
        errors.append("The dataset URL must be a web address starting with https:// (or http://).")
    clean["dataset_url"] = url
    doi = str(raw.get("doi") or "").strip()
    for prefix in _DOI_PREFIXES:
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix):]
    if doi and (len(doi) > 255 or not re.match(r"^10\.\d{4,9}/\S+$", doi)):
        errors.append("The DOI must look like 10.1234/abcd (a doi.org link is fine too).")
    clean["doi"] = doi
    if len(clean["description"]) > 20000:
        errors.append("The description may have at most 20000 characters.")
    if len(clean["contributors"]) > 5000:
        errors.append("The contributors may have at most 5000 characters.")
    clean["license"] = raw.get("license") or "CC0-1.0"
    if clean["license"] not in LICENSES:
        errors.append(f"The license must be one of {', '.join(LICENSES)}.")
    clean["visibility"] = raw.get("visibility") or "public"
    if clean["visibility"] not in VISIBILITIES:
        errors.append("Visibility must be public or private.")
    clean["metadata"], meta_errors = validate_metadata(raw.get("metadata") or {})
    errors += [m if m.endswith(".") else m + "." for m in meta_errors]
    return clean, errors
