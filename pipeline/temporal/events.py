"""Movie annotations: BIDS-style events files (onset and duration in seconds of movie time, a label, an optional
amplitude), read with a message naming the line of every problem.

A problem of the whole file (not text, no header, a missing column, too many events) refuses it. A line that cannot
be read (a negative duration, an onset that is not a number, a missing label...) does not stop the reading: every
such line is collected, and :class:`BadLinesError` lists them (line numbers and why) with the valid events, so that
a curator can fix the file or import the valid lines with the bad ones skipped. Nothing here imports Dash or Flask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.temporal.parsing import TimeCourseError, decode_text, parse_number, plural, quoted, split_lines
from store.units import human_bytes

MAX_EVENTS = 200_000
MAX_EVENTS_BYTES = 64 * 1024**2  # far more than MAX_EVENTS lines need; stops a huge upload before it is decoded
MAX_LABEL_CHARS = 200
MAX_LISTED_BAD_LINES = 20  # bad lines a message names; the rest are counted
MAX_KEPT_BAD_LINES = 1000  # bad lines kept for the caller to list; the rest are counted


_MISSING = "n/a"  # what BIDS writes for a missing value


# --- events ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One annotated stretch of the movie.

    Parameters
    ----------
    onset : float
        Movie time in seconds at which it starts (>= 0).
    duration : float
        Seconds it lasts (>= 0; 0 for an instant).
    label : str
        What happens (BIDS ``trial_type``).
    amplitude : float
        Its strength for regressors; 1 unless the file says otherwise.
    """

    onset: float
    duration: float
    label: str
    amplitude: float = 1.0


def _column(header: list[str], line_name: str, *candidates: str) -> int | None:
    """Index of the first of ``candidates`` in ``header`` (case-insensitive), or None; refuses duplicates."""
    lowered = [h.lower() for h in header]
    for candidate in candidates:
        count = lowered.count(candidate)
        if count > 1:
            raise TimeCourseError(f"{line_name}: the header names the column {candidate} {count} times; keep one.")
        if count == 1:
            return lowered.index(candidate)
    return None


def _event_header(line: str, name: str) -> tuple[list[str], int, int, int, int | None]:
    """(header fields, onset, duration, label and amplitude column indices) from an events file's first line."""
    where = f"{name}, line 1"
    if not line.strip():
        raise TimeCourseError(
            f"{where}: the header row is empty; an events file starts with a tab-separated header "
            "naming onset, duration and trial_type (or label)."
        )
    header = [field.strip() for field in line.split("\t")]
    comma = len(header) == 1 and ("," in line or ";" in line)
    onset = _column(header, where, "onset")
    duration = _column(header, where, "duration")
    label = _column(header, where, "trial_type", "label")
    amplitude = _column(header, where, "amplitude", "value")
    missing = [
        what
        for what, index in (("onset", onset), ("duration", duration), ("trial_type (or label)", label))
        if index is None
    ]
    if missing:
        found = ", ".join(h for h in header if h) or "nothing"
        advice = (
            " The file looks comma-separated; save it as tab-separated values (.tsv)."
            if comma
            else " Name the columns in the first line, separated by tabs."
        )
        raise TimeCourseError(f"{where}: no {' or '.join(missing)} column (the header has {found}).{advice}")
    assert onset is not None and duration is not None and label is not None  # for type checkers; checked above
    return header, onset, duration, label, amplitude


@dataclass(frozen=True)
class BadLine:
    """A line of an events file that cannot be read: its number (the header is line 1) and why."""

    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


class BadLinesError(TimeCourseError):
    """An events file whose lines are readable except some; it carries what a caller needs to skip them.

    Attributes
    ----------
    name : str
        The file's name.
    bad_lines : list of BadLine
        The first :data:`MAX_KEPT_BAD_LINES` bad lines, in file order.
    n_bad : int
        How many lines are bad in all.
    events : list of Event
        The events of the valid lines, in file order (possibly none).
    """

    def __init__(self, name: str, bad_lines: list[BadLine], n_bad: int, events: list[Event]):
        self.name, self.bad_lines, self.n_bad, self.events = name, bad_lines, n_bad, events
        super().__init__(bad_lines_message(name, bad_lines, n_bad, len(events)))


