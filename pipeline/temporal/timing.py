"""The movie timing of a collection: which movie time each row of its time courses shows.

A collection's :class:`Timing` is its TR, its runs in the order they were concatenated (each run's movie start and
volumes; runs may leave gaps or overlap) and how many subjects a group temporal-concatenation ICA stacked. Everything
refused raises :class:`TimeCourseError`, whose message says what is wrong with numbers and what to do. Nothing here
imports Dash or Flask.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.temporal.parsing import INTEGER, TimeCourseError, parse_number, plural

MAX_TR_S = 60.0
MAX_SUBJECTS = 1000
MAX_ROWS = 10_000_000


# --- timing ---------------------------------------------------------------------------------------------------


def format_movie_time(seconds: float) -> str:
    """Movie time as ``h:mm:ss``, rounded to the nearest second.

    Parameters
    ----------
    seconds : float
        Seconds of movie time; a negative value gets a leading ``-``.

    Returns
    -------
    str
        For example ``"0:15:00"`` for 900 s and ``"1:02:03"`` for 3723.4 s.

    Raises
    ------
    TimeCourseError
        When ``seconds`` is NaN or infinite.
    """
    if not math.isfinite(seconds):
        raise TimeCourseError(f"A movie time must be a finite number of seconds, not {seconds!r}.")
    sign = "-" if seconds < 0 else ""
    total = int(round(abs(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


def _num(value: float) -> str:
    """A number for messages: ``2`` rather than ``2.0``, and no exponent for movie times in seconds."""
    return f"{value:.10g}"


def _run_problem(start_s: float, volumes: int) -> str | None:
    """What is wrong with a run's numbers (as a message tail), or None. Shared by :meth:`Timing.parse`, which adds
    the run's number and text, and by the dataclasses, which check objects built directly."""
    if not math.isfinite(start_s) or start_s < 0:
        return f"the movie time of its first volume must be a number of seconds >= 0, not {_num(start_s)}."
    if volumes < 1:
        return f"the number of volumes must be a whole number >= 1, not {volumes}."
    return None


@dataclass(frozen=True)
class Run:
    """One run as it was concatenated: the movie time of its first kept volume and its number of volumes.

    Parameters
    ----------
    start_s : float
        Movie time in seconds at which the run's first kept volume was recorded (>= 0).
    volumes : int
        Number of volumes the run contributes to the time courses (>= 1).

    Raises
    ------
    TimeCourseError
        When either number is out of range or of the wrong type.
    """

    start_s: float
    volumes: int

    def __post_init__(self) -> None:
        # Coerce so that Run(0, 10) == Run(0.0, 10) and the JSON round trip gives equal objects.
        if isinstance(self.start_s, bool) or not isinstance(self.start_s, int | float | np.number):
            raise TimeCourseError(f"A run's start must be a number of seconds, not {self.start_s!r}.")
        if isinstance(self.volumes, bool) or not isinstance(self.volumes, int | np.integer):
            raise TimeCourseError(f"A run's number of volumes must be a whole number, not {self.volumes!r}.")
        object.__setattr__(self, "start_s", float(self.start_s))
        object.__setattr__(self, "volumes", int(self.volumes))
        problem = _run_problem(self.start_s, self.volumes)
        if problem:
            raise TimeCourseError(f"Run {_num(self.start_s)}:{self.volumes}: {problem}")


def _as_float(value: Any) -> float | None:
    """A finite float from a number or numeric text, else None (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.number):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return parse_number(value)
    return None


def _as_int(value: Any) -> int | None:
    """A whole number from an int, an integral float (JSON may store 450.0) or digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _split_runs_text(text: str) -> list[str]:
    # Commas as documented; semicolons and line breaks too, since people paste lists from notes.
    items = [item.strip() for item in re.split(r"[,;\n]", text)]
    while items and not items[-1]:  # a trailing comma is a slip, not an empty run
        items.pop()
    return items


def _parse_run(index: int, item: Any) -> Run:
    """One run from ``"START:N"`` text, a pair or a :class:`Run`; ``index`` is 1-based, for the message."""
    if isinstance(item, Run):
        return item
    if isinstance(item, str):
        text = item.strip()
        if text.count(":") > 1:
            raise TimeCourseError(
                f'Run {index} ("{text}"): write the movie time in seconds (e.g. 902.5:451), not '
                "as h:mm:ss; the only colon separates the start from the number of volumes."
            )
        if ":" not in text:
            raise TimeCourseError(
                f'Run {index} ("{text}"): write it as START:N, the movie time in seconds of its '
                "first kept volume and its number of volumes, e.g. 0:451."
            )
        start_text, volumes_text = (part.strip() for part in text.split(":"))
        start, volumes, shown = parse_number(start_text), _as_int(volumes_text), text
    elif isinstance(item, Sequence) and len(item) == 2:
        start, volumes = _as_float(item[0]), _as_int(item[1])
        shown = f"{item[0]}:{item[1]}"
    else:
        raise TimeCourseError(f"Run {index} ({item!r}): give each run as START:N or as a pair [start, volumes].")
    if start is None:
        raise TimeCourseError(f'Run {index} ("{shown}"): the movie time must be a number of seconds.')
    if volumes is None:
        raise TimeCourseError(f'Run {index} ("{shown}"): the number of volumes must be a whole number >= 1.')
    problem = _run_problem(start, volumes)
    if problem:
        raise TimeCourseError(f'Run {index} ("{shown}"): {problem}')
    return Run(start, volumes)


