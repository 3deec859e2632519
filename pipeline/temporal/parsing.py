"""Reading the text files of the time package: numbers as curators type them, UTF-8 text, line numbers and quoted
tokens for messages, and the error every refusal raises. Shared by timings (``timing.py``), time-course files
(``timecourses.py``) and events files (``events.py``). Nothing here imports Dash or Flask.
"""

from __future__ import annotations

import re

# A plain decimal, optionally with an exponent. Python's float() would also take "nan", "inf" and "1_000", which
# are not numbers a curator means to type.
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
INTEGER = re.compile(r"\+?\d+")
TOKEN_CHARS = 40  # a token quoted in a message is cut to this many characters


class TimeCourseError(ValueError):
    """Time courses, a timing or an events file that cannot be used; the message names the file and says why."""


def parse_number(text: str) -> float | None:
    """``text`` (surrounding spaces ignored) as a float when it is a plain decimal number (:data:`NUMBER`), else
    None: no ``nan``, ``inf``, underscores or hexadecimal."""
    text = text.strip()
    return float(text) if NUMBER.fullmatch(text) else None


def decode_text(data: bytes, name: str, what: str) -> str:
    """A file's bytes as text: UTF-8, a leading BOM dropped.

    Raises
    ------
    TimeCourseError
        For gzip-compressed data, or bytes that are not UTF-8 (the message gives the line of the first bad byte);
        ``what`` says what the file should have been, e.g. ``"an events file (tab-separated text)"``.
    """
    if data[:2] == b"\x1f\x8b":
        raise TimeCourseError(f"{name}: the file is gzip-compressed; upload the plain-text {what} uncompressed.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TimeCourseError(
            f"{name}, line {line}: not plain text (byte 0x{data[exc.start]:02x} is not UTF-8); is this really {what}?"
        ) from None
    return text.removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as an editor numbers them: split on ``\\n`` only, a trailing ``\\r`` dropped.
    (``str.splitlines()`` also breaks at form feeds and other separators, which would make the line numbers in
    messages disagree with the curator's editor.)"""
    return [line.removesuffix("\r") for line in text.split("\n")]


def quoted(token: str) -> str:
    """``token`` quoted for a message, cut to :data:`TOKEN_CHARS` characters."""
    shown = token if len(token) <= TOKEN_CHARS else token[: TOKEN_CHARS - 3] + "..."
    return repr(shown)


def plural(n: int, word: str) -> str:
    """``"1 run"``, ``"2 runs"``, ``"1,000 volumes"``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"