def bad_lines_message(name: str, bad_lines: Sequence[BadLine], n_bad: int, n_valid: int) -> str:
    """What is wrong with an events file's lines, for the curator: every bad line up to
    :data:`MAX_LISTED_BAD_LINES` (the rest counted), and what can be done with the valid ones."""
    if n_valid:
        advice = (
            f" The file's other {plural(n_valid, 'event')} {'is' if n_valid == 1 else 'are'} valid: fix "
            + ("this line" if n_bad == 1 else "these lines")
            + ", or import the valid events with "
            + ("it" if n_bad == 1 else "them")
            + " skipped."
        )
    else:
        advice = " No line of the file holds a valid event."
    if n_bad == 1:
        return f"{name}, {bad_lines[0]}{advice}"
    listed = [str(line).removesuffix(".") for line in bad_lines[:MAX_LISTED_BAD_LINES]]
    more = n_bad - len(listed)
    if more > 0:
        listed.append(f"and {plural(more, 'more line')}")
    return f"{name}: {n_bad:,} lines cannot be read: " + "; ".join(listed) + "." + advice


class _LineProblem(Exception):
    """Why one line of an events file cannot be read (the reason, without file and line)."""


def _event_seconds(text: str, what: str) -> float:
    value = parse_number(text)
    if value is None or value < 0 or not math.isfinite(value):
        extra = " An event cannot end before it starts." if what == "duration" and value is not None else ""
        raise _LineProblem(f"the {what} must be a number of seconds >= 0, not {quoted(text)}.{extra}")
    return value


def _event_label(text: str, column: str) -> str:
    if not text or text == _MISSING:
        raise _LineProblem(f"the {column} is missing ({quoted(text)}): every event needs a label.")
    if len(text) > MAX_LABEL_CHARS:
        raise _LineProblem(
            f"the {column} has {len(text)} characters, more than {MAX_LABEL_CHARS}: use a shorter label."
        )
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text):
        raise _LineProblem(f"the {column} {quoted(text)} contains control characters: remove them.")
    return text


def _event_amplitude(text: str, column: str) -> float:
    if not text or text == _MISSING:
        return 1.0  # BIDS leaves a value out with n/a; an event without one counts fully
    value = parse_number(text)
    if value is None:
        raise _LineProblem(f"the {column} must be a number (or n/a), not {quoted(text)}.")
    return value


def _events_text(data: bytes | str, name: str) -> str:
    if len(data) > MAX_EVENTS_BYTES:
        raise TimeCourseError(
            f"{name}: the file is {human_bytes(len(data))}, more than the "
            f"{human_bytes(MAX_EVENTS_BYTES)} accepted for an events file."
        )
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    return decode_text(data, name, "an events file (tab-separated text)")


@dataclass(frozen=True)
class EventsFile:
    """An events file as read: its valid events, and its bad lines (the first :data:`MAX_KEPT_BAD_LINES`) with
    their total count."""

    events: list[Event]
    bad_lines: list[BadLine]
    n_bad: int


