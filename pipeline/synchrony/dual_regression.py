"""Per-subject time courses from FSL ``dual_regression`` output: its stage-1 files as one subject-major matrix.

``dual_regression`` regresses the group map (``melodic_IC.nii.gz``, or the map it was given) into every subject's
data and writes, per subject, ``dr_stage1_subjectNNNNN.txt``: one row per volume, one column per component, numbers
separated by spaces (``fsl_glm`` output), subjects numbered from 00000 in the order of the input list. Stacked in
that order, the files are what a temporal-concatenation ``melodic_mix`` is: subject blocks one after another
(:func:`stage1_matrix`), so the collection's timing (runs, TR, ``subjects`` = the number of files) applies as it
does to ``melodic_mix``, and :func:`pipeline.synchrony.isc.subjects_array` makes the ISC array of either.

Its stage-2 and stage-3 images (``dr_stage2_*``, ``dr_stage3_*``: per-subject spatial maps and group statistics)
are NIfTI files but not group components; an upload skips them and says so in one line
(:func:`skipped_stage_note`).

Everything refused raises :class:`pipeline.temporal.parsing.TimeCourseError` naming the file (and the line) and
saying what to do, before anything is kept. Nothing here imports Dash or Flask.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.temporal.parsing import NUMBER, TimeCourseError, decode_text, plural, quoted, split_lines

STAGE1 = re.compile(r"dr_stage1_subject(\d{5})\.txt")
SKIPPED_STAGE = re.compile(r"dr_stage[23]_.+\.nii(?:\.gz)?", re.IGNORECASE)
MAX_STAGE1_BYTES = 50 * 1024**2  # one subject's file; 50 MB is about 4 million numbers in fsl_glm's format
HINT = (
    "dual_regression's dr_stage1_subjectNNNNN.txt holds whitespace-separated numbers, one row per volume and one "
    "column per component; upload the files it wrote, unedited"
)


def _base(name: str) -> str:
    return posixpath.basename(name.replace("\\", "/"))


def stage1_number(name: str) -> int | None:
    """The subject number of a ``dr_stage1_subjectNNNNN.txt`` file (any folder), else None."""
    match = STAGE1.fullmatch(_base(name))
    return int(match.group(1)) if match else None


def is_stage1_name(name: str) -> bool:
    """Whether a file is a ``dual_regression`` stage-1 file (``dr_stage1_subjectNNNNN.txt``, any folder)."""
    return stage1_number(name) is not None


def is_skipped_stage(name: str) -> bool:
    """Whether a file is a ``dual_regression`` stage-2 or stage-3 image, which is not a group component."""
    return SKIPPED_STAGE.fullmatch(_base(name)) is not None


def skipped_stage_note(display_name: str, names: Sequence[str]) -> str | None:
    """The one verdict line for the stage-2 and stage-3 images among ``names`` (None if there are none), e.g.
    ``"skipped: 12 dual_regression stage-2 and 3 stage-3 images (per-subject maps and group statistics, not group
    components) (in study.zip)"``."""
    stages = [_base(name)[8] for name in names if is_skipped_stage(name)]
    if not stages:
        return None
    counts = [f"{stages.count(k):,} dual_regression stage-{k}" for k in "23" if k in stages]
    if len(counts) == 2:
        counts[1] = counts[1].replace("dual_regression ", "")
    images = "image" if len(stages) == 1 else "images"
    return (
        f"skipped: {' and '.join(counts)} {images} (per-subject maps and group statistics, not group components) "
        f"(in {display_name})"
    )


def stage1_order(names: Sequence[str]) -> list[str]:
    """The stage-1 files among ``names`` in subject order (00000, 00001, ...).

    Raises
    ------
    TimeCourseError
        If a number is missing (the files' numbers are the subjects' order, so a gap would shift every later
        subject) or appears twice (in two folders).
    """
    numbered: dict[int, str] = {}
    for name in names:
        number = stage1_number(name)
        if number is None:
            continue
        if number in numbered:
            raise TimeCourseError(
                f"{name} and {numbered[number]}: two stage-1 files for subject {number:05d}; upload one "
                "dual_regression output folder at a time."
            )
        numbered[number] = name
    missing = sorted(set(range(max(numbered, default=-1) + 1)) - set(numbered))
    if missing:
        shown = ", ".join(f"dr_stage1_subject{n:05d}.txt" for n in missing[:5])
        more = f" and {len(missing) - 5:,} more" if len(missing) > 5 else ""
        raise TimeCourseError(
            f"{shown}{more} missing: dual_regression numbers its subjects from 00000 in order, and the files' "
            f"numbers are the subjects' order; upload all {plural(max(numbered) + 1, 'stage-1 file')}."
        )
    return [numbered[n] for n in sorted(numbered)]


