"""Time courses of 4D maps, the movie timing of a collection and movie annotations (events).

A 4D map can come with the time course of each of its volumes: FSL MELODIC writes ``melodic_mix`` (one row per
analysed volume, one column per component) and ``melodic_FTmix`` (their power spectra) next to
``melodic_IC.nii.gz``; any other 4D map ``X.nii.gz`` can bring ``X_timecourses.tsv`` (a header row, one column
per volume, one row per time point). A collection's :class:`Timing` says which movie time each row shows: the TR,
the runs in the order they were concatenated, and how many subjects a group temporal-concatenation ICA stacked.
Events files (BIDS style) annotate the movie in seconds of movie time.

Everything refused raises :class:`TimeCourseError`, whose message names the file (and the line for text files),
says what is wrong with numbers and what to do. Nothing here imports Dash or Flask.
"""
from __future__ import annotations

import io
import math
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store.units import human_bytes

MAX_TR_S = 60.0
MAX_SUBJECTS = 1000
MAX_ROWS = 10_000_000
MAX_TEXT_BYTES = 200 * 1024**2  # a time-course file; 200 MB is about 15 million numbers in MELODIC's format
MAX_EVENTS = 200_000
MAX_EVENTS_BYTES = 64 * 1024**2  # far more than MAX_EVENTS lines need; stops a huge upload before it is decoded
MAX_LABEL_CHARS = 200

MIX_NAMES = ("melodic_mix", "melodic_mix.txt")
FTMIX_NAMES = ("melodic_FTmix", "melodic_FTmix.txt")
TABLE_SUFFIX = "_timecourses.tsv"
MELODIC_MAP_STEM = "melodic_IC"

# A plain decimal, optionally with an exponent. Python's float() would also take "nan", "inf" and "1_000", which
# are not numbers a curator means to type.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"\+?\d+")
_MISSING = "n/a"  # what BIDS writes for a missing value


class TimeCourseError(ValueError):
    """Time courses, a timing or an events file that cannot be used; the message names the file and says why."""


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