def parse_events(data: bytes | str, name: str) -> EventsFile:
    """Read an events TSV line by line, keeping the valid events and collecting the bad lines.

    Parameters and file format as for :func:`read_events`.

    Raises
    ------
    TimeCourseError
        For a problem of the whole file: not UTF-8 text, empty, a header without the required columns, more than
        :data:`MAX_EVENTS` event lines, or a header and no event line at all. Bad lines are returned, not raised.
    """
    lines = split_lines(_events_text(data, name))
    if not any(line.strip() for line in lines):
        raise TimeCourseError(
            f"{name}: the file is empty; an events file needs a tab-separated header naming onset, "
            "duration and trial_type (or label), then one line per event."
        )
    header, onset_i, duration_i, label_i, amplitude_i = _event_header(lines[0], name)
    label_column, amplitude_column = header[label_i], header[amplitude_i] if amplitude_i is not None else ""
    needed = max(i for i in (onset_i, duration_i, label_i, amplitude_i) if i is not None) + 1
    events: list[Event] = []
    bad: list[BadLine] = []
    n_bad = n_lines = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if n_lines == MAX_EVENTS:
            raise TimeCourseError(
                f"{name}, line {number}: more than {MAX_EVENTS:,} events; split the annotations into several files."
            )
        n_lines += 1
        fields = [field.strip() for field in line.split("\t")]
        try:
            if len(fields) < needed:
                raise _LineProblem(
                    f"{len(fields)} tab-separated fields, but the header (line 1) has {len(header)}: separate the "
                    "values with tabs and fill empty ones with n/a."
                )
            amplitude = 1.0 if amplitude_i is None else _event_amplitude(fields[amplitude_i], amplitude_column)
            events.append(
                Event(
                    onset=_event_seconds(fields[onset_i], "onset"),
                    duration=_event_seconds(fields[duration_i], "duration"),
                    label=_event_label(fields[label_i], label_column),
                    amplitude=amplitude,
                )
            )
        except _LineProblem as problem:
            n_bad += 1
            if len(bad) < MAX_KEPT_BAD_LINES:
                bad.append(BadLine(number, str(problem)))
    if not n_lines:
        raise TimeCourseError(f"{name}: the file has a header but no events; add one line per event below it.")
    return EventsFile(events, bad, n_bad)


def read_events(data: bytes | str, name: str) -> list[Event]:
    """Parse a BIDS-style events TSV of movie annotations.

    Parameters
    ----------
    data : bytes or str
        The file's contents; UTF-8 (a BOM is dropped), ``\\n`` or ``\\r\\n`` line ends. The first line is the
        tab-separated header. Columns (case-insensitive): ``onset`` and ``duration`` (seconds of movie time,
        required), ``trial_type`` or else ``label`` (required), ``amplitude`` or else ``value`` (optional; ``n/a``
        or empty means 1). Other columns are ignored; blank lines are skipped.
    name : str
        What the curator calls the file, for messages.

    Returns
    -------
    list of Event
        In file order.

    Raises
    ------
    BadLinesError
        When lines cannot be read: a row with fewer fields than the header, an onset or duration that is not a
        number >= 0 (``n/a`` included), a missing or ``n/a`` label, a label over :data:`MAX_LABEL_CHARS` characters
        or with control characters, an amplitude that is not a number. Its message lists every bad line (up to
        :data:`MAX_LISTED_BAD_LINES`), e.g. ``speech.tsv, line 7: the duration must be a number of seconds >= 0,
        not '-2'. ...``; it carries the valid events for a caller that skips the bad lines.
    TimeCourseError
        For a problem of the whole file (:func:`parse_events`).
    """
    parsed = parse_events(data, name)
    if parsed.n_bad:
        raise BadLinesError(name, parsed.bad_lines, parsed.n_bad, parsed.events)
    return parsed.events


def events_by_label(events: Sequence[Event]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Group events by label, as the regressor code takes them.

    Parameters
    ----------
    events : sequence of Event
        For example what :func:`read_events` returned.

    Returns
    -------
    dict
        Label -> ``(onsets, durations, amplitudes)``, three float64 arrays of equal length in the events' order;
        labels in order of first appearance.
    """
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.label, []).append(event)
    return {
        label: (
            np.array([e.onset for e in group], dtype=np.float64),
            np.array([e.duration for e in group], dtype=np.float64),
            np.array([e.amplitude for e in group], dtype=np.float64),
        )
        for label, group in grouped.items()
    }
