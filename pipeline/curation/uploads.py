"""Checks of a received upload, before it is stored: its name, and that it can give at least one map.

The upload route (``web.upload``) receives the bytes, calls ``check_file_name`` and ``check_upload``, and stores
the file; the header checks themselves are ``pipeline.maps.nifti``'s and ``pipeline.curation.archives``', so an upload
and an
ingest judge a file by the same rules. The verdict (:class:`UploadReport`) keeps what the curator should look at
(``warnings``) apart from what is expected and only confirmed (``notes``): MELODIC's own helper files skipped, in
one line, and which map each time-course file of an archive was matched to.
"""

from __future__ import annotations

import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.curation.archives import ArchiveError, file_kind, iter_niftis
from pipeline.maps.nifti import NiftiError, check_nifti
from pipeline.synchrony.dual_regression import is_stage1_name, read_stage1, stage1_order
from pipeline.temporal.timecourses import (
    check_timecourses,
    is_timecourse_name,
    match_message,
    match_timecourse_files,
    read_timecourse_file,
    unmatched_timecourse_files,
)
from pipeline.temporal.timing import TimeCourseError, Timing
from store.units import human_bytes
from store.validation import TEXT_LIMITS

try:  # isal decompresses several times faster than zlib, same format
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    import gzip as _gzip

CHUNK = 4 * 1024 * 1024
MAX_NAME_LENGTH = TEXT_LIMITS["upload_filename"]  # the column's length, and what file systems allow
# Bidirectional overrides and isolates can make "evil.zip" look like something else in a listing.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_bad_character(ch: str) -> bool:
    """Characters no file name here may hold: control characters (NUL cannot even be stored in PostgreSQL),
    surrogates, line separators and bidirectional controls."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS


def check_file_name(raw: str) -> str:
    """The base name of an uploaded file's name, or ValueError saying how to rename it.

    Paths are cut to their last part (``\\`` counts as a separator); names with control characters (NUL cannot
    even be stored in PostgreSQL), line separators or bidirectional controls, and names over
    ``MAX_NAME_LENGTH`` characters are refused rather than silently changed."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name.strip()
    bad = next((ch for ch in name if _is_bad_character(ch)), None)
    if bad is not None:
        shown = "".join(f"\\u{ord(ch):04x}" if _is_bad_character(ch) else ch for ch in name)[:80]
        raise ValueError(
            f'The file name "{shown}" contains the control character U+{ord(bad):04X}. Rename the '
            "file (letters, digits, spaces, dots and dashes are safe) and upload it again."
        )
    if not name or name in (".", ".."):
        raise ValueError("The upload has no file name.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"The file name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}. Rename "
            f"the file ({name[:40]}…) and upload it again."
        )
    return name


# Bytes a gzip stream may hold beyond the data its header describes (padding some writers add). More is refused
# without being inflated: a few MB of gzip can hold GBs of zeros.
GZIP_SLACK = 1024 * 1024


def _check_gzip_stream(path: Path, name: str, data_end: int) -> None:
    """Inflate a .gz file without keeping it, so a truncated or damaged file is refused now, not at ingest; stop
    just past the byte count the header implies, so the work is bounded by the header (which the caller has
    capped), not by what the stream would inflate to."""
    total = 0
    limit = data_end + GZIP_SLACK
    try:
        with _gzip.open(path, "rb") as fh:
            while chunk := fh.read(min(CHUNK, limit + 1 - total)):
                total += len(chunk)
                if total > limit:
                    raise NiftiError(
                        f"{name}: the gzip stream holds more data than the header describes "
                        f"({data_end:,} bytes); it was not read further"
                    )
    except EOFError:
        raise NiftiError(f"{name}: the file is truncated (the gzip stream ends early)") from None
    except (OSError, zlib.error, ValueError) as exc:
        raise NiftiError(f"{name}: the gzip data is corrupt ({exc})") from None
    if total < data_end:
        raise NiftiError(f"{name}: the file is truncated (less data than its header describes)")


def check_nifti_file(path: Path, name: str, max_data_bytes: int = 0) -> int:
    """Volumes in a NIfTI file whose header and (for .nii.gz) whole compressed stream are intact.

    Parameters
    ----------
    path : pathlib.Path
        The received file.
    name : str
        The sender's name for it, for messages.
    max_data_bytes : int
        Most bytes of voxel data the header may describe (0: the general limit of ``pipeline.maps.nifti`` only);
        checked before anything is inflated.

    Raises
    ------
    NiftiError
        With the message a curator's upload gets for the same file.
    """
    image = check_nifti(path, name)
    if max_data_bytes and image.data_bytes > max_data_bytes:
        raise NiftiError(
            f"{name}: its header describes {human_bytes(image.data_bytes)} of voxel data "
            f"({' x '.join(str(s) for s in image.shape)} {image.dtype.name}); the limit here is "
            f"{human_bytes(max_data_bytes)}. Send fewer volumes, or a float32 map."
        )
    if name.lower().endswith(".gz"):
        _check_gzip_stream(path, name, image.data_end)
    return image.n_volumes