def _first_problem(lines: list[str], name: str) -> TimeCourseError | None:
    """The first ragged row or non-number of a stage-1 file, with its line, or None."""
    width = None
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if width is None:
            width = (len(tokens), number)
        elif len(tokens) != width[0]:
            return TimeCourseError(
                f"{name}, line {number}: {plural(len(tokens), 'value')}, but line {width[1]} has {width[0]}; "
                f"every row needs one value per component ({HINT})."
            )
        for column, token in enumerate(tokens, start=1):
            if NUMBER.fullmatch(token) is None:
                return TimeCourseError(
                    f"{name}, line {number}, column {column}: {quoted(token)} is not a number; {HINT}."
                )
    return None


def read_stage1(path: Path, name: str) -> np.ndarray:
    """One subject's ``dr_stage1_subjectNNNNN.txt`` as float32 ``(volumes, components)``.

    Raises
    ------
    TimeCourseError
        Missing, empty, over :data:`MAX_STAGE1_BYTES`, not UTF-8 text, a value that is not a finite number (line
        and column given), or rows of different lengths.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TimeCourseError(f"{name}: file not found") from None
    if size > MAX_STAGE1_BYTES:
        raise TimeCourseError(
            f"{name}: {size:,} bytes, more than the {MAX_STAGE1_BYTES:,} accepted for one subject's stage-1 file."
        )
    lines = split_lines(decode_text(path.read_bytes(), name, "dual_regression stage-1 file (text)"))
    if not any(line.strip() for line in lines):
        raise TimeCourseError(f"{name}: the file is empty; {HINT}.")
    problem = _first_problem(lines, name)
    if problem is not None:
        raise problem
    values = np.loadtxt(io.StringIO("\n".join(lines)), dtype=np.float64, comments=None, ndmin=2)
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)
    if not np.isfinite(values32).all():
        row = int(np.argwhere(~np.isfinite(values32))[0][0])
        raise TimeCourseError(f"{name}, row {row + 1}: a value beyond float32's range; time courses must be finite.")
    return values32


def stage1_matrix(
    files: Sequence[tuple[str, Path]], n_components: int | None = None, volumes_per_subject: int | None = None
) -> np.ndarray:
    """The stage-1 files of all subjects stacked as one subject-major matrix, like ``melodic_mix``.

    Parameters
    ----------
    files : sequence of (name, path)
        Every stage-1 file of the upload (other files may be among them and are ignored); the names give the
        subject order.
    n_components : int, optional
        Volumes of the group map: each file must have one column per component.
    volumes_per_subject : int, optional
        The timing's volumes per subject (the sum of its runs): each file must have that many rows.

    Returns
    -------
    numpy.ndarray
        float32 ``(subjects x volumes, components)``: subject 00000's rows, then 00001's, and so on.

    Raises
    ------
    TimeCourseError
        No stage-1 file, a missing or repeated subject number, a file that cannot be read, or files whose shape
        differs from the group map, the timing or each other. Nothing is returned in part.
    """
    paths = dict(files)
    ordered = stage1_order(list(paths))
    if not ordered:
        raise TimeCourseError("no dr_stage1_subjectNNNNN.txt file among the uploaded files.")
    blocks = []
    for name in ordered:
        block = read_stage1(paths[name], name)
        want_columns = n_components if n_components is not None else (blocks[0].shape[1] if blocks else None)
        if want_columns is not None and block.shape[1] != want_columns:
            source = "the group map has" if n_components is not None else f"{ordered[0]} has"
            raise TimeCourseError(
                f"{name}: {plural(block.shape[1], 'column')}, but {source} {plural(want_columns, 'component')}; "
                "each stage-1 file needs one column per component of the map given to dual_regression."
            )
        want_rows = volumes_per_subject if volumes_per_subject is not None else (len(blocks[0]) if blocks else None)
        if want_rows is not None and block.shape[0] != want_rows:
            source = "the collection's timing gives" if volumes_per_subject is not None else f"{ordered[0]} has"
            raise TimeCourseError(
                f"{name}: {plural(block.shape[0], 'row')}, but {source} {plural(want_rows, 'volume')} per subject; "
                "each stage-1 file needs one row per volume of that subject's runs."
            )
        blocks.append(block)
    return np.concatenate(blocks, axis=0)
