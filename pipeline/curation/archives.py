"""Uploaded files -> the NIfTI files inside them, safely (DESIGN sections 3 and 11).

Archives are checked member by member before anything is written: no absolute paths, no ``..``, no links or
devices, a bounded number of files and a bounded uncompressed size (counted while extracting, since declared sizes
can lie). ``__MACOSX`` folders and dot-files are ignored; other non-NIfTI files are reported, not extracted.

An archive may hold a whole FSL MELODIC output folder (a ``.ica`` folder, or a group ``.gica`` folder around its
``groupmelodic.ica``). There only ``melodic_IC`` holds components: MELODIC's brain mask, mean image, ``stats/``,
``report/`` and the rest are known and skipped, and said so in one line (:func:`melodic_note`) rather than a
warning per file; a NIfTI file MELODIC does not write is skipped there too, with a warning that names it. A MELODIC
folder is recognised by the ``melodic_IC.nii(.gz)`` in it.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.maps.nifti import is_nifti_name
from pipeline.synchrony.dual_regression import is_skipped_stage, is_stage1_name, skipped_stage_note
from pipeline.temporal.timecourses import is_timecourse_name
from store.units import human_bytes

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
ACCEPTED_SUFFIXES = (".nii", ".nii.gz") + ARCHIVE_SUFFIXES
MAX_MEMBERS = 2000
MAX_EXTRACTED_BYTES = 16 * 1024**3

MELODIC_COMPONENTS = ("melodic_IC.nii.gz", "melodic_IC.nii")
# MELODIC's images that are not components, by stem, with what the verdict calls them; its other files
# (melodic_oIC, melodic_unmix, melodic_ICstats, log.txt, stats/*, report/*, ...) are counted.
MELODIC_IMAGES = {"mask": "brain mask", "mean": "mean image", "bg_image": "background image"}
# Further files MELODIC writes (besides melodic_* and everything in stats/ and report/).
MELODIC_FILES = frozenset({"log.txt", "report.html", "eigenvalues_percent"})


class ArchiveError(ValueError):
    """An upload that cannot be used; the message names the file and the reason."""


def file_kind(name: str) -> str:
    """'nifti', 'zip' or 'tar' from a file name, or raise ArchiveError.

    Parameters
    ----------
    name : str
        The file name as the curator gave it; only its ending counts (case-insensitive).

    Returns
    -------
    str
        ``"nifti"`` for ``.nii`` and ``.nii.gz``, ``"zip"`` for ``.zip``, ``"tar"`` for ``.tar``, ``.tar.gz`` and
        ``.tgz``.

    Raises
    ------
    ArchiveError
        When the name has none of the accepted endings (:data:`ACCEPTED_SUFFIXES`).
    """
    low = name.lower()
    if is_nifti_name(low):
        return "nifti"
    if is_timecourse_name(name) or is_stage1_name(name):
        return "timecourse"
    if low.endswith(".zip"):
        return "zip"
    if low.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    raise ArchiveError(
        f"{name}: unsupported file type; upload .nii, .nii.gz, .zip, .tar.gz or .tgz files, or "
        "time courses (melodic_mix, melodic_FTmix, <map>_timecourses.tsv)"
    )


def storage_suffix(name: str) -> str:
    """The accepted file ending of ``name``, lower-case, for the storage key of the upload.

    Parameters
    ----------
    name : str
        The file name as the curator gave it (case-insensitive).

    Returns
    -------
    str
        One of ``".nii.gz"``, ``".tar.gz"``, ``".tgz"``, ``".nii"``, ``".zip"`` or ``".tar"`` (the longest that
        matches).

    Raises
    ------
    ArchiveError
        When the name has none of these endings.
    """
    low = name.lower()
    for suffix in (".nii.gz", ".tar.gz", ".tgz", ".nii", ".zip", ".tar"):
        if low.endswith(suffix):
            return suffix
    if is_timecourse_name(name) or is_stage1_name(name):
        return ".tsv" if low.endswith(".tsv") else ".txt"
    raise ArchiveError(f"{name}: unsupported file type")


@dataclass
class Member:
    name: str  # path inside the upload, for messages and for the component's source file
    path: Path  # local file to read


def _ignored(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _safe_member_name(archive: str, name: str) -> str:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path; refusing the archive")
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        raise ArchiveError(f"{archive}: member {name!r} points outside the archive ('..'); refusing the archive")
    return norm


def iter_niftis(
    path: Path,
    display_name: str,
    workdir: Path,
    warnings: list[str],
    max_members: int | None = None,
    max_bytes: int | None = None,
    include_timecourses: bool = False,
    notes: list[str] | None = None,
) -> Iterator[Member]:
    """Yield the NIfTI files of an upload (itself, or the members of an archive extracted into workdir).

    A NIfTI upload is yielded as it is, without a copy. An archive is checked and all of its NIfTI members are
    extracted before the first one is yielded, so a refused archive yields nothing. Members are written under
    numbered names of their own (``member-00000.nii.gz``, ...), never under the paths the archive names. The
    contents of the NIfTI files are not checked here (that is :func:`pipeline.maps.nifti.check_nifti`'s job). As this
    is a generator, every error is raised when iteration starts, not when it is called.

    Parameters
    ----------
    path : pathlib.Path
        The uploaded file on local disk.
    display_name : str
        The file's name as the curator gave it: it decides the kind (:func:`file_kind`) and names the file in
        messages and in the yielded members.
    workdir : pathlib.Path
        Folder that archive members are extracted into (made if missing); the caller removes it afterwards.
    warnings : list of str
        Appended to in place: one message per skipped member (not a NIfTI file, or a second member of the same
        name). ``__MACOSX`` folders and dot-files are skipped silently.
    max_members : int or None
        Most files an archive may hold (folders not counted, skipped files counted); None means
        :data:`MAX_MEMBERS`.
    max_bytes : int or None
        Most bytes the NIfTI members of an archive may unpack to, declared and actually extracted; None means
        :data:`MAX_EXTRACTED_BYTES`.
    include_timecourses : bool
        Also yield time-course files (``melodic_mix``, ``melodic_FTmix``, ``<map>_timecourses.tsv``; see
        :func:`pipeline.temporal.timecourses.is_timecourse_name`), the upload itself or archive members. They are never
        reported as skipped, and do not count as the NIfTI an archive must hold.
    notes : list of str or None
        Appended to in place: the one line that says which files of a MELODIC output folder were skipped
        (:func:`melodic_note`; they are known, so this is no warning). None puts that line into ``warnings``.

    Yields
    ------
    Member
        One per NIfTI file (inside a MELODIC output folder, ``melodic_IC`` only), in archive order: ``name`` is
        ``display_name`` for a NIfTI upload and ``"<display_name>/<member path>"`` for an archive member;
        ``path`` is the local file to read.

    Raises
    ------
    ArchiveError
        For an unsupported file type, an archive that cannot be read or is corrupt, a member with an absolute path,
        ``..`` or a link, device or special file (the whole archive is refused), too many members, more than
        ``max_bytes`` of NIfTI data, or an archive without any ``.nii`` or ``.nii.gz`` file.
    """
    max_members = MAX_MEMBERS if max_members is None else max_members
    max_bytes = MAX_EXTRACTED_BYTES if max_bytes is None else max_bytes
    kind = file_kind(display_name)
    if kind in ("nifti", "timecourse"):
        if kind == "nifti" or include_timecourses:
            yield Member(display_name, path)
        return
    notes = warnings if notes is None else notes
    if kind == "zip":
        members = list(_zip_members(path, display_name, workdir, warnings, max_members, max_bytes, notes))
    else:
        members = list(_tar_members(path, display_name, workdir, warnings, max_members, max_bytes, notes))
    if not any(is_nifti_name(m.name) for m in members):
        raise ArchiveError(f"{display_name}: the archive contains no .nii or .nii.gz files")
    yield from (m for m in members if include_timecourses or is_nifti_name(m.name))


def melodic_folders(names: list[str]) -> set[str]:
    """The MELODIC output folders of an archive, as paths inside it.

    Parameters
    ----------
    names : list of str
        Safe member paths (``/``-separated, normalised).

    Returns
    -------
    set of str
        Every folder holding ``melodic_IC.nii`` or ``melodic_IC.nii.gz`` (``""`` for the archive's top level), and
        every ``.gica`` folder above one (a group MELODIC run keeps its own mask, report and log there).
    """
    found: set[str] = set()
    for name in names:
        folder, base = posixpath.split(name)
        if base in MELODIC_COMPONENTS:
            found.add(folder)
            parts = folder.split("/") if folder else []
            found.update("/".join(parts[: i + 1]) for i, part in enumerate(parts) if part.lower().endswith(".gica"))
    return found


def _melodic_subfolders(name: str, folders: set[str]) -> tuple[str, ...] | None:
    """The folders of ``name`` below the MELODIC output folder that holds it (``()`` for one directly in it), or
    None when no MELODIC folder holds it."""
    folder = posixpath.dirname(name)
    holders = [f for f in folders if folder == f or f == "" or folder.startswith(f + "/")]
    if not holders:
        return None
    below = folder[len(max(holders, key=len)) :].strip("/")
    return tuple(below.split("/")) if below else ()


def _melodic_role(name: str, folders: set[str]) -> str | None:
    """What a member is to MELODIC: None outside its output folders and for its components and time courses
    (they are read as usual), ``"known"`` for a file MELODIC writes (skipped with :func:`melodic_note`'s line),
    ``"other"`` for a NIfTI file it does not write (skipped with a warning that names it)."""
    below = _melodic_subfolders(name, folders)
    if below is None or is_timecourse_name(name):
        return None
    base = posixpath.basename(name)
    if base in MELODIC_COMPONENTS and not below:
        return None
    stem = _stem(base)
    if (
        stem in MELODIC_IMAGES
        or stem.startswith("melodic_")
        or base in MELODIC_FILES
        or below[:1] in (("stats",), ("report",))
    ):
        return "known"
    return "other" if is_nifti_name(name) else None


def melodic_note(display_name: str, skipped: list[str]) -> str:
    """The one line that says which files of MELODIC's output were skipped.

    Parameters
    ----------
    display_name : str
        The upload's name.
    skipped : list of str
        Member paths of files MELODIC writes that hold no components.

    Returns
    -------
    str
        For example ``"skipped: MELODIC's brain mask and mean image, 5 other MELODIC files (in study.gica.zip)"``.
    """
    images = [MELODIC_IMAGES[_stem(n)] for n in skipped if _stem(n) in MELODIC_IMAGES]
    others = len(skipped) - len(images)
    parts = []
    if images:
        names = sorted(set(images), key=list(MELODIC_IMAGES.values()).index)
        parts.append(
            "MELODIC's " + (" and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1])
        )
    if others:
        parts.append(f"{others:,} {'other ' if images else ''}MELODIC file{'s' if others != 1 else ''}")
    return f"skipped: {', '.join(parts)} (in {display_name})"


def _stem(name: str) -> str:
    base = posixpath.basename(name)
    for suffix in (".nii.gz", ".nii"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _plan(
    display_name: str, names: list[str], warnings: list[str], max_members: int, notes: list[str]
) -> dict[int, str]:
    """Position in ``names`` -> safe relative output name, for the NIfTI members only. Keyed by position, not
    name: an archive can hold two members with the same name, and only the first of them is kept."""
    if len(names) > max_members:
        raise ArchiveError(f"{display_name}: {len(names)} files in the archive, more than {max_members}")
    safe_names = [_safe_member_name(display_name, name) for name in names]
    melodic = melodic_folders([n for n in safe_names if not _ignored(n)])
    chosen: dict[int, str] = {}
    seen: set[str] = set()
    skipped_melodic: list[str] = []
    skipped_stages: list[str] = []  # dual_regression's stage-2 and stage-3 images: not components
    for position, safe in enumerate(safe_names):
        if _ignored(safe):
            continue
        if is_skipped_stage(safe):
            skipped_stages.append(safe)
            continue
        role = _melodic_role(safe, melodic)
        if role == "known":
            skipped_melodic.append(safe)
            continue
        if role == "other":
            warnings.append(
                f"{display_name}: skipped {safe} (in MELODIC's output folder only melodic_IC holds components)"
            )
            continue
        if not is_nifti_name(safe) and not is_timecourse_name(safe) and not is_stage1_name(safe):
            warnings.append(f"{display_name}: skipped {safe} (not a .nii or .nii.gz file)")
            continue
        if safe in seen:
            warnings.append(f"{display_name}: skipped a second file named {safe}")
            continue
        seen.add(safe)
        chosen[position] = safe
    if skipped_melodic:
        notes.append(melodic_note(display_name, skipped_melodic))
    if skipped_stages:
        notes.append(skipped_stage_note(display_name, skipped_stages))
    return chosen


def _copy_limited(src, dest: Path, budget: list[int], display_name: str, limit: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(1024 * 1024)
            if not chunk:
                break
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ArchiveError(
                    f"{display_name}: the archive unpacks to more than the allowed size "
                    f"({human_bytes(limit)}); refusing it"
                )
            out.write(chunk)


def _out_path(workdir: Path, index: int, safe: str) -> Path:
    # Never the member's own path on disk: a numbered file inside our own folder.
    suffix = storage_suffix(safe)
    return workdir / f"member-{index:05d}{suffix}"


def _zip_members(path, display_name, workdir, warnings, max_members, max_bytes, notes) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{display_name}: not a valid zip archive ({exc})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for info in infos:
            mode = (info.external_attr >> 16) & 0o170000
            if mode in (0o120000, 0o020000, 0o060000, 0o010000, 0o140000):
                raise ArchiveError(
                    f"{display_name}: member {info.filename!r} is a link or device; refusing the archive"
                )
        plan = _plan(display_name, [i.filename for i in infos], warnings, max_members, notes)
        chosen = [(infos[position], safe) for position, safe in plan.items()]
        declared = sum(info.file_size for info, _ in chosen)
        if declared > max_bytes:
            raise ArchiveError(
                f"{display_name}: the archive unpacks to {human_bytes(declared)}, more than "
                f"allowed ({human_bytes(max_bytes)}); refusing it"
            )
        budget = [max_bytes]
        for index, (info, safe) in enumerate(chosen):
            dest = _out_path(workdir, index, safe)
            try:
                with zf.open(info) as src:
                    _copy_limited(src, dest, budget, display_name, max_bytes)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ArchiveError(f"{display_name}: member {safe} is corrupt ({exc})") from None
            yield Member(f"{display_name}/{safe}", dest)


def _tar_members(path, display_name, workdir, warnings, max_members, max_bytes, notes) -> Iterator[Member]:
    try:
        tf = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the `with tf` below, after the checks
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{display_name}: not a valid tar archive ({exc})") from None
    with tf:
        try:
            infos = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{display_name}: the archive is truncated or corrupt ({exc})") from None
        files = []
        for info in infos:
            if info.isdir():
                continue
            if info.issym() or info.islnk():
                raise ArchiveError(f"{display_name}: member {info.name!r} is a link; refusing the archive")
            if not info.isfile():
                raise ArchiveError(
                    f"{display_name}: member {info.name!r} is a device or special file; refusing the archive"
                )
            files.append(info)
        plan = _plan(display_name, [i.name for i in files], warnings, max_members, notes)
        chosen = [(files[position], safe) for position, safe in plan.items()]
        declared = sum(info.size for info, _ in chosen)
        if declared > max_bytes:
            raise ArchiveError(
                f"{display_name}: the archive unpacks to {human_bytes(declared)}, more than "
                f"allowed ({human_bytes(max_bytes)}); refusing it"
            )
        budget = [max_bytes]
        for index, (info, safe) in enumerate(chosen):
            dest = _out_path(workdir, index, safe)
            try:
                src = tf.extractfile(info)
                if src is None:
                    continue
                with src:
                    _copy_limited(src, dest, budget, display_name, max_bytes)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ArchiveError(f"{display_name}: member {safe} is corrupt ({exc})") from None
            yield Member(f"{display_name}/{safe}", dest)


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it; a missing folder or a file that cannot be removed is not an error."""
    shutil.rmtree(path, ignore_errors=True)