@dataclass(frozen=True)
class Timing:
    """Which movie time each row of a collection's time courses shows.

    Parameters
    ----------
    tr : float
        Repetition time in seconds (0 < TR <= 60).
    runs : tuple of Run
        The runs in the order they were concatenated (at least one). Gaps and overlaps in movie time between runs
        are allowed: studyforrest's runs, for one, overlap by a few seconds.
    subjects : int
        How many subjects a temporal-concatenation group ICA stacked (1-1000); each subject's block of rows
        repeats the runs.

    Raises
    ------
    TimeCourseError
        When a number is out of range or the timing gives more than :data:`MAX_ROWS` rows. Use :meth:`parse` for
        text from the form or the CLI, which says which run is wrong.
    """

    tr: float
    runs: tuple[Run, ...]
    subjects: int = 1

    def __post_init__(self) -> None:
        tr = _as_float(self.tr) if not isinstance(self.tr, str) else None
        if tr is None or not 0 < tr <= MAX_TR_S:
            raise TimeCourseError(
                f"The TR must be a number of seconds greater than 0 and at most {_num(MAX_TR_S)}, not {self.tr!r}."
            )
        subjects = _as_int(self.subjects) if not isinstance(self.subjects, str) else None
        if subjects is None or not 1 <= subjects <= MAX_SUBJECTS:
            raise TimeCourseError(
                f"The number of subjects must be a whole number from 1 to {MAX_SUBJECTS}, not {self.subjects!r}."
            )
        runs = tuple(self.runs)
        if not runs:
            raise TimeCourseError("The timing needs at least one run (START:N, e.g. 0:451).")
        if not all(isinstance(run, Run) for run in runs):
            raise TimeCourseError("The timing's runs must be Run objects; use Timing.parse for text or pairs.")
        object.__setattr__(self, "tr", tr)
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "runs", runs)
        if self.rows > MAX_ROWS:
            raise TimeCourseError(
                f"The timing gives {self.rows:,} rows ({self.rows_per_subject:,} volumes per subject "
                f"x {self.subjects} subjects), more than the {MAX_ROWS:,} accepted; check the "
                "runs' numbers of volumes and the number of subjects."
            )

    @classmethod
    def parse(cls, tr: Any, runs: Any, subjects: Any = 1) -> Timing:
        """A timing from what the form or the CLI (``--tr``, ``--runs``, ``--subjects``) received.

        Parameters
        ----------
        tr : str or float
            Repetition time in seconds, as a number or as text (``"2"``, ``"0.8"``).
        runs : str or sequence
            ``"START:N[,START:N...]"`` (START the movie time in seconds of the run's first kept volume, a decimal;
            N its number of volumes, a positive whole number; semicolons or line breaks also separate runs), or a
            sequence of ``(start, volumes)`` pairs or :class:`Run` objects.
        subjects : str or int
            Number of subjects concatenated, 1 to :data:`MAX_SUBJECTS`.

        Returns
        -------
        Timing
            The checked timing.

        Raises
        ------
        TimeCourseError
            For a TR that is not a number of seconds in (0, 60], no runs, a run that is not START:N with
            START >= 0 and N >= 1 (the message names the run by number and text, e.g. ``Run 2 ("abc:10"): the
            movie time must be a number of seconds.``), a number of subjects outside 1-1000, or more than
            :data:`MAX_ROWS` rows in all.
        """
        tr_value = _as_float(tr)
        if tr_value is None or not 0 < tr_value <= MAX_TR_S:
            shown = f'"{tr.strip()}"' if isinstance(tr, str) else repr(tr)
            raise TimeCourseError(
                f"The TR must be a number of seconds greater than 0 and at most {_num(MAX_TR_S)}, not {shown}."
            )
        subjects_value = _as_int(subjects)
        if subjects_value is None or not 1 <= subjects_value <= MAX_SUBJECTS:
            shown = f'"{subjects.strip()}"' if isinstance(subjects, str) else repr(subjects)
            raise TimeCourseError(
                f"The number of subjects must be a whole number from 1 to {MAX_SUBJECTS}, not {shown}."
            )
        if isinstance(runs, str):
            items: Sequence[Any] = _split_runs_text(runs)
        elif isinstance(runs, Sequence | np.ndarray):
            items = runs.tolist() if isinstance(runs, np.ndarray) else runs
        else:
            raise TimeCourseError(
                f"The runs must be text such as 0:451,886:441 or a list of [start, volumes] "
                f"pairs, not {type(runs).__name__}."
            )
        if not items:
            raise TimeCourseError(
                "The timing needs at least one run: give START:N for each run in the order they "
                "were concatenated, e.g. 0:451,886:441."
            )
        parsed = tuple(_parse_run(i, item) for i, item in enumerate(items, start=1))
        return cls(tr_value, parsed, subjects_value)

    @classmethod
    def from_dict(cls, d: Any) -> Timing:
        """The timing stored by :meth:`to_dict`, checked again (stored JSON may have been edited).

        Parameters
        ----------
        d : dict
            ``{"tr": float, "runs": [[start_s, volumes], ...], "subjects": int}``; ``subjects`` may be missing
            (1).

        Returns
        -------
        Timing

        Raises
        ------
        TimeCourseError
            When ``d`` is not a dict, lacks ``tr`` or ``runs``, or holds values :meth:`parse` refuses.
        """
        if not isinstance(d, dict):
            raise TimeCourseError(f"A stored timing must be a JSON object, not {type(d).__name__}.")
        missing = [key for key in ("tr", "runs") if key not in d]
        if missing:
            raise TimeCourseError(
                f"The stored timing lacks {' and '.join(missing)}; set the collection's timing again."
            )
        if isinstance(d["runs"], str):  # stored JSON holds pairs; text here means someone wrote it by hand
            raise TimeCourseError("The stored timing's runs must be a list of [start_s, volumes] pairs.")
        return cls.parse(d["tr"], d["runs"], d.get("subjects", 1))

    def to_dict(self) -> dict:
        """The timing as JSON-ready data, read back by :meth:`from_dict`.

        Returns
        -------
        dict
            ``{"tr": float, "runs": [[start_s, volumes], ...], "subjects": int}`` with plain Python numbers.
        """
        return {"tr": self.tr, "runs": [[run.start_s, run.volumes] for run in self.runs], "subjects": self.subjects}

    @property
    def run_lengths(self) -> tuple[int, ...]:
        """Number of volumes of each run, in concatenation order."""
        return tuple(run.volumes for run in self.runs)

    @property
    def rows_per_subject(self) -> int:
        """Volumes per subject: the sum of the runs' volumes."""
        return sum(self.run_lengths)

    @property
    def rows(self) -> int:
        """Rows of the time courses: volumes per subject x subjects."""
        return self.rows_per_subject * self.subjects

    def run_end(self, index: int) -> float:
        """Movie time at which run ``index`` (0-based) ends: its start plus volumes x TR."""
        run = self.runs[index]
        return run.start_s + run.volumes * self.tr

    @property
    def start_s(self) -> float:
        """Earliest movie time any run covers."""
        return min(run.start_s for run in self.runs)

    @property
    def end_s(self) -> float:
        """Latest movie time any run covers (the end of its last volume)."""
        return max(self.run_end(i) for i in range(len(self.runs)))

    @property
    def duration_s(self) -> float:
        """Movie time span covered, from the earliest run start to the latest run end (gaps included, overlaps
        counted once)."""
        return self.end_s - self.start_s

    def movie_times(self) -> np.ndarray:
        """Movie time in seconds of each row.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(rows,)``: for each subject block, run after run, ``start_s + TR * i`` for volume
            ``i`` of the run.
        """
        per_subject = np.concatenate(
            [run.start_s + self.tr * np.arange(run.volumes, dtype=np.float64) for run in self.runs]
        )
        return np.tile(per_subject, self.subjects)

    def run_index(self) -> np.ndarray:
        """Run (0-based, in concatenation order) of each row.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(rows,)``.
        """
        per_subject = np.repeat(np.arange(len(self.runs), dtype=np.int64), self.run_lengths)
        return np.tile(per_subject, self.subjects)

    def subject_index(self) -> np.ndarray:
        """Subject (0-based, in concatenation order) of each row.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(rows,)``.
        """
        return np.repeat(np.arange(self.subjects, dtype=np.int64), self.rows_per_subject)

    def _junction_notes(self) -> list[str]:
        """Gaps and overlaps between consecutive runs, so a curator can spot a mistyped start."""
        notes = []
        for i in range(1, len(self.runs)):
            step = self.runs[i].start_s - self.run_end(i - 1)
            if abs(step) < 1e-6:
                continue
            if step < 0:
                notes.append(f"run {i + 1} starts {_num(round(-step, 3))} s before run {i} ends")
            else:
                notes.append(f"{_num(round(step, 3))} s gap before run {i + 1}")
        return notes

    def describe(self) -> str:
        """A one-line summary for the form to show next to the timing.

        Returns
        -------
        str
            For example ``"3 runs, 450 volumes per subject x 2 subjects = 900 rows; movie time 0:00:00-0:15:00
            (TR 2 s)"``, followed by the gaps and overlaps between runs, if any (the first three).
        """
        runs = plural(len(self.runs), "run")
        if self.subjects == 1:
            rows = plural(self.rows, "volume")
        else:
            rows = f"{self.rows_per_subject:,} volumes per subject x {self.subjects} subjects = {self.rows:,} rows"
        text = (
            f"{runs}, {rows}; movie time {format_movie_time(self.start_s)}-{format_movie_time(self.end_s)} "
            f"(TR {_num(self.tr)} s)"
        )
        notes = self._junction_notes()
        if notes:
            text += "; " + "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "")
        return text