def _parse_number(text: str) -> float | None:
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def _as_float(value: Any) -> float | None:
    """A finite float from a number or numeric text, else None (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.number):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return _parse_number(value)
    return None


def _as_int(value: Any) -> int | None:
    """A whole number from an int, an integral float (JSON may store 450.0) or digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
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
            raise TimeCourseError(f'Run {index} ("{text}"): write the movie time in seconds (e.g. 902.5:451), not '
                                  "as h:mm:ss; the only colon separates the start from the number of volumes.")
        if ":" not in text:
            raise TimeCourseError(f'Run {index} ("{text}"): write it as START:N, the movie time in seconds of its '
                                  "first kept volume and its number of volumes, e.g. 0:451.")
        start_text, volumes_text = (part.strip() for part in text.split(":"))
        start, volumes, shown = _parse_number(start_text), _as_int(volumes_text), text
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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


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
            raise TimeCourseError(f"The TR must be a number of seconds greater than 0 and at most {_num(MAX_TR_S)}, "
                                  f"not {self.tr!r}.")
        subjects = _as_int(self.subjects) if not isinstance(self.subjects, str) else None
        if subjects is None or not 1 <= subjects <= MAX_SUBJECTS:
            raise TimeCourseError(f"The number of subjects must be a whole number from 1 to {MAX_SUBJECTS}, "
                                  f"not {self.subjects!r}.")
        runs = tuple(self.runs)
        if not runs:
            raise TimeCourseError("The timing needs at least one run (START:N, e.g. 0:451).")
        if not all(isinstance(run, Run) for run in runs):
            raise TimeCourseError("The timing's runs must be Run objects; use Timing.parse for text or pairs.")
        object.__setattr__(self, "tr", tr)
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "runs", runs)
        if self.rows > MAX_ROWS:
            raise TimeCourseError(f"The timing gives {self.rows:,} rows ({self.rows_per_subject:,} volumes per subject "
                                  f"x {self.subjects} subjects), more than the {MAX_ROWS:,} accepted; check the "
                                  "runs' numbers of volumes and the number of subjects.")

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
            raise TimeCourseError(f"The TR must be a number of seconds greater than 0 and at most {_num(MAX_TR_S)}, "
                                  f"not {shown}.")
        subjects_value = _as_int(subjects)
        if subjects_value is None or not 1 <= subjects_value <= MAX_SUBJECTS:
            shown = f'"{subjects.strip()}"' if isinstance(subjects, str) else repr(subjects)
            raise TimeCourseError(f"The number of subjects must be a whole number from 1 to {MAX_SUBJECTS}, "
                                  f"not {shown}.")
        if isinstance(runs, str):
            items: Sequence[Any] = _split_runs_text(runs)
        elif isinstance(runs, Sequence | np.ndarray):
            items = runs.tolist() if isinstance(runs, np.ndarray) else runs
        else:
            raise TimeCourseError(f"The runs must be text such as 0:451,886:441 or a list of [start, volumes] "
                                  f"pairs, not {type(runs).__name__}.")
        if not items:
            raise TimeCourseError("The timing needs at least one run: give START:N for each run in the order they "
                                  "were concatenated, e.g. 0:451,886:441.")
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
            raise TimeCourseError(f"The stored timing lacks {' and '.join(missing)}; set the collection's timing "
                                  "again.")
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
        per_subject = np.concatenate([run.start_s + self.tr * np.arange(run.volumes, dtype=np.float64)
                                      for run in self.runs])
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
        runs = _plural(len(self.runs), "run")
        if self.subjects == 1:
            rows = _plural(self.rows, "volume")
        else:
            rows = f"{self.rows_per_subject:,} volumes per subject x {self.subjects} subjects = {self.rows:,} rows"
        text = (f"{runs}, {rows}; movie time {format_movie_time(self.start_s)}-{format_movie_time(self.end_s)} "
                f"(TR {_num(self.tr)} s)")
        notes = self._junction_notes()
        if notes:
            text += "; " + "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "")
        return text


# --- file names and matching ----------------------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str]:
    """(folder, base name) of an upload member name, with ``\\`` read as ``/`` (Windows zip tools write it)."""
    folder, base = posixpath.split(name.replace("\\", "/"))
    return posixpath.normpath(folder) if folder else "", base


def _ignored(name: str) -> bool:
    # The same rule as pipeline.archives: __MACOSX folders and dot-files are never extracted, so never matched.
    parts = name.replace("\\", "/").split("/")
    return any(p == "__MACOSX" or p.startswith(".") for p in parts if p)


def _kind(base: str) -> str | None:
    """'mix', 'ftmix' or 'table' for a time-course file's base name, else None."""
    if base in MIX_NAMES:
        return "mix"
    if base in FTMIX_NAMES:
        return "ftmix"
    if base.lower().endswith(TABLE_SUFFIX) and len(base) > len(TABLE_SUFFIX):
        return "table"
    return None


def is_timecourse_name(name: str) -> bool:
    """Whether a file name is one of the time-course files this module reads.

    These names have no NIfTI ending, so the upload panel and the archive reader use this to keep them.

    Parameters
    ----------
    name : str
        A file name or a path inside an upload; only the base name counts.

    Returns
    -------
    bool
        True for ``melodic_mix`` and ``melodic_FTmix`` (MELODIC's exact names, also with ``.txt``) and for
        ``<map name>_timecourses.tsv`` (ending case-insensitive).
    """
    return _kind(_split_name(name)[1]) is not None