@dataclass
class UploadReport:
    """What a received file holds: how many maps, what was matched and skipped as expected (``notes``, e.g. the
    one line for MELODIC's own helper files, and the time courses matched to their map), and what the curator
    should look at (``warnings``)."""

    maps: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_upload(path: Path, name: str, workdir: Path, timing: Timing | None = None) -> UploadReport:
    """Refuse a file that cannot give a single map; report members of an archive that will be skipped, and the
    time courses an archive holds with the map each is matched to.

    Parameters
    ----------
    path : pathlib.Path
        The received file.
    name : str
        The curator's name for it (its extension decides how it is read).
    workdir : pathlib.Path
        An empty folder for unpacking archive members, one at a time.
    timing : Timing or None
        The collection's timing, if it has one: time courses are then checked against it and their rows
        explained (``53,985 rows = 15 subjects x 3,599 volumes``).

    Raises
    ------
    NiftiError
        A NIfTI file whose header or data is unusable.
    TimeCourseError
        A time-course file that cannot be read.
    ArchiveError
        An archive that is unsafe or holds no usable map.
    """
    report = UploadReport()
    if file_kind(name) == "timecourse" and is_stage1_name(name):
        values = read_stage1(path, name)
        report.warnings.append(
            f"{name}: one subject's dual_regression time courses, {values.shape[1]} components x "
            f"{values.shape[0]} volumes; they are stacked in subject order and matched with the group map when the "
            "collection is processed"
        )
        return report
    if file_kind(name) == "timecourse":
        kind, values = read_timecourse_file(path, name)
        what = "power spectra" if kind == "ftmix" else "time courses"
        report.warnings.append(
            f"{name}: {what} of {values.shape[1]} components, {values.shape[0]} rows; they are "
            "matched with their map (same folder) when the collection is processed"
        )
        return report
    if file_kind(name) == "nifti":
        report.maps = check_nifti_file(path, name)
        return report
    problems: list[str] = []
    volumes: dict[str, int] = {}  # map -> its volumes
    courses: dict[str, np.ndarray] = {}  # time-course file -> its values
    stage1: list[str] = []  # dual_regression's per-subject time courses
    for member in iter_niftis(path, name, workdir, report.warnings, include_timecourses=True, notes=report.notes):
        try:
            if is_stage1_name(member.name):
                read_stage1(member.path, member.name)  # checked now; stacked and matched at processing
                stage1.append(member.name)
            elif is_timecourse_name(member.name):
                courses[member.name] = read_timecourse_file(member.path, member.name)[1]
            else:
                volumes[member.name] = check_nifti_file(member.path, member.name)
        except (NiftiError, TimeCourseError) as exc:
            problems.append(str(exc))
        finally:
            member.path.unlink(missing_ok=True)  # checked one by one: never the whole archive on disk twice
    report.maps = sum(volumes.values())
    if not report.maps:
        raise ArchiveError(f"{name}: no usable NIfTI map inside ({'; '.join(problems) or 'nothing found'})")
    report.warnings += [f"{p} (will be skipped)" for p in problems]
    if stage1:
        try:
            report.notes.append(f"{name}: dual_regression time courses of {len(stage1_order(stage1))} subjects")
        except TimeCourseError as exc:
            report.warnings.append(f"{exc} (not used)")
    _match_courses(volumes, courses, timing, report)
    return report


def _match_courses(
    volumes: dict[str, int], courses: dict[str, np.ndarray], timing: Timing | None, report: UploadReport
) -> None:
    """Say which map each time-course file of an archive goes with (a note), or why it will not be used (a
    warning), by the rules ingest applies (``pipeline.temporal.timecourses``)."""
    names = list(volumes) + list(courses)
    for course in unmatched_timecourse_files(names):
        report.warnings.append(f"{course}: no map in the same folder to take its time courses; not used")
    for map_name, found in match_timecourse_files(names).items():
        for course in (found[slot] for slot in ("mix", "ftmix") if found.get(slot) in courses):
            try:
                check_timecourses(courses[course], volumes[map_name], timing, course, map_name)
            except TimeCourseError as exc:
                report.warnings.append(f"{exc} (not used)")
                continue
            report.notes.append(match_message(course, courses[course].shape, map_name, timing))
