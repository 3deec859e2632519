"""Reference sets: the term maps components are decoded against (DESIGN section 6)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from pipeline.decoding.decode import open_reference_matrix, write_reference_matrix
from pipeline.maps.files import load_map, save_map
from pipeline.maps.grid import GRID_SHAPE, brain_mask, voxel_coordinates_mm
from pipeline.maps.nifti import check_nifti, is_nifti_name, resample_to_grid
from pipeline.maps.thumbnails import save_thumbnail
from store.artifacts import term_key
from store.config import get_settings
from store.models import ReferenceSet, Term, slugify
from store.storage import get_storage

BUILTIN_NAME = "built-in demo reference"
BUILTIN_DESCRIPTION = (
    "Synthetic term maps generated from canonical MNI peak coordinates of the neuroimaging literature "
    "(10 mm spheres, smoothed). A demonstration reference, not Neurosynth data."
)

# Canonical MNI peaks (mm) per term, as commonly reported for each function.
BUILTIN_PEAKS: dict[str, list[tuple[int, int, int]]] = {
    "visual": [(-12, -96, 2), (14, -94, 2), (0, -84, 4)],  # occipital pole, calcarine
    "auditory": [(-50, -22, 8), (52, -18, 6)],  # Heschl's gyri
    "language": [(-48, 20, 10), (-56, -42, 6)],  # left IFG, left posterior STG/STS
    "emotion": [(-22, -4, -18), (22, -4, -18)],  # amygdalae
    "memory": [(-26, -24, -14), (26, -24, -14)],  # hippocampi
    "pain": [(-38, -16, 12), (40, -14, 10), (10, -18, 8)],  # posterior insulae, thalamus
    "attention": [(-28, -60, 50), (30, -58, 50)],  # intraparietal sulci
    "sensory": [(-52, -24, 20), (54, -22, 22)],  # secondary somatosensory cortex
    "motor": [(-38, -22, 58), (-2, -6, 56)],  # left M1 hand area, SMA
    "faces": [(-40, -52, -20), (42, -52, -20)],  # fusiform face areas
    "reward": [(-10, 10, -8), (10, 10, -8), (0, 44, -10)],  # ventral striatum, vmPFC
    "social": [(-50, -60, 24), (52, -56, 22), (0, 52, 20)],  # TPJ, dorsomedial PFC
    "working memory": [(-44, 30, 28), (44, 32, 30)],  # dorsolateral PFC
    "default mode": [(0, -54, 28), (-44, -70, 36), (46, -66, 36)],  # precuneus/PCC, angular gyri
    "reading": [(-44, -58, -12)],  # visual word form area
    "motion": [(-44, -70, 2), (46, -66, 2)],  # MT+/V5
    "interoception": [(-34, 20, -2), (36, 22, -2)],  # anterior insulae
    "music": [(58, 0, -4), (-56, -4, -4)],  # anterior STG
    "scenes": [(-26, -42, -10), (28, -40, -10)],  # parahippocampal place areas
    "cognitive control": [(0, 24, 40)],  # dorsal ACC / pre-SMA
    "timing": [(-24, -62, -28), (26, -62, -28)],  # cerebellum lobule VI
    "eye movements": [(-26, -2, 52), (28, -2, 52)],  # frontal eye fields
}

SPHERE_RADIUS_MM = 10.0
SMOOTH_SIGMA_MM = 4.0
PEAK_Z = 6.0


@lru_cache(maxsize=64)
def builtin_term_map(peaks: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """A Neurosynth-like map: 10 mm spheres at the peaks, smoothed, masked, scaled to a peak of PEAK_Z.

    Cached and read-only: the demo generator asks for the same maps many times.

    Parameters
    ----------
    peaks : tuple of (float, float, float)
        MNI peak coordinates in mm, as a tuple of tuples (the cache needs a hashable argument).

    Returns
    -------
    numpy.ndarray
        ``(91, 109, 91)`` float32, read-only and shared: maximum :data:`PEAK_Z`, 0 outside the brain mask; all 0
        when no sphere reaches the mask.
    """
    coords = voxel_coordinates_mm()
    data = np.zeros(GRID_SHAPE, dtype=np.float32)
    for peak in peaks:
        dist2 = ((coords - np.asarray(peak, dtype=np.float32)) ** 2).sum(axis=-1)
        data[dist2 <= SPHERE_RADIUS_MM**2] = 1.0
    data = gaussian_filter(data, SMOOTH_SIGMA_MM / 2.0)
    data *= brain_mask()
    peak = data.max()
    out = (data * (PEAK_Z / peak)).astype(np.float32) if peak > 0 else data
    out.setflags(write=False)
    return out


def matrix_path(reference: ReferenceSet) -> Path:
    """Local, memory-mappable copy of the normalised matrix (rebuilt from the term maps if missing).

    Parameters
    ----------
    reference : ReferenceSet
        A reference set with an id (flushed).

    Returns
    -------
    pathlib.Path
        ``<INCDB_DATA_DIR>/cache/reference/<id>-<slug of the name>.npy``; the file need not exist
        (:func:`load_matrix` builds it then).
    """
    return get_settings().data_dir / "cache" / "reference" / f"{reference.id}-{slugify(reference.name)}.npy"


def create_reference_set(
    session: Session,
    name: str,
    source: str,
    term_maps: Iterator[tuple[str, np.ndarray]] | Iterable[tuple[str, np.ndarray]],
    description: str = "",
    activate: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReferenceSet:
    """Store the term maps of a new reference set and build its normalised matrix.

    The set and its terms are added to the session and flushed, not committed. If the transaction rolls back,
    the term maps written to storage and the matrix file are deleted.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    name : str
        Name of the new set, unique among reference sets.
    source : str
        Where the maps come from, one of :data:`store.models.REFERENCE_SOURCES`.
    term_maps : iterable of (str, numpy.ndarray)
        ``(term name, map)`` pairs in column order, each map ``(91, 109, 91)`` on the standard grid (stored as
        float32); consumed once, one pair at a time. Errors the iterable raises (e.g.
        :class:`pipeline.maps.nifti.NiftiError`) propagate.
    description : str
        Shown with the set.
    activate : bool
        True: make it the active set (:func:`set_active`; components are not re-decoded here).
    progress : callable or None
        Called as ``progress(done, 0)`` after each stored term map (the total is not known in advance).

    Returns
    -------
    ReferenceSet
        The new set.

    Raises
    ------
    ValueError
        When a set of that name exists, two terms have the same slug, a map is not on the standard grid, or
        ``term_maps`` is empty.
    """
    if session.scalar(select(ReferenceSet).where(ReferenceSet.name == name)) is not None:
        raise ValueError(f"a reference set named {name!r} already exists")
    reference = ReferenceSet(
        name=name, source=source, description=description, active=False, voxel_count=int(brain_mask().sum())
    )
    session.add(reference)
    session.flush()
    ref_id, ref_matrix = reference.id, matrix_path(reference)

    def _discard_files(_session, _previous_transaction) -> None:
        # A refused or rolled-back set leaves no term maps or matrix behind (its id may be handed out again).
        get_storage().delete_prefix(f"reference/{ref_id}")
        ref_matrix.unlink(missing_ok=True)

    event.listen(session, "after_soft_rollback", _discard_files, once=True)
    names: list[str] = []
    seen: set[str] = set()
    for term_name, data in term_maps:
        slug = slugify(term_name)
        if slug in seen:
            raise ValueError(f"two term maps are both named {term_name!r}")
        seen.add(slug)
        if data.shape != GRID_SHAPE:
            raise ValueError(f"term map {term_name!r} is not on the standard grid")
        key = term_key(reference.id, slug)
        save_map(key, data)
        save_thumbnail(key, data)
        session.add(Term(reference_set_id=reference.id, name=term_name, slug=slug, column=len(names), storage_key=key))
        names.append(term_name)
        if progress:
            progress(len(names), 0)
    if not names:
        raise ValueError("the reference set has no term maps")
    session.flush()
    build_matrix(session, reference)
    if activate:
        set_active(session, reference)
    return reference


def build_matrix(session: Session, reference: ReferenceSet) -> Path:
    """Write the normalised matrix of a set from its stored term maps, at :func:`matrix_path`.

    Sets ``reference.matrix_key`` to the file name (not flushed).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session to read the terms in.
    reference : ReferenceSet
        The set whose terms are in the database and whose term maps are in storage.

    Returns
    -------
    pathlib.Path
        The ``(n_mask_voxels, n_terms)`` float32 ``.npy`` file written.

    Raises
    ------
    KeyError
        When a term's map is missing from storage.
    """
    terms = session.scalars(select(Term).where(Term.reference_set_id == reference.id).order_by(Term.column)).all()
    path = matrix_path(reference)
    write_reference_matrix(path, (load_map(t.storage_key) for t in terms), len(terms))
    reference.matrix_key = path.name
    return path


def set_active(session: Session, reference: ReferenceSet) -> None:
    """Make ``reference`` the only active set (not committed; components are not re-decoded here).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    reference : ReferenceSet
        The set to activate.
    """
    for other in session.scalars(select(ReferenceSet).where(ReferenceSet.active.is_(True))):
        other.active = False
    session.flush()
    reference.active = True


def active_reference(session: Session) -> ReferenceSet | None:
    """The active reference set, or None when no set is active."""
    return session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))


def require_active_reference(session: Session) -> ReferenceSet:
    """The active reference set.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.

    Returns
    -------
    ReferenceSet
        The active set.

    Raises
    ------
    RuntimeError
        When no set is active (the message says to run ``python -m pipeline init``).
    """
    ref = active_reference(session)
    if ref is None:
        raise RuntimeError("no active reference set: run `python -m pipeline init` first")
    return ref


_matrix_cache: dict[tuple[str, float], np.ndarray] = {}
_matrix_lock = threading.Lock()


def load_matrix(session: Session, reference: ReferenceSet) -> tuple[np.ndarray, list]:
    """The memory-mapped matrix (built from stored term maps when this machine has no copy) and its terms, in
    column order, as rows with ``id``, ``name``, ``slug`` and ``storage_key`` (plain rows: thousands of terms load
    several times faster than as ORM objects).

    The open matrix is cached per process for its file and modification time (one matrix at a time).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session to read the terms in.
    reference : ReferenceSet
        The set to decode against.

    Returns
    -------
    matrix : numpy.ndarray
        ``(n_mask_voxels, n_terms)`` float32 read-only memory map, shared by every caller in the process.
    terms : list of sqlalchemy.Row
        ``n_terms`` rows with ``id``, ``name``, ``slug`` and ``storage_key``, in column order.

    Raises
    ------
    RuntimeError
        When the matrix file's column count differs from the set's number of terms.
    ValueError
        When the matrix file does not fit the current brain mask.
    """
    terms = session.execute(
        select(Term.id, Term.name, Term.slug, Term.storage_key)
        .where(Term.reference_set_id == reference.id)
        .order_by(Term.column)
    ).all()
    path = matrix_path(reference)
    with _matrix_lock:
        if not path.exists():
            build_matrix(session, reference)
        key = (str(path), os.stat(path).st_mtime)
        if key not in _matrix_cache:
            _matrix_cache.clear()
            _matrix_cache[key] = open_reference_matrix(path)
        matrix = _matrix_cache[key]
    if matrix.shape[1] != len(terms):
        raise RuntimeError(f"reference matrix {path} has {matrix.shape[1]} columns for {len(terms)} terms")
    return matrix, terms


def builtin_term_maps() -> Iterator[tuple[str, np.ndarray]]:
    """The built-in term maps, one per term of :data:`BUILTIN_PEAKS`, in that order.

    Yields
    ------
    tuple of (str, numpy.ndarray)
        The term and its ``(91, 109, 91)`` float32 read-only map (:func:`builtin_term_map`).
    """
    for name, peaks in BUILTIN_PEAKS.items():
        yield name, builtin_term_map(tuple(peaks))


def ensure_builtin_reference(session: Session) -> ReferenceSet:
    """Create the built-in set if missing; activate it when no set is active.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.

    Returns
    -------
    ReferenceSet
        The built-in set (:data:`BUILTIN_NAME`), active or not.
    """
    ref = session.scalar(select(ReferenceSet).where(ReferenceSet.name == BUILTIN_NAME))
    if ref is None:
        ref = create_reference_set(
            session, BUILTIN_NAME, "builtin", builtin_term_maps(), description=BUILTIN_DESCRIPTION
        )
    if active_reference(session) is None:
        set_active(session, ref)
    return ref


NEUROSYNTH_TOPICS_NAME = "Neurosynth v7 topics (LDA-50)"
# The shipped Neurosynth v7 files (coordinates, metadata, LDA-50 topics; ODbL), built into the default reference.
SHIPPED_NEUROSYNTH_DIR = Path(__file__).resolve().parents[2] / "reference" / "neurosynth-v7"
# Which reference `pipeline init` builds: "neurosynth" (the shipped topics, default) or "builtin" (the synthetic
# 22-term set: fast, for tests), from the environment or else from a one-word file in the data directory (so that a
# test's data directory keeps saying it to commands run without the test's environment).
# INCDB_REFERENCE_DATA points at another folder of Neurosynth files.
INIT_REFERENCE_ENV = "INCDB_INIT_REFERENCE"
INIT_REFERENCE_FILE = "init-reference.txt"
REFERENCE_DATA_ENV = "INCDB_REFERENCE_DATA"
_NOTES_HEADING = "Studies per map, and top words:"
_NOTE_SEP = " | "


def init_reference_kind() -> str:
    """``neurosynth`` or ``builtin``: what :func:`ensure_default_reference` builds (:data:`INIT_REFERENCE_ENV`, else
    the data directory's :data:`INIT_REFERENCE_FILE`, else ``neurosynth``).

    Raises
    ------
    ValueError
        For any other value.
    """
    kind, where = os.environ.get(INIT_REFERENCE_ENV, "").strip().lower(), INIT_REFERENCE_ENV
    marker = get_settings().data_dir / INIT_REFERENCE_FILE
    if not kind and marker.is_file():
        kind, where = marker.read_text(encoding="utf-8").strip().lower(), str(marker)
    kind = kind or "neurosynth"
    if kind not in ("neurosynth", "builtin"):
        raise ValueError(f"{where} must be 'neurosynth' or 'builtin', not {kind!r}")
    return kind


def shipped_reference_dir() -> Path:
    """The folder of Neurosynth files the default reference is built from (:data:`REFERENCE_DATA_ENV` or
    :data:`SHIPPED_NEUROSYNTH_DIR`)."""
    configured = os.environ.get(REFERENCE_DATA_ENV, "").strip()
    return Path(configured) if configured else SHIPPED_NEUROSYNTH_DIR


def neurosynth_description(data, threshold: float, tal2mni: str, study_counts: dict[str, int]) -> str:
    """The description of a set built from Neurosynth files: source, choices, licence, and one line per map with
    the number of studies it rests on (and a topic's top words).

    Parameters
    ----------
    data : pipeline.decoding.neurosynth.NeurosynthData
        What was built from.
    threshold : float
        The label threshold used.
    tal2mni : str
        The Talairach transform used.
    study_counts : dict of str to int
        Studies that have each term kept (from :func:`pipeline.decoding.neurosynth.association_z_maps`).

    Returns
    -------
    str
        Plain text; :func:`reference_term_notes` reads the per-map lines back.
    """
    vocab = data.vocabulary
    what = f"vocabulary {vocab.name} of Neurosynth v{vocab.version}" if vocab else "Neurosynth"
    kind = "topic weight" if vocab is not None and vocab.is_topics else "tf-idf"
    lines = [
        f"Association-test z maps (MKDA chi-square, 10 mm spheres) built from the {what} "
        f"({data.n_studies:,} studies, {data.n_peaks:,} peaks): a study has a label when its {kind} is >= "
        f"{threshold:g}; Talairach peaks converted to MNI with the {tal2mni} transform. Data: Neurosynth "
        "(neurosynth.org, github.com/neurosynth/neurosynth-data), Open Database License (ODbL 1.0); these derived "
        "maps are under the same licence.",
        "",
        _NOTES_HEADING,
    ]
    for name, n in study_counts.items():
        keys = data.term_keys.get(name, "")
        lines.append(_NOTE_SEP.join([name, f"{n} studies"] + ([keys] if keys else [])))
    return "\n".join(lines)


def reference_term_notes(description: str) -> dict[str, tuple[int, str]]:
    """Per-map notes of a set's description (:func:`neurosynth_description`): name -> (studies, top words).

    Parameters
    ----------
    description : str
        A reference set's description.

    Returns
    -------
    dict of str to (int, str)
        Empty when the description has no notes.
    """
    _, found, rest = description.partition(_NOTES_HEADING)
    notes: dict[str, tuple[int, str]] = {}
    if not found:
        return notes
    for line in rest.splitlines():
        parts = line.split(_NOTE_SEP)
        if len(parts) >= 2 and parts[1].endswith(" studies") and parts[1].split()[0].isdigit():
            notes[parts[0]] = (int(parts[1].split()[0]), parts[2] if len(parts) > 2 else "")
    return notes


def build_neurosynth_reference(
    session: Session,
    name: str,
    data,
    threshold: float | None = None,
    tal2mni: str = "lancaster",
    terms=None,
    description: str = "",
    activate: bool = False,
    progress: Callable[[int, int], None] | None = None,
    left_out: list[str] | None = None,
) -> ReferenceSet:
    """Build and store the association-test maps of loaded Neurosynth data as a new reference set.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    name : str
        Name of the new set.
    data : pipeline.decoding.neurosynth.NeurosynthData
        From :func:`pipeline.decoding.neurosynth.load_neurosynth`.
    threshold : float or None
        Label threshold; None: the vocabulary's default.
    tal2mni : str
        The transform the data was loaded with (recorded in the description).
    terms : sequence of str or None
        Labels to map; None: all.
    description : str
        Put before the generated description.
    activate : bool
        Make it the active set (components are not re-decoded here).
    progress : callable or None
        ``progress(done, total)`` in labels.
    left_out : list or None
        Receives the labels left out (map 0 everywhere).

    Returns
    -------
    ReferenceSet
        The new set.

    Raises
    ------
    ValueError
        As :func:`create_reference_set` and :func:`pipeline.decoding.neurosynth.association_z_maps`.
    """
    from pipeline.decoding.neurosynth import association_z_maps

    vocab = data.vocabulary
    if threshold is None:
        threshold = vocab.default_threshold() if vocab is not None else 0.001
    counts: dict[str, int] = {}
    maps = association_z_maps(
        data, terms=terms, tfidf_threshold=threshold, progress=progress, left_out=left_out, study_counts=counts
    )
    ref = create_reference_set(session, name, "neurosynth-v7", maps, activate=activate)
    kept_names = session.scalars(select(Term.name).where(Term.reference_set_id == ref.id).order_by(Term.column))
    kept = {t: counts[t] for t in kept_names if t in counts}
    generated = neurosynth_description(data, threshold, tal2mni, kept)
    ref.description = f"{description.strip()}\n\n{generated}" if description.strip() else generated
    return ref


def ensure_default_reference(session: Session, progress: Callable[[int, int], None] | None = None) -> ReferenceSet:
    """The reference ``pipeline init`` makes: :data:`NEUROSYNTH_TOPICS_NAME` from the shipped files (or the
    built-in set when :func:`init_reference_kind` says ``builtin``), created if missing.

    It is activated when no set is active or the active one is the built-in demo set.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    progress : callable or None
        ``progress(done, total)`` in topics while building.

    Returns
    -------
    ReferenceSet
        The default set.

    Raises
    ------
    ValueError
        When the shipped files are missing or unreadable.
    """
    if init_reference_kind() == "builtin":
        return ensure_builtin_reference(session)
    ref = session.scalar(select(ReferenceSet).where(ReferenceSet.name == NEUROSYNTH_TOPICS_NAME))
    if ref is None:
        from pipeline.decoding.neurosynth import load_neurosynth

        try:
            data = load_neurosynth(shipped_reference_dir(), vocab="LDA50", version=7)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; the default reference needs the shipped Neurosynth files (or set {INIT_REFERENCE_ENV}=builtin "
                "for the synthetic demo reference)"
            ) from None
        ref = build_neurosynth_reference(session, NEUROSYNTH_TOPICS_NAME, data, progress=progress)
    current = active_reference(session)
    if current is None or (current.source == "builtin" and current.id != ref.id):
        set_active(session, ref)
    return ref


def nifti_folder_term_maps(directory: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Term maps from a folder of NIfTI files; the term is the file name without extension
    (``pain_association-test_z.nii.gz`` -> ``pain``; underscores in the remaining name become spaces).

    Files are read in name order, one at a time while iterating; other files in the folder are ignored. As this
    is a generator, every error is raised during iteration, not when it is called.

    Parameters
    ----------
    directory : pathlib.Path
        Folder of 3D ``.nii`` / ``.nii.gz`` term maps, in any space with a valid affine.

    Yields
    ------
    tuple of (str, numpy.ndarray)
        The term and its map resampled onto the standard grid, ``(91, 109, 91)`` float32.

    Raises
    ------
    ValueError
        When ``directory`` is not a folder, holds no NIfTI file, or a file has more than one volume.
    pipeline.maps.nifti.NiftiError
        When a file cannot be used as a map (its header or data fails the checks of
        :func:`pipeline.maps.nifti.check_nifti`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and is_nifti_name(p.name))
    if not files:
        raise ValueError(f"{directory} contains no .nii or .nii.gz files")
    for path in files:
        stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.name[:-4]
        for suffix in (
            "_association-test_z",
            "_uniformity-test_z",
            "_pAgF_z_FDR_0.01",
            "_pFgA_z_FDR_0.01",
            "_association-test_z_FDR_0.01",
            "_z",
        ):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        checked = check_nifti(path)
        if checked.n_volumes != 1:
            raise ValueError(f"{path.name}: a term map must be 3D, this file has {checked.n_volumes} volumes")
        yield stem.replace("_", " ").strip(), resample_to_grid(checked.volumes(), checked.affine)[0]


def term_note(session: Session, _user, slug: str) -> dict | None:
    """What the active set's description says of one term: the studies its map rests on and its top words.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    _user
        Unused (the signature of the page readers).
    slug : str
        The term's slug in the active set.

    Returns
    -------
    dict or None
        ``{"studies": int, "keys": str}`` (``keys`` empty for tf-idf terms); None when the term or its note is
        missing (e.g. sets not built from Neurosynth files).
    """
    from store.queries import get_term

    term = get_term(session, slug)
    if term is None:
        return None
    found = reference_term_notes(term.reference_set.description or "").get(term.name)
    return None if found is None else {"studies": found[0], "keys": found[1]}
