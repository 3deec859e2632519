"""Neurosynth-style association-test term maps built from the Neurosynth v7 data files.

This is the "Build from Neurosynth v7 data files" reference-set source (DESIGN section 6). It reads the files of
the ``neurosynth-data`` release as NiMARE's ``fetch_neurosynth(version="7")`` downloads them and computes, for
every vocabulary term, Neurosynth's association test ("pFgA_z", the map the Neurosynth site calls
"association test") on the standard grid of :mod:`pipeline.maps.grid`.

File formats relied on (checked against public sources, not against a downloaded copy of the release)
-------------------------------------------------------------------------------------------------------------
* ``neurosynth/neurosynth-data`` README (current version): coordinates and metadata are tab-separated, gzip
  compressed, one coordinate per row / one study per row; metadata rows are in the same order as the rows of every
  ``features.npz`` of the same version; ``vocabulary.txt`` holds one label per line, in column order of the
  features; the ``vocab-terms`` features of v0.4+ are tf-idf values.
* The public reorganisation script that produced the v7 files (its repository could not be identified) reads
  the old ``database.txt`` (columns ``id doi x y z space peak_id table_id table_num title authors year journal``,
  as in NiMARE's ``tests/data/test_neurosynth_database.txt``) and writes ``coordinates`` with the columns
  ``id, table_id, table_num, peak_id, x, y, z`` and ``metadata`` with ``id, doi, space, title, authors, year,
  journal`` (one row per id); it saves the features with ``scipy.sparse.save_npz`` as a CSC matrix
  (studies x terms) and the vocabulary as ``"\\n".join(terms)``.
  So in v7 the stereotactic **space lives in the metadata file, per study**, not in the coordinates file.
  NiMARE's ``convert_neurosynth_to_dict``, NeuroLang's ``fetch_neurosynth_peak_data`` (which joins the
  metadata's ``space`` onto the coordinates on ``id``) and an R user script (``melsadany/brain-drug-map``) all
  take the space from the metadata. We use a per-peak ``space`` column of the coordinates file when one exists
  and the metadata's per-study column otherwise.
* The study ``id`` (a PubMed id in v7) ties coordinate rows to metadata rows; both are read as strings, as
  NiMARE does. Vocabulary terms carry no prefix (``"visual"``, ``"working memory"``: unigrams and bigrams with a
  space); the ``terms_abstract_tfidf__`` prefix seen in NiMARE datasets is added by NiMARE, not by the files.
* Space values are ``"MNI"`` and ``"TAL"`` (NeuroLang selects ``space == "TAL"`` for conversion).

Method (choices made explicit)
------------------------------
* A study *has* a term when its tf-idf is ``>= tfidf_threshold`` (0.001, Neurosynth's default frequency
  threshold). The threshold must be positive, so studies without a stored value never have the term.
* Talairach peaks (space starting with ``TAL``, or ``T88``) are converted to MNI with the inverse of Lancaster et
  al. (2007)'s ``icbm_spm2tal`` matrix, the same transform Neurosynth's own code applies (its ``t88_to_mni``).
  Any other space value is taken as MNI, again as Neurosynth does.
* Study activation (MKDA): a mask voxel is active when its centre lies within ``radius_mm`` of the centre of the
  grid voxel nearest to one of the study's peaks (Neurosynth also measures from the rounded peak voxel). Peaks
  whose own voxel falls outside the grid still activate the in-grid part of their sphere.
* Per mask voxel and term, the 2x2 table (has term x active) gets Pearson's chi-square without continuity
  correction. With ``a`` = studies with the term that activate the voxel, ``n_t`` = studies with the term,
  ``n_a`` = studies activating the voxel and ``N`` = all studies, ``ad - bc = a*N - n_t*n_a`` and
  ``chi2 = N (a*N - n_t*n_a)^2 / (n_t (N - n_t) n_a (N - n_a))``. For one degree of freedom the two-sided
  ``z = norm.isf(p / 2)`` equals ``sqrt(chi2)`` exactly, so we take the square root instead of going through a
  p-value that underflows for strong effects; the sign is that of ``P(active | term) - P(active | no term)``
  (= sign of ``a*N - n_t*n_a``). ``|z|`` is capped at ``norm.isf(1e-240)`` (about 33.1), which is where
  Neurosynth's clipping of p at 1e-240 puts it. Tables with an empty margin (no study or every study activates
  the voxel, or no study or every study has the term) have no test and get z = 0 (for the voxel cases
  Neurosynth's sign rule also gives 0). Voxels outside the brain mask are 0.
* A term that no study has (or that every study has) has no test at any voxel: its map would be all 0, a
  zero-variance column that scores r = 0 with every map and fills the bottom of every ranking. Such terms are
  left out of the maps; ``association_z_maps`` reports them in its ``left_out`` list, and the build's message
  names them.
* Counting ``a`` for all terms is the sparse product ``T.T @ A`` (T: studies x terms, A: studies x mask voxels).
  We evaluate it one term row at a time, as a ``bincount`` over the voxel indices of that term's studies'
  rows of A: the same numbers, measured here about 1.5x faster than scipy's sparse product with an int32 A and
  several times faster than with a uint8 A (scipy casts A's whole data array on every product). Terms are
  processed and yielded in batches so memory stays bounded. A is one uint8 CSR matrix; on a synthetic database
  of the real size (14,000 studies, 500,000 peaks) it held 134 M entries (0.7 GB), built in about 10 s, and
  a term took about 70 ms per 700 studies that have it.

Over 500 lines on purpose: reading the release's files, the coordinate transforms and the association test form one
build whose steps share the study and voxel indexing; they are tested together against NumPy and SciPy.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtri

from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, mask_flat_indices, mni_to_voxel

NEUROSYNTH_V7_FILES: dict[str, str] = {
    "coordinates": "data-neurosynth_version-7_coordinates.tsv.gz",
    "metadata": "data-neurosynth_version-7_metadata.tsv.gz",
    "features": "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_features.npz",
    "vocabulary": "data-neurosynth_version-7_vocab-terms_vocabulary.txt",
}

# Lancaster et al. (2007) icbm_spm2tal: MNI (SPM) -> Talairach, homogeneous, column-vector convention.
LANCASTER_MNI_SPM_TO_TAL = np.array(
    [
        [0.9254, 0.0024, -0.0118, -1.0207],
        [-0.0048, 0.9316, -0.0871, -1.7667],
        [0.0152, 0.0883, 0.8924, 4.0926],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
LANCASTER_MNI_SPM_TO_TAL.setflags(write=False)

# Neurosynth clips p at 1e-240 before converting, which bounds |z| here.
Z_MAX: float = float(-ndtri(1e-240))

DEFAULT_TFIDF_THRESHOLD = 0.001
DEFAULT_RADIUS_MM = 10.0
DEFAULT_BATCH = 32

# Bounds the size of temporaries (entries) while building A and while counting one term.
_CHUNK_ENTRIES = 1 << 22
# Studies marked together in one dense boolean block while building A (64 x ~235k voxels = 15 MB).
_STUDIES_PER_BLOCK = 64


@dataclass(frozen=True, eq=False)
class NeurosynthData:
    """The parts of the Neurosynth v7 files the association test needs.

    Attributes
    ----------
    study_ids : list of str
        Study ids in metadata order (= rows of ``tfidf``).
    peaks_mni : numpy.ndarray
        ``(n_peaks, 3)`` float64 peak coordinates in MNI mm (Talairach peaks already converted).
    peak_study : numpy.ndarray
        ``(n_peaks,)`` int64 row index into ``study_ids`` of every peak.
    peak_talairach : numpy.ndarray
        ``(n_peaks,)`` bool, True for peaks that were reported in Talairach space and converted.
    terms : list of str
        Vocabulary terms in column order of ``tfidf``.
    tfidf : scipy.sparse.csc_matrix
        ``(n_studies, n_terms)`` float64 tf-idf values.
    n_dropped_peaks : int
        Coordinate rows ignored because their study id is not in the metadata or a coordinate is not finite.
    """

    study_ids: list[str]
    peaks_mni: np.ndarray
    peak_study: np.ndarray
    peak_talairach: np.ndarray
    terms: list[str]
    tfidf: sparse.csc_matrix
    n_dropped_peaks: int = 0
    _term_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self._term_index:
            self._term_index.update({t: i for i, t in enumerate(self.terms)})

    @property
    def n_studies(self) -> int:
        """Number of studies (rows of ``tfidf``)."""
        return len(self.study_ids)

    @property
    def n_peaks(self) -> int:
        """Number of peaks kept (rows of ``peaks_mni``)."""
        return int(self.peaks_mni.shape[0])

    def term_index(self, term: str) -> int:
        """Column of ``term`` in ``tfidf``; ``KeyError`` when it is not in the vocabulary.

        Parameters
        ----------
        term : str
            A vocabulary term, exactly as in ``terms``.

        Returns
        -------
        int
            Its column index.

        Raises
        ------
        KeyError
            When ``term`` is not in the vocabulary.
        """
        return self._term_index[term]


def tal_to_mni(xyz: np.ndarray) -> np.ndarray:
    """Convert Talairach coordinates to MNI with the inverse of Lancaster's ``icbm_spm2tal`` transform.

    Parameters
    ----------
    xyz : array_like
        ``(n, 3)`` or ``(3,)`` Talairach coordinates in mm.

    Returns
    -------
    numpy.ndarray
        MNI coordinates in mm, float64, same shape as the input.
    """
    xyz = np.asarray(xyz, dtype=float)
    pts = np.atleast_2d(xyz)
    homog = np.c_[pts, np.ones(len(pts))]
    mni = np.linalg.solve(LANCASTER_MNI_SPM_TO_TAL, homog.T).T[:, :3]
    return mni.reshape(xyz.shape)


def _is_talairach(space: Any) -> bool:
    label = str(space).strip().upper()
    return label.startswith("TAL") or label == "T88"


def _require_file(directory: Path, role: str) -> Path:
    path = directory / NEUROSYNTH_V7_FILES[role]
    if not path.is_file():
        raise ValueError(f"Neurosynth v7 {role} file not found: {NEUROSYNTH_V7_FILES[role]} (looked in {directory})")
    return path


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], file_name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{file_name} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in frame.columns)}"
        )


def _read_vocabulary(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        # A blank line would silently shift every later term onto the wrong feature column.
        raise ValueError(f"{path.name} has blank line(s) at {blank[:5]}: one term per line expected")
    return lines


def load_neurosynth_v7(directory: str | Path) -> NeurosynthData:
    """Read the four Neurosynth v7 files from ``directory``.

    Parameters
    ----------
    directory : str or pathlib.Path
        Folder holding the files named in :data:`NEUROSYNTH_V7_FILES` (other files are ignored).

    Returns
    -------
    NeurosynthData
        Studies, MNI peaks, vocabulary and tf-idf matrix.

    Raises
    ------
    ValueError
        When a file or a required column is missing, metadata ids repeat, a file has no ``space`` information,
        or the feature matrix does not match the metadata rows and the vocabulary.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"Neurosynth v7 data directory not found: {directory}")
    paths = {role: _require_file(directory, role) for role in NEUROSYNTH_V7_FILES}

    meta_name, coord_name = NEUROSYNTH_V7_FILES["metadata"], NEUROSYNTH_V7_FILES["coordinates"]
    metadata = pd.read_csv(
        paths["metadata"], sep="\t", dtype={"id": str}, usecols=lambda c: c in ("id", "space"), keep_default_na=False
    )
    _require_columns(metadata, ["id"], meta_name)
    study_ids = metadata["id"].str.strip().tolist()
    if len(set(study_ids)) != len(study_ids):
        dupes = pd.Series(study_ids)[pd.Series(study_ids).duplicated()].unique()[:5]
        raise ValueError(f"{meta_name} repeats study id(s) {', '.join(dupes)}: one row per study expected")

    coords = pd.read_csv(
        paths["coordinates"],
        sep="\t",
        dtype={"id": str, "space": str},
        usecols=lambda c: c in ("id", "x", "y", "z", "space"),
    )
    _require_columns(coords, ["id", "x", "y", "z"], coord_name)

    row_of = pd.Series(np.arange(len(study_ids), dtype=np.int64), index=study_ids)
    peak_study = coords["id"].astype(str).str.strip().map(row_of)
    xyz = coords[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    keep = peak_study.notna().to_numpy() & np.isfinite(xyz).all(axis=1)

    if "space" in coords.columns:
        talairach = coords["space"].map(_is_talairach).to_numpy(dtype=bool)
    elif "space" in metadata.columns:
        study_tal = metadata["space"].map(_is_talairach).to_numpy(dtype=bool)
        talairach = np.zeros(len(coords), dtype=bool)
        talairach[keep] = study_tal[peak_study[keep].to_numpy(dtype=np.int64)]
    else:
        raise ValueError(
            f"no 'space' column in {meta_name} (nor in {coord_name}): cannot tell MNI from Talairach peaks"
        )

    xyz, talairach = xyz[keep], talairach[keep]
    peak_study_idx = peak_study[keep].to_numpy(dtype=np.int64)
    if talairach.any():
        xyz[talairach] = tal_to_mni(xyz[talairach])

    terms = _read_vocabulary(paths["vocabulary"])
    if len(set(terms)) != len(terms):
        dupes = pd.Series(terms)[pd.Series(terms).duplicated()].unique()[:5]
        raise ValueError(f"{NEUROSYNTH_V7_FILES['vocabulary']} repeats term(s) {', '.join(dupes)}")
    try:
        tfidf = sparse.load_npz(paths["features"])
    except Exception as exc:  # a corrupt or non-sparse npz: say which file
        raise ValueError(f"cannot read {NEUROSYNTH_V7_FILES['features']} as a scipy.sparse matrix: {exc}") from exc
    tfidf = sparse.csc_matrix(tfidf, dtype=np.float64)
    if tfidf.shape != (len(study_ids), len(terms)):
        raise ValueError(
            f"{NEUROSYNTH_V7_FILES['features']} is {tfidf.shape[0]} studies x {tfidf.shape[1]} terms, but "
            f"{meta_name} has {len(study_ids)} studies and {NEUROSYNTH_V7_FILES['vocabulary']} {len(terms)} terms"
        )
    tfidf.sort_indices()

    return NeurosynthData(
        study_ids=study_ids,
        peaks_mni=xyz,
        peak_study=peak_study_idx,
        peak_talairach=talairach,
        terms=terms,
        tfidf=tfidf,
        n_dropped_peaks=int((~keep).sum()),
    )


def sphere_offsets(radius_mm: float = DEFAULT_RADIUS_MM) -> np.ndarray:
    """Integer voxel offsets of a sphere of ``radius_mm`` on the standard grid.

    Parameters
    ----------
    radius_mm : float
        Sphere radius in mm (inclusive).

    Returns
    -------
    numpy.ndarray
        ``(k, 3)`` int32 offsets ``(di, dj, dk)`` whose centre distance is ``<= radius_mm``.

    Raises
    ------
    ValueError
        When ``radius_mm`` is negative or not finite.
    """
    if not (radius_mm >= 0 and math.isfinite(radius_mm)):
        raise ValueError(f"radius_mm must be a finite number >= 0, got {radius_mm!r}")
    vox = np.abs(np.diag(GRID_AFFINE)[:3])
    reach = np.floor(radius_mm / vox).astype(int)
    axes = [np.arange(-r, r + 1) for r in reach]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # The epsilon keeps exactly-on-the-surface voxels (e.g. 5 voxels = 10 mm) despite float rounding.
    inside = ((grid * vox) ** 2).sum(axis=1) <= radius_mm**2 + 1e-9
    return grid[inside].astype(np.int32)


def study_activation_matrix(data: NeurosynthData, radius_mm: float = DEFAULT_RADIUS_MM) -> sparse.csr_matrix:
    """MKDA activation of every study at every brain-mask voxel.

    Parameters
    ----------
    data : NeurosynthData
        Loaded Neurosynth data.
    radius_mm : float
        Sphere radius around each peak's nearest grid voxel.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n_studies, n_mask_voxels)`` uint8 with sorted column indices; columns follow
        :func:`pipeline.maps.grid.mask_flat_indices`.

    Raises
    ------
    ValueError
        When ``radius_mm`` is negative or not finite.
    """
    offsets = sphere_offsets(radius_mm)
    mask_idx = mask_flat_indices()
    n_vox, n_studies, n_off = len(mask_idx), data.n_studies, len(offsets)
    shape = np.array(GRID_SHAPE, dtype=np.int64)
    reach = np.abs(offsets).max(axis=0).astype(np.int64) if n_off else np.zeros(3, dtype=np.int64)

    # A grid padded by twice the sphere's reach lets every sphere voxel be addressed as peak + flat offset, without
    # bounds checks, for any peak whose sphere can touch the grid. Padding and non-mask voxels point to column
    # n_vox, a discard column of the scratch below.
    pad = 2 * reach
    pshape = shape + 2 * pad
    lookup = np.full(tuple(pshape), n_vox, dtype=np.int32)
    mi, mj, mk = np.unravel_index(mask_idx, GRID_SHAPE)
    lookup[mi + pad[0], mj + pad[1], mk + pad[2]] = np.arange(n_vox, dtype=np.int32)
    lookup = lookup.ravel()
    strides = np.array([pshape[1] * pshape[2], pshape[2], 1], dtype=np.int64)
    delta = (offsets.astype(np.int64) @ strides).astype(np.int32)

    order = np.argsort(data.peak_study, kind="stable")
    study = data.peak_study[order]
    ijk = mni_to_voxel(data.peaks_mni[order]).reshape(-1, 3).astype(np.int64)
    reaches = np.all((ijk >= -reach) & (ijk < shape + reach), axis=1)
    study = study[reaches]
    base = ((ijk[reaches] + pad) @ strides).astype(np.int32)

    # Peaks of study s are base[first[s]:first[s + 1]].
    first = np.searchsorted(study, np.arange(n_studies + 1))
    per_study = np.diff(first)
    # Unique (study, voxel) pairs are at most min(peaks * sphere, mask) per study. np.empty of that bound only
    # becomes resident where written, so assembling the matrix needs no second full-size copy of the indices.
    bound = int(np.minimum(per_study * n_off, n_vox).sum())
    idx_dtype = np.int32 if bound < np.iinfo(np.int32).max else np.int64
    indices = np.empty(max(bound, 1), dtype=idx_dtype)
    row_nnz = np.zeros(n_studies, dtype=np.int64)

    # Marking voxels in a dense boolean block (a few studies x all mask voxels) and scanning it back
    # deduplicates overlapping spheres and yields CSR order directly; far cheaper than sorting (study, voxel)
    # keys, which took 5x longer on a database of the real size.
    block = max(1, _STUDIES_PER_BLOCK)
    width = n_vox + 1
    scratch = np.zeros(block * width, dtype=bool)
    scratch2d = scratch.reshape(block, width)
    max_peaks = max(1, _CHUNK_ENTRIES // max(n_off, 1))
    filled = 0
    s0 = 0
    while s0 < n_studies:
        s1 = min(s0 + block, int(np.searchsorted(first, first[s0] + max_peaks, side="right")) - 1)
        s1 = max(s1, s0 + 1)
        p0, p1 = first[s0], first[s1]
        if p1 > p0:
            n = s1 - s0
            cols = np.take(lookup, base[p0:p1, None] + delta[None, :])
            cols += ((study[p0:p1] - s0) * width).astype(np.int32)[:, None]
            scratch[cols.ravel()] = True
            scratch2d[:n, n_vox] = False  # the discard column
            # Contiguous flat scan: 2-D np.nonzero (and divmod of the hits) were several times slower here.
            hits = np.flatnonzero(scratch[: n * width])
            scratch[hits] = False
            counts = np.diff(np.searchsorted(hits, np.arange(1, n + 1) * width), prepend=0)
            indices[filled : filled + len(hits)] = hits - np.repeat(np.arange(n, dtype=np.int64) * width, counts)
            row_nnz[s0:s1] = counts
            filled += len(hits)
        s0 = s1

    indptr = np.zeros(n_studies + 1, dtype=idx_dtype)
    np.cumsum(row_nnz, out=indptr[1:])
    values = np.ones(filled, dtype=np.uint8)
    return sparse.csr_matrix((values, indices[:filled], indptr), shape=(n_studies, n_vox), copy=False)


def _column_counts(indices: np.ndarray, n_cols: int) -> np.ndarray:
    """Occurrences of every column in ``indices``, in bounded chunks."""
    total = np.zeros(n_cols, dtype=np.int64)
    for lo in range(0, len(indices), _CHUNK_ENTRIES):
        # bincount is several times slower on int32 input than on intp: widen the chunk first.
        total += np.bincount(indices[lo : lo + _CHUNK_ENTRIES].astype(np.intp), minlength=n_cols)
    return total


def _term_activation_counts(act: sparse.csr_matrix, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[v]`` = number of studies in ``rows`` active at voxel ``v`` (one row of ``T.T @ A``)."""
    out[:] = 0
    if len(rows) == 0:
        return
    starts = act.indptr[rows].tolist()
    stops = act.indptr[np.asarray(rows) + 1].tolist()
    lo = 0
    while lo < len(rows):
        # Gather at most about _CHUNK_ENTRIES voxel indices at a time (always at least one study).
        hi, size = lo, 0
        while hi < len(rows) and (hi == lo or size + stops[hi] - starts[hi] <= _CHUNK_ENTRIES):
            size += stops[hi] - starts[hi]
            hi += 1
        gathered = np.concatenate([act.indices[a:b] for a, b in zip(starts[lo:hi], stops[lo:hi], strict=True)])
        out += np.bincount(gathered.astype(np.intp), minlength=len(out))
        lo = hi


def association_z(term_active: np.ndarray, n_term: np.ndarray, n_active: np.ndarray, n_studies: int) -> np.ndarray:
    """Signed z of the 2x2 chi-square test of independence, vectorised.

    Parameters
    ----------
    term_active : numpy.ndarray
        ``(n_terms, n_voxels)`` studies that have the term and activate the voxel.
    n_term : numpy.ndarray
        ``(n_terms,)`` studies that have the term.
    n_active : numpy.ndarray
        ``(n_voxels,)`` studies that activate the voxel.
    n_studies : int
        All studies.

    Returns
    -------
    numpy.ndarray
        float64 z, positive when activation is more likely in studies with the term; 0 where the table has an
        empty margin; ``|z| <= Z_MAX``.
    """
    n = float(n_studies)
    a = np.asarray(term_active, dtype=np.float64)
    nt = np.asarray(n_term, dtype=np.float64).reshape(-1, 1)
    na = np.asarray(n_active, dtype=np.float64).reshape(1, -1)
    margins = (nt * (n - nt)) * (na * (n - na))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (a * n - nt * na) * np.sqrt(n / margins)
    z[~(margins > 0)] = 0.0
    np.clip(z, -Z_MAX, Z_MAX, out=z)
    return z


def _resolve_terms(data: NeurosynthData, terms: Sequence[str] | str | None) -> list[str]:
    if terms is None:
        return list(data.terms)
    if isinstance(terms, str):
        terms = [terms]
    wanted = list(dict.fromkeys(terms))
    unknown = [t for t in wanted if t not in data._term_index]
    if unknown:
        hints = []
        for t in unknown[:3]:
            close = difflib.get_close_matches(str(t), data.terms, n=3)
            if close:
                hints.append(f"{t!r} -> did you mean {', '.join(map(repr, close))}?")
        sample = ", ".join(repr(t) for t in data.terms[:10])
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(
            f"unknown term(s) {', '.join(map(repr, unknown[:10]))}{more}; "
            + (" ".join(hints) + " " if hints else "")
            + f"the vocabulary has {len(data.terms)} terms, e.g. {sample}"
        )
    return wanted


def association_z_maps(
    data: NeurosynthData,
    terms: Sequence[str] | str | None = None,
    tfidf_threshold: float = DEFAULT_TFIDF_THRESHOLD,
    radius_mm: float = DEFAULT_RADIUS_MM,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
    left_out: list[str] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Neurosynth association-test z maps, one term at a time; terms whose map would be all 0 are left out.

    Arguments are checked when this is called; the maps are computed lazily while iterating.

    Parameters
    ----------
    data : NeurosynthData
        From :func:`load_neurosynth_v7`.
    terms : sequence of str, str or None
        Terms to map, in this order (repeats are dropped); None maps the whole vocabulary.
    tfidf_threshold : float
        A study has a term when its tf-idf is ``>=`` this (must be > 0).
    radius_mm : float
        MKDA sphere radius.
    batch : int
        Terms whose chi-square is evaluated together; bounds memory to a few ``batch x n_mask_voxels`` float64
        arrays.
    progress : callable, optional
        Called as ``progress(done, total)`` with the number of terms finished (left out or not), first with
        ``done = 0``.
    left_out : list of str, optional
        Receives, while iterating, the terms that are not yielded because no study has them, every study has
        them, or no study activates any voxel (their map would be 0 everywhere), in vocabulary order.

    Yields
    ------
    tuple of (str, numpy.ndarray)
        The term and its float32 z map of shape :data:`pipeline.maps.grid.GRID_SHAPE` (0 outside the brain mask); never
        a map that is 0 everywhere.

    Raises
    ------
    ValueError
        For unknown terms (the message lists valid ones) or invalid parameters.
    """
    selected = _resolve_terms(data, terms)
    if not (tfidf_threshold > 0 and math.isfinite(tfidf_threshold)):
        raise ValueError(f"tfidf_threshold must be a finite number > 0, got {tfidf_threshold!r}")
    if not (radius_mm > 0 and math.isfinite(radius_mm)):
        raise ValueError(f"radius_mm must be a finite number > 0, got {radius_mm!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return _iter_z_maps(
        data,
        selected,
        float(tfidf_threshold),
        float(radius_mm),
        int(batch),
        progress,
        left_out if left_out is not None else [],
    )


def _iter_z_maps(
    data: NeurosynthData,
    selected: list[str],
    tfidf_threshold: float,
    radius_mm: float,
    batch: int,
    progress: Callable[[int, int], None] | None,
    left_out: list[str],
) -> Iterator[tuple[str, np.ndarray]]:
    total = len(selected)
    if progress is not None:
        progress(0, total)
    if total == 0:
        return
    act = study_activation_matrix(data, radius_mm)
    n_vox = act.shape[1]
    n_active = _column_counts(act.indices, n_vox)
    mask_idx = mask_flat_indices()
    tfidf = data.tfidf

    done = 0
    counts = np.empty((batch, n_vox), dtype=np.int64)
    for lo in range(0, total, batch):
        names = selected[lo : lo + batch]
        n_term = np.empty(len(names), dtype=np.int64)
        for b, name in enumerate(names):
            col = data.term_index(name)
            span = slice(tfidf.indptr[col], tfidf.indptr[col + 1])
            rows = tfidf.indices[span][tfidf.data[span] >= tfidf_threshold]
            n_term[b] = len(rows)
            _term_activation_counts(act, rows, counts[b])
        z = association_z(counts[: len(names)], n_term, n_active, data.n_studies)
        for b, name in enumerate(names):
            if not np.any(z[b]):
                left_out.append(name)
                continue
            flat = np.zeros(int(np.prod(GRID_SHAPE)), dtype=np.float32)
            flat[mask_idx] = z[b]
            yield name, flat.reshape(GRID_SHAPE)
        done += len(names)
        if progress is not None:
            progress(done, total)
