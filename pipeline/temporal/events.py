"""Movie annotations: BIDS-style events files (onset and duration in seconds of movie time, a label, an optional
amplitude), read with a message naming the line of every problem. Nothing here imports Dash or Flask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.temporal.timecourses import _bad_token, _decode, _lines
from pipeline.temporal.timing import TimeCourseError, _parse_number
from store.units import human_bytes

MAX_EVENTS = 200_000
MAX_EVENTS_BYTES = 64 * 1024**2  # far more than MAX_EVENTS lines need; stops a huge upload before it is decoded
MAX_LABEL_CHARS = 200


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


def _event_seconds(text: str, where: str, what: str) -> float:
    value = _parse_number(text)
    if value is None or value < 0 or not math.isfinite(value):
        raise TimeCourseError(f"{where}: the {what} must be a number of seconds >= 0, not {_bad_token(text)}.")
    return value


def _event_label(text: str, where: str, column: str) -> str:
    if not text or text == _MISSING:
        raise TimeCourseError(f"{where}: the {column} is missing ({_bad_token(text)}); every event needs a label.")
    if len(text) > MAX_LABEL_CHARS:
        raise TimeCourseError(
            f"{where}: the {column} has {len(text)} characters, more than {MAX_LABEL_CHARS}; use a shorter label."
        )
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text):
        raise TimeCourseError(f"{where}: the {column} {_bad_token(text)} contains control characters; remove them.")
    return text


def _event_amplitude(text: str, where: str, column: str) -> float:
    if not text or text == _MISSING:
        return 1.0  # BIDS leaves a value out with n/a; an event without one counts fully
    value = _parse_number(text)
    if value is None:
        raise TimeCourseError(f"{where}: the {column} must be a number (or n/a), not {_bad_token(text)}.")
    return value


def _events_text(data: bytes | str, name: str) -> str:
    if len(data) > MAX_EVENTS_BYTES:
        raise TimeCourseError(
            f"{name}: the file is {human_bytes(len(data))}, more than the "
            f"{human_bytes(MAX_EVENTS_BYTES)} accepted for an events file."
        )
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    return _decode(data, name, "an events file (tab-separated text)")


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
    TimeCourseError
        For an empty file, a missing column, a row with fewer fields than the header, an onset or duration that is
        not a number >= 0 (``n/a`` included), a missing or ``n/a`` label, a label over :data:`MAX_LABEL_CHARS`
        characters or with control characters, an amplitude that is not a number, or more than
        :data:`MAX_EVENTS` events. Messages give the line (the header is line 1), e.g.
        ``speech.tsv, line 7: the duration must be a number of seconds >= 0, not '-2'.``
    """
    lines = _lines(_events_text(data, name))
    if not any(line.strip() for line in lines):
        raise TimeCourseError(
            f"{name}: the file is empty; an events file needs a tab-separated header naming onset, "
            "duration and trial_type (or label), then one line per event."
        )
    header, onset_i, duration_i, label_i, amplitude_i = _event_header(lines[0], name)
    label_column, amplitude_column = header[label_i], header[amplitude_i] if amplitude_i is not None else ""
    needed = max(i for i in (onset_i, duration_i, label_i, amplitude_i) if i is not None) + 1
    events: list[Event] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) < needed:
            raise TimeCourseError(
                f"{where}: {len(fields)} tab-separated fields, but the header (line 1) has "
                f"{len(header)}; separate the values with tabs and fill empty ones with n/a."
            )
        if len(events) == MAX_EVENTS:
            raise TimeCourseError(
                f"{where}: more than {MAX_EVENTS:,} events; split the annotations into several files."
            )
        amplitude = 1.0 if amplitude_i is None else _event_amplitude(fields[amplitude_i], where, amplitude_column)
        events.append(
            Event(
                onset=_event_seconds(fields[onset_i], where, "onset"),
                duration=_event_seconds(fields[duration_i], where, "duration"),
                label=_event_label(fields[label_i], where, label_column),
                amplitude=amplitude,
            )
        )
    if not events:
        raise TimeCourseError(f"{name}: the file has a header but no events; add one line per event below it.")
    return events


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
