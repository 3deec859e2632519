"""Time courses of 4D maps: which files hold them, how they are read, and how they are matched to their map.

FSL MELODIC writes ``melodic_mix`` (one row per analysed volume, one column per component) and ``melodic_FTmix``
(their power spectra) next to ``melodic_IC.nii.gz``; any other 4D map ``X.nii.gz`` can bring ``X_timecourses.tsv``
(a header row, one column per volume, one row per time point). Their rows must match the collection's
:class:`pipeline.temporal.timing.Timing`. Everything refused raises :class:`TimeCourseError`, whose message names the
file (and the line for text files). Nothing here imports Dash or Flask.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.temporal.parsing import NUMBER, TimeCourseError, decode_text, plural, quoted, split_lines
from pipeline.temporal.timing import Timing
from store.units import human_bytes

MAX_TEXT_BYTES = 200 * 1024**2  # a time-course file; 200 MB is about 15 million numbers in MELODIC's format

MIX_NAMES = ("melodic_mix", "melodic_mix.txt")
FTMIX_NAMES = ("melodic_FTmix", "melodic_FTmix.txt")
TABLE_SUFFIX = "_timecourses.tsv"
MELODIC_MAP_STEM = "melodic_IC"


# --- file names and matching ----------------------------------------------------------------------------------


def _split_name(name: str) -> tuple[str, str]:
    """(folder, base name) of an upload member name, with ``\\`` read as ``/`` (Windows zip tools write it)."""
    folder, base = posixpath.split(name.replace("\\", "/"))
    return posixpath.normpath(folder) if folder else "", base


def _ignored(name: str) -> bool:
    # The same rule as pipeline.curation.archives: __MACOSX folders and dot-files are never extracted, so never matched.
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
        raise TimeCourseError(
            f"{name}: the file is {human_bytes(size)}, more than the {human_bytes(limit)} "
            f"accepted for {what}; upload fewer components or a shorter recording."
        )
    data = path.read_bytes()
    return decode_text(data, name, what)


def _diagnose_matrix(
    lines: list[str], first_line: int, name: str, delimiter: str | None, columns: list[str] | None, hint: str
) -> TimeCourseError | None:
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
            return TimeCourseError(
                f"{name}, line {number}: {plural(len(tokens), 'value')}, but {expected[1]} "
                f"{expected[0]}; every row needs the same number of values ({hint})."
            )
        try:
            list(map(float, tokens))  # fast for the many good lines; the regex below only runs on a bad one
        except ValueError:
            pass
        else:
            continue
        for column, token in enumerate(tokens, start=1):
            if NUMBER.fullmatch(token.strip()) is None and token.strip().lower() not in ("nan", "inf", "-inf"):
                header = f" ({columns[column - 1]})" if columns and column <= len(columns) else ""
                return TimeCourseError(
                    f"{name}, line {number}, column {column}{header}: {quoted(token)} is not a number; {hint}."
                )
    return None


def _parse_matrix(
    lines: list[str], first_line: int, name: str, delimiter: str | None, columns: list[str] | None, hint: str
) -> np.ndarray:
    """Numbers of ``lines`` as float32 (rows, columns), refusing text, ragged rows and NaN/inf with the line."""
    if not any(line.strip() for line in lines):
        what = "no rows below the header" if columns is not None else "no numbers"
        raise TimeCourseError(f"{name}: the file is empty ({what}); {hint}.")
    try:
        # NumPy's C parser reads 200 MB in seconds; only if it refuses do we walk the lines to say where.
        values = np.loadtxt(
            io.StringIO("\n".join(lines)), dtype=np.float64, delimiter=delimiter, comments=None, ndmin=2
        )
    except ValueError as exc:
        problem = _diagnose_matrix(lines, first_line, name, delimiter, columns, hint)
        raise (problem or TimeCourseError(f"{name}: cannot be read as a table of numbers ({exc}).")) from None
    if columns is not None and values.shape[1] != len(columns):
        raise _diagnose_matrix(lines, first_line, name, delimiter, columns, hint) or TimeCourseError(
            f"{name}: {values.shape[1]} values per row but the header names {len(columns)} columns."
        )
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)  # a value beyond float32's range becomes inf and is refused below
    bad = np.argwhere(~np.isfinite(values32))
    if bad.size:
        row, column = (int(i) for i in bad[0])
        line = _line_of_row(lines, row) + first_line
        raise TimeCourseError(
            f"{name}, line {line}, column {column + 1}: {values[row, column]!r} is not a finite "
            f"number ({len(bad):,} such values in all); time courses must be finite numbers "
            "within float32's range."
        )
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
    return _parse_matrix(split_lines(text), 1, name, None, None, hint)


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
    return _read_whitespace_matrix(
        path,
        name,
        "MELODIC's melodic_mix",
        "melodic_mix holds whitespace-separated numbers, one column per component and "
        "no header; upload the file MELODIC wrote, unedited",
    )


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
    return _read_whitespace_matrix(
        path,
        name,
        "MELODIC's melodic_FTmix",
        "melodic_FTmix holds whitespace-separated numbers, one column per component and "
        "no header; upload the file MELODIC wrote, unedited",
    )


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
    hint = (
        "the table needs a header row, then one tab-separated number per volume of the map on each line, one "
        "line per time point"
    )
    lines = split_lines(_read_text(Path(path), name, MAX_TEXT_BYTES, "a time-course table"))
    header = lines[0]
    if not header.strip():
        raise TimeCourseError(f"{name}, line 1: the header row is empty or missing; {hint}.")
    if "\t" not in header and ("," in header or ";" in header):
        raise TimeCourseError(
            f"{name}, line 1: no tabs in the header; the file looks comma-separated. Save it as "
            "tab-separated values (.tsv)."
        )
    columns = [field.strip() for field in header.split("\t")]
    if NUMBER.fullmatch(columns[0]) and all(NUMBER.fullmatch(c) for c in columns):
        raise TimeCourseError(
            f"{name}, line 1: the first line holds numbers, not a header; add a header row "
            "naming the columns (e.g. volume_1, volume_2, ...)."
        )
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
        advice = (
            f"Upload the {_split_name(name)[1]} from the same MELODIC output folder as {map_name}."
            if unit == "component"
            else f"Give {name} one column per volume of {map_name}, in the same order."
        )
        raise TimeCourseError(
            f"{name} has {columns} columns but {map_name} has {n_volumes} volumes (one column per "
            f"{unit}).{transposed} {advice}"
        )
    if timing is None or _kind(_split_name(name)[1]) == "ftmix":
        return
    if rows != timing.rows:
        raise TimeCourseError(
            f"{name} has {rows:,} rows but the collection's timing gives {_timing_rows(timing)}; "
            f"{_rows_advice(rows, timing)}"
        )


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
        what = f"power spectra ({rows:,} frequencies x {plural(columns, unit)})"
    elif timing is not None and rows == timing.rows and timing.subjects > 1:
        what = f"{rows:,} rows = {timing.subjects} subjects x {timing.rows_per_subject:,} volumes"
    elif timing is not None and rows == timing.rows:
        what = f"{plural(rows, 'volume')} in {plural(len(timing.runs), 'run')}"
    else:
        what = f"{rows:,} rows x {plural(columns, unit)}"
    return f"{base}: {what}, matched to {map_base}"


def _timing_rows(timing: Timing) -> str:
    if timing.subjects == 1:
        return f"{timing.rows:,} volumes ({plural(len(timing.runs), 'run')})"
    return (
        f"{timing.rows_per_subject:,} volumes per subject x {timing.subjects} subjects = {timing.rows:,} rows "
        f"({plural(len(timing.runs), 'run')} per subject)"
    )


def _rows_advice(rows: int, timing: Timing) -> str:
    """What the curator should change, guessed from how the numbers relate."""
    if rows % timing.rows_per_subject == 0:
        subjects = rows // timing.rows_per_subject
        return (
            f"that matches {plural(subjects, 'subject')} of {timing.rows_per_subject:,} volumes: set the "
            f"collection's number of subjects to {subjects}, or upload the time courses of the whole group."
        )
    if rows % timing.subjects == 0 and timing.subjects > 1:
        return (
            f"that is {rows // timing.subjects:,} rows per subject: check each run's number of volumes "
            "(count only the volumes that went into the analysis, after any that were dropped)."
        )
    return (
        "check each run's number of volumes (count only the volumes that went into the analysis) and the number "
        "of subjects concatenated."
    )