def read_timecourse_file(path: Path, name: str) -> tuple[str, np.ndarray]:
    """Read any time-course file by its name: ``("mix", rows x components)`` for ``melodic_mix`` and
    ``<map>_timecourses.tsv``, ``("ftmix", frequencies x components)`` for ``melodic_FTmix``.

    Raises
    ------
    TimeCourseError
        The name is not a time-course file's, or the file cannot be read (see the readers).
    """
    kind = _kind(_split_name(name)[1])
    if kind == "mix":
        return "mix", read_melodic_mix(path, name)
    if kind == "ftmix":
        return "ftmix", read_ftmix(path, name)
    if kind == "table":
        return "mix", read_timecourse_table(path, name)
    raise TimeCourseError(f"{name}: not a time-course file (melodic_mix, melodic_FTmix or <map>_timecourses.tsv)")


def _map_stem(base: str) -> str | None:
    low = base.lower()
    for suffix in (".nii.gz", ".nii"):
        if low.endswith(suffix):
            return base[: -len(suffix)]
    return None


def _match(names: Sequence[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Maps -> their time-course files, and the time-course files left over (see the public functions)."""
    maps: dict[tuple[str, str], list[str]] = {}  # (folder, stem) -> map names (x.nii and x.nii.gz both)
    for name in names:
        if _ignored(name):
            continue
        folder, base = _split_name(name)
        stem = _map_stem(base)
        if stem is not None:
            maps.setdefault((folder, stem), []).append(name)
    matched: dict[str, dict[str, str]] = {}
    unmatched: list[str] = []
    for name in names:
        if _ignored(name):
            continue
        folder, base = _split_name(name)
        kind = _kind(base)
        if kind is None:
            continue
        stem = MELODIC_MAP_STEM if kind in ("mix", "ftmix") else base[: -len(TABLE_SUFFIX)]
        slot = "ftmix" if kind == "ftmix" else "mix"  # a table holds the time courses, as melodic_mix does
        owners = maps.get((folder, stem), [])
        # The first file for a slot wins; a second (melodic_mix next to melodic_mix.txt) is reported, not used.
        if not owners or slot in matched.get(owners[0], {}):
            unmatched.append(name)
            continue
        for owner in owners:
            matched.setdefault(owner, {})[slot] = name
    ordered = {name: matched[name] for name in names if name in matched}  # the maps in upload order
    return ordered, unmatched


def match_timecourse_files(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Pair the time-course files of an upload with the maps they belong to.

    ``melodic_mix`` and ``melodic_FTmix`` (also with ``.txt``) belong to ``melodic_IC.nii`` or
    ``melodic_IC.nii.gz`` in the same folder (MELODIC's ``.ica`` folder at any depth of an archive; for files
    uploaded one by one, the top level). ``X_timecourses.tsv`` belongs to ``X.nii`` or ``X.nii.gz`` in the same
    folder. ``__MACOSX`` folders and dot-files are ignored, as the archive reader ignores them.

    Parameters
    ----------
    names : sequence of str
        Names of all files of the upload: paths inside an archive (``"sub/group.ica/melodic_IC.nii.gz"``,
        also with the archive's name in front) or plain uploaded names. Other files may be among them.

    Returns
    -------
    dict
        Map name (as given) -> ``{"mix": <time courses>, "ftmix": <spectra>}``, each key present only when its
        file is: ``"mix"`` holds ``melodic_mix`` or ``X_timecourses.tsv``, ``"ftmix"`` holds ``melodic_FTmix``.
        Maps without time-course files are left out. Where a folder has both ``X.nii`` and ``X.nii.gz``, both get
        the files. Time-course files that went unused are listed by :func:`unmatched_timecourse_files`.
    """
    return _match(names)[0]


def unmatched_timecourse_files(names: Sequence[str]) -> list[str]:
    """The time-course files of an upload that :func:`match_timecourse_files` could not use.

    Parameters
    ----------
    names : sequence of str
        As for :func:`match_timecourse_files`.

    Returns
    -------
    list of str
        In upload order: time-course files with no map of theirs in the same folder (``melodic_mix`` without
        ``melodic_IC.nii.gz``, ``X_timecourses.tsv`` without ``X.nii.gz``), and second files for a map that
        already has one of that kind (``melodic_mix.txt`` next to ``melodic_mix``).
    """
    return _match(names)[1]


# --- reading time-course files --------------------------------------------------------------------------------


def _read_text(path: Path, name: str, limit: int, what: str) -> str:
    """A file's text: UTF-8 with an optional BOM, checked for size and emptiness before it is parsed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TimeCourseError(f"{name}: file not found") from None
    if size > limit:
        raise TimeCourseError(f"{name}: the file is {human_bytes(size)}, more than the {human_bytes(limit)} "
                              f"accepted for {what}; upload fewer components or a shorter recording.")
    data = path.read_bytes()
    return _decode(data, name, what)


def _decode(data: bytes, name: str, what: str) -> str:
    if data[:2] == b"\x1f\x8b":
        raise TimeCourseError(f"{name}: the file is gzip-compressed; upload the plain-text {what} uncompressed.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TimeCourseError(f"{name}, line {line}: not plain text (byte 0x{data[exc.start]:02x} is not UTF-8); "
                              f"is this really {what}?") from None
    return text.removeprefix("\ufeff")


def _lines(text: str) -> list[str]:
    # Split on \n only (then drop \r): str.splitlines() also breaks at form feeds and other separators, which would
    # make the line numbers in messages disagree with the curator's editor.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _bad_token(token: str) -> str:
    shown = token if len(token) <= 40 else token[:37] + "..."
    return repr(shown)


def _diagnose_matrix(lines: list[str], first_line: int, name: str, delimiter: str | None,
                     columns: list[str] | None, hint: str) -> TimeCourseError | None:
    """The first problem of a numeric table, with its line and column, or None if none is found.

    Only run once NumPy's fast parser has refused the text, to say where and why. ``first_line`` is the 1-based
    line number of ``lines[0]``; ``columns`` holds the header's names (for a TSV, whose rows must match it) or
    None (rows must match the first row)."""
    expected = None if columns is None else (len(columns), "the header (line 1) names")
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        tokens = line.split(delimiter)  # None splits on runs of whitespace, as MELODIC's files need
        if expected is None:
            expected = (len(tokens), f"line {number} has")
        elif len(tokens) != expected[0]:
            return TimeCourseError(f"{name}, line {number}: {_plural(len(tokens), 'value')}, but {expected[1]} "
                                   f"{expected[0]}; every row needs the same number of values ({hint}).")
        try:
            list(map(float, tokens))  # fast for the many good lines; the regex below only runs on a bad one
        except ValueError:
            pass
        else:
            continue
        for column, token in enumerate(tokens, start=1):
            if _NUMBER.fullmatch(token.strip()) is None and token.strip().lower() not in ("nan", "inf", "-inf"):
                header = f" ({columns[column - 1]})" if columns and column <= len(columns) else ""
                return TimeCourseError(f"{name}, line {number}, column {column}{header}: {_bad_token(token)} is "
                                       f"not a number; {hint}.")
    return None


def _parse_matrix(lines: list[str], first_line: int, name: str, delimiter: str | None,
                  columns: list[str] | None, hint: str) -> np.ndarray:
    """Numbers of ``lines`` as float32 (rows, columns), refusing text, ragged rows and NaN/inf with the line."""
    if not any(line.strip() for line in lines):
        what = "no rows below the header" if columns is not None else "no numbers"
        raise TimeCourseError(f"{name}: the file is empty ({what}); {hint}.")
    try:
        # NumPy's C parser reads 200 MB in seconds; only if it refuses do we walk the lines to say where.
        values = np.loadtxt(io.StringIO("\n".join(lines)), dtype=np.float64, delimiter=delimiter, comments=None,
                            ndmin=2)
    except ValueError as exc:
        problem = _diagnose_matrix(lines, first_line, name, delimiter, columns, hint)
        raise (problem or TimeCourseError(f"{name}: cannot be read as a table of numbers ({exc}).")) from None
    if columns is not None and values.shape[1] != len(columns):
        raise _diagnose_matrix(lines, first_line, name, delimiter, columns, hint) or TimeCourseError(
            f"{name}: {values.shape[1]} values per row but the header names {len(columns)} columns.")
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)  # a value beyond float32's range becomes inf and is refused below
    bad = np.argwhere(~np.isfinite(values32))
    if bad.size:
        row, column = (int(i) for i in bad[0])
        line = _line_of_row(lines, row) + first_line
        raise TimeCourseError(f"{name}, line {line}, column {column + 1}: {values[row, column]!r} is not a finite "
                              f"number ({len(bad):,} such values in all); time courses must be finite numbers "
                              "within float32's range.")
    return values32


def _line_of_row(lines: list[str], row: int) -> int:
    """0-based index into ``lines`` of data row ``row`` (loadtxt skips blank lines, so they are skipped here)."""
    seen = -1
    for index, line in enumerate(lines):
        if line.strip():
            seen += 1
            if seen == row:
                return index
    return len(lines) - 1  # pragma: no cover - row always exists


def _read_whitespace_matrix(path: Path, name: str, what: str, hint: str) -> np.ndarray:
    text = _read_text(Path(path), name, MAX_TEXT_BYTES, what)
    return _parse_matrix(_lines(text), 1, name, None, None, hint)


def read_melodic_mix(path: Path, name: str) -> np.ndarray:
    """Read MELODIC's ``melodic_mix``: the time course of each component.

    Parameters
    ----------
    path : pathlib.Path
        The file on local disk.
    name : str
        What the curator calls the file (e.g. its path in the archive), for messages.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(rows, components)``: one row per analysed volume (all subjects' volumes, for a
        temporal-concatenation group ICA), one column per component.

    Raises
    ------
    TimeCourseError
        When the file is missing, empty, over :data:`MAX_TEXT_BYTES`, not UTF-8 text (or gzipped), has a value that
        is not a number (the message gives line and column), rows of different lengths, or NaN/inf.
    """
    return _read_whitespace_matrix(path, name, "MELODIC's melodic_mix",
                                   "melodic_mix holds whitespace-separated numbers, one column per component and "
                                   "no header; upload the file MELODIC wrote, unedited")


def read_ftmix(path: Path, name: str) -> np.ndarray:
    """Read MELODIC's ``melodic_FTmix``: the power spectrum of each component's time course.

    Parameters
    ----------
    path : pathlib.Path
        The file on local disk.
    name : str
        What the curator calls the file, for messages.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(frequencies, components)``.

    Raises
    ------
    TimeCourseError
        As :func:`read_melodic_mix`.
    """
    return _read_whitespace_matrix(path, name, "MELODIC's melodic_FTmix",
                                   "melodic_FTmix holds whitespace-separated numbers, one column per component and "
                                   "no header; upload the file MELODIC wrote, unedited")


def read_timecourse_table(path: Path, name: str) -> np.ndarray:
    """Read ``<map name>_timecourses.tsv``: a header row, then one row per time point, one column per volume.

    Parameters
    ----------
    path : pathlib.Path
        The file on local disk.
    name : str
        What the curator calls the file, for messages.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(rows, columns)``; the header's names are not kept (columns follow the map's volumes).

    Raises
    ------
    TimeCourseError
        When the file is missing, over :data:`MAX_TEXT_BYTES`, not UTF-8 text, has no header or no rows, has a row
        whose number of values differs from the header's, a value that is not a number (line and column given), or
        NaN/inf.
    """
    hint = ("the table needs a header row, then one tab-separated number per volume of the map on each line, one "
            "line per time point")
    lines = _lines(_read_text(Path(path), name, MAX_TEXT_BYTES, "a time-course table"))
    header = lines[0]
    if not header.strip():
        raise TimeCourseError(f"{name}, line 1: the header row is empty or missing; {hint}.")
    if "\t" not in header and ("," in header or ";" in header):
        raise TimeCourseError(f"{name}, line 1: no tabs in the header; the file looks comma-separated. Save it as "
                              "tab-separated values (.tsv).")
    columns = [field.strip() for field in header.split("\t")]
    if _NUMBER.fullmatch(columns[0]) and all(_NUMBER.fullmatch(c) for c in columns):
        raise TimeCourseError(f"{name}, line 1: the first line holds numbers, not a header; add a header row "
                              "naming the columns (e.g. volume_1, volume_2, ...).")
    return _parse_matrix(lines[1:], 2, name, "\t", columns, hint)


def _is_melodic(name: str) -> bool:
    return _kind(_split_name(name)[1]) in ("mix", "ftmix")


def check_timecourses(values: np.ndarray, n_volumes: int, timing: Timing | None, name: str, map_name: str) -> None:
    """Whether time courses fit their map and the collection's timing.

    Parameters
    ----------
    values : numpy.ndarray
        What a reader returned, shape ``(rows, columns)``.
    n_volumes : int
        The map's number of volumes (components).
    timing : Timing or None
        The collection's timing; None skips the row check. ``melodic_FTmix`` rows are frequencies, not time
        points, so its rows are never checked against the timing.
    name : str
        The time-course file's name, for messages.
    map_name : str
        The map's name, for messages.

    Raises
    ------
    TimeCourseError
        When ``values`` is not a non-empty 2D table, its columns differ from the map's volumes, or (with a timing)
        its rows differ from ``timing.rows``; the message names both files and gives both numbers.
    """
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise TimeCourseError(f"{name}: expected a table of rows x columns, got an array of shape {values.shape}.")
    rows, columns = values.shape
    unit = "component" if _is_melodic(name) else "volume"
    if columns != n_volumes:
        transposed = " It looks transposed: put one column per " + unit + "." if rows == n_volumes else ""
        advice = (f"Upload the {_split_name(name)[1]} from the same MELODIC output folder as {map_name}."
                  if unit == "component" else f"Give {name} one column per volume of {map_name}, in the same order.")
        raise TimeCourseError(f"{name} has {columns} columns but {map_name} has {n_volumes} volumes (one column per "
                              f"{unit}).{transposed} {advice}")
    if timing is None or _kind(_split_name(name)[1]) == "ftmix":
        return
    if rows != timing.rows:
        raise TimeCourseError(f"{name} has {rows:,} rows but the collection's timing gives {_timing_rows(timing)}; "
                              f"{_rows_advice(rows, timing)}")


def match_message(name: str, shape: tuple[int, int], map_name: str, timing: Timing | None = None) -> str:
    """The line that confirms what time courses were matched to, once :func:`check_timecourses` accepted them.

    Parameters
    ----------
    name : str
        The time-course file's name (its base name is shown).
    shape : tuple of int
        ``(rows, columns)`` of the file.
    map_name : str
        The map's name (its base name is shown).
    timing : Timing or None
        The collection's timing, which splits the rows into subjects and volumes; None says the rows only.

    Returns
    -------
    str
        For example ``"melodic_mix: 53,985 rows = 15 subjects x 3,599 volumes, matched to melodic_IC.nii.gz"``,
        ``"melodic_mix: 3,599 volumes in 8 runs, matched to ..."`` (one subject) or, without a timing,
        ``"melodic_mix: 53,985 rows x 70 components, matched to melodic_IC.nii.gz"``; for ``melodic_FTmix``
        ``"melodic_FTmix: power spectra (1,800 frequencies x 70 components), matched to ..."``.
    """
    rows, columns = shape
    base, map_base = _split_name(name)[1], _split_name(map_name)[1]
    unit = "component" if _is_melodic(name) else "volume"
    if _kind(base) == "ftmix":
        what = f"power spectra ({rows:,} frequencies x {_plural(columns, unit)})"
    elif timing is not None and rows == timing.rows and timing.subjects > 1:
        what = f"{rows:,} rows = {timing.subjects} subjects x {timing.rows_per_subject:,} volumes"
    elif timing is not None and rows == timing.rows:
        what = f"{_plural(rows, 'volume')} in {_plural(len(timing.runs), 'run')}"
    else:
        what = f"{rows:,} rows x {_plural(columns, unit)}"
    return f"{base}: {what}, matched to {map_base}"


def _timing_rows(timing: Timing) -> str:
    if timing.subjects == 1:
        return f"{timing.rows:,} volumes ({_plural(len(timing.runs), 'run')})"
    return (f"{timing.rows_per_subject:,} volumes per subject x {timing.subjects} subjects = {timing.rows:,} rows "
            f"({_plural(len(timing.runs), 'run')} per subject)")


def _rows_advice(rows: int, timing: Timing) -> str:
    """What the curator should change, guessed from how the numbers relate."""
    if rows % timing.rows_per_subject == 0:
        subjects = rows // timing.rows_per_subject
        return (f"that matches {_plural(subjects, 'subject')} of {timing.rows_per_subject:,} volumes: set the "
                f"collection's number of subjects to {subjects}, or upload the time courses of the whole group.")
    if rows % timing.subjects == 0 and timing.subjects > 1:
        return (f"that is {rows // timing.subjects:,} rows per subject: check each run's number of volumes "
                "(count only the volumes that went into the analysis, after any that were dropped).")
    return ("check each run's number of volumes (count only the volumes that went into the analysis) and the number "
            "of subjects concatenated.")


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
        raise TimeCourseError(f"{where}: the header row is empty; an events file starts with a tab-separated header "
                              "naming onset, duration and trial_type (or label).")
    header = [field.strip() for field in line.split("\t")]
    comma = len(header) == 1 and ("," in line or ";" in line)
    onset = _column(header, where, "onset")
    duration = _column(header, where, "duration")
    label = _column(header, where, "trial_type", "label")
    amplitude = _column(header, where, "amplitude", "value")
    missing = [what for what, index in (("onset", onset), ("duration", duration), ("trial_type (or label)", label))
               if index is None]
    if missing:
        found = ", ".join(h for h in header if h) or "nothing"
        advice = (" The file looks comma-separated; save it as tab-separated values (.tsv)." if comma else
                  " Name the columns in the first line, separated by tabs.")
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
        raise TimeCourseError(f"{where}: the {column} has {len(text)} characters, more than {MAX_LABEL_CHARS}; use "
                              "a shorter label.")
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
        raise TimeCourseError(f"{name}: the file is {human_bytes(len(data))}, more than the "
                              f"{human_bytes(MAX_EVENTS_BYTES)} accepted for an events file.")
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
        raise TimeCourseError(f"{name}: the file is empty; an events file needs a tab-separated header naming onset, "
                              "duration and trial_type (or label), then one line per event.")
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
            raise TimeCourseError(f"{where}: {len(fields)} tab-separated fields, but the header (line 1) has "
                                  f"{len(header)}; separate the values with tabs and fill empty ones with n/a.")
        if len(events) == MAX_EVENTS:
            raise TimeCourseError(f"{where}: more than {MAX_EVENTS:,} events; split the annotations into several "
                                  "files.")
        amplitude = 1.0 if amplitude_i is None else _event_amplitude(fields[amplitude_i], where, amplitude_column)
        events.append(Event(onset=_event_seconds(fields[onset_i], where, "onset"),
                            duration=_event_seconds(fields[duration_i], where, "duration"),
                            label=_event_label(fields[label_i], where, label_column),
                            amplitude=amplitude))
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
    return {label: (np.array([e.onset for e in group], dtype=np.float64),
                    np.array([e.duration for e in group], dtype=np.float64),
                    np.array([e.amplitude for e in group], dtype=np.float64))
            for label, group in grouped.items()}
