"""The password rules: length limits, refusing the passwords guessers try first, and the hash (scrypt)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from werkzeug.security import generate_password_hash

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024  # scrypt of a megabyte-long "password" would be a cheap way to burn CPU


def hash_password(password: str) -> str:
    """The scrypt hash of ``password``; ValueError when it is shorter than the minimum."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"the password must have at least {PASSWORD_MIN_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")


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


def check_new_password(password: str, repeat: str, email: str = "") -> list[str]:
    """Messages about a new password (empty when it is acceptable): length, not the address, not guessable,
    typed the same twice."""
    errors = []
    if len(password or "") < PASSWORD_MIN_LENGTH:
        errors.append(f"The password needs at least {PASSWORD_MIN_LENGTH} characters.")
    elif len(password) > PASSWORD_MAX_LENGTH:
        errors.append(f"The password may have at most {PASSWORD_MAX_LENGTH} characters.")
    elif email and password.strip().lower() in (email, email.split("@")[0]):
        errors.append("The password must not be your email address.")
    elif _guessable(password):
        errors.append(
            "This password is among the first that attackers try. Choose a less common one, "
            "for example a few unrelated words."
        )
    if password != repeat:
        errors.append("The two passwords differ.")
    return errors
