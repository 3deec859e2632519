"""Neurosynth-style association-test term maps built from the Neurosynth data files.

This is the "Build from Neurosynth v7 data files" reference-set source (DESIGN section 6). It reads the files of
the ``neurosynth-data`` release as NiMARE's ``fetch_neurosynth`` downloads them and computes, for every label of a
vocabulary, Neurosynth's association test ("pFgA_z", the map the Neurosynth site calls "association test") on the
standard grid of :mod:`pipeline.maps.grid`.

Vocabularies: a folder laid out as the repository may hold several (:func:`find_vocabularies`), named
``data-neurosynth_version-<3..7>_vocab-<terms|LDA50|LDA100|LDA200|LDA400>_source-abstract_type-<tfidf|weight>_
features.npz`` with the version's coordinates and metadata and the vocabulary's ``vocabulary.txt`` (and, for
topics, ``keys.tsv``). LDA topics are named ``<number> · <three top words>`` from ``keys.tsv``. The label threshold
defaults to 0.001 for tf-idf and :data:`DEFAULT_TOPIC_THRESHOLD` for topic weights (never 0, summing to 1 per
study); the Talairach transform is a choice (:data:`TAL2MNI_TRANSFORMS`).

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
* A study *has* a term when its feature value is ``>= tfidf_threshold`` (for tf-idf 0.001, Neurosynth's default
  frequency threshold; for topic weights 0.05). The threshold must be positive, so studies without a stored value
  never have the term.
* Talairach peaks (space starting with ``TAL``, or ``T88``) are converted to MNI with the inverse of Lancaster et
  al. (2007)'s ``icbm_spm2tal`` matrix by default, the same transform Neurosynth's own code applies (its
  ``t88_to_mni``), or with the inverse of BrainMap's ``icbm_other`` as NiMARE does (``tal2mni="brainmap"``).
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
import re
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

# Lancaster et al. (2007) icbm_other: MNI (other software) -> Talairach, as distributed by BrainMap
# (tal2icbm_other / icbm_other2tal) and as NiMARE's ``nimare.utils.tal2mni`` inverts it.
BRAINMAP_MNI_OTHER_TO_TAL = np.array(
    [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
BRAINMAP_MNI_OTHER_TO_TAL.setflags(write=False)

# ``--tal2mni`` choices: the MNI -> Talairach matrix whose inverse maps Talairach peaks to MNI.
TAL2MNI_TRANSFORMS: dict[str, np.ndarray] = {
    "lancaster": LANCASTER_MNI_SPM_TO_TAL,  # Neurosynth's own (its t88_to_mni); the default
    "brainmap": BRAINMAP_MNI_OTHER_TO_TAL,  # NiMARE's
}
DEFAULT_TAL2MNI = "lancaster"

# A release file name: data-neurosynth_version-<N>_vocab-<name>_source-<source>_type-<type>_features.npz.
_FEATURES_NAME = re.compile(
    r"^data-neurosynth_version-(?P<version>\d+)_vocab-(?P<vocab>[A-Za-z0-9]+)_source-(?P<source>[A-Za-z0-9]+)"
    r"_type-(?P<type>[A-Za-z0-9]+)_features\.npz$"
)

# Neurosynth clips p at 1e-240 before converting, which bounds |z| here.
Z_MAX: float = float(-ndtri(1e-240))

DEFAULT_TFIDF_THRESHOLD = 0.001
# A study "has" an LDA topic when the topic's weight (its share of the abstract; a study's weights sum to 1) is
# at least this. See docs/methods.md for the choice.
DEFAULT_TOPIC_THRESHOLD = 0.05
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
        ``(n_studies, n_terms)`` float64 feature values: tf-idf for the ``terms`` vocabulary, topic weights for
        the LDA vocabularies (the name is kept from when only tf-idf terms were read).
    n_dropped_peaks : int
        Coordinate rows ignored because their study id is not in the metadata or a coordinate is not finite.
    vocabulary : Vocabulary or None
        The vocabulary the features come from (None for hand-made data).
    term_keys : dict of str to str
        For topic vocabularies, every topic's top words from ``keys.tsv`` (space-separated, most probable first).
    """

    study_ids: list[str]
    peaks_mni: np.ndarray
    peak_study: np.ndarray
    peak_talairach: np.ndarray
    terms: list[str]
    tfidf: sparse.csc_matrix
    n_dropped_peaks: int = 0
    vocabulary: Vocabulary | None = None
    term_keys: dict[str, str] = field(default_factory=dict)
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


@dataclass(frozen=True)
class Vocabulary:
    """One vocabulary of a Neurosynth release folder, as the repository names its files.

    Attributes
    ----------
    version : int
        Database version (3-7).
    name : str
        ``terms`` or ``LDA50``/``LDA100``/``LDA200``/``LDA400``.
    kind : str
        Feature type: ``tfidf`` (terms) or ``weight`` (LDA topics).
    source : str
        Text the features come from (``abstract``).
    """

    version: int
    name: str
    kind: str
    source: str = "abstract"

    @property
    def is_topics(self) -> bool:
        """True for LDA topic vocabularies (features are topic weights)."""
        return self.kind == "weight" or self.name.upper().startswith("LDA")

    @property
    def prefix(self) -> str:
        return f"data-neurosynth_version-{self.version}"

    @property
    def files(self) -> dict[str, str]:
        """File names by role: coordinates, metadata, features, vocabulary, and keys (topics only)."""
        names = {
            "coordinates": f"{self.prefix}_coordinates.tsv.gz",
            "metadata": f"{self.prefix}_metadata.tsv.gz",
            "features": f"{self.prefix}_vocab-{self.name}_source-{self.source}_type-{self.kind}_features.npz",
            "vocabulary": f"{self.prefix}_vocab-{self.name}_vocabulary.txt",
        }
        if self.is_topics:
            names["keys"] = f"{self.prefix}_vocab-{self.name}_keys.tsv"
        return names

    @property
    def label(self) -> str:
        """``terms (v7)``, ``LDA50 (v7)``."""
        return f"{self.name} (v{self.version})"

    def default_threshold(self) -> float:
        """:data:`DEFAULT_TOPIC_THRESHOLD` for topic weights, :data:`DEFAULT_TFIDF_THRESHOLD` for tf-idf."""
        return DEFAULT_TOPIC_THRESHOLD if self.is_topics else DEFAULT_TFIDF_THRESHOLD


def find_vocabularies(directory: str | Path) -> list[Vocabulary]:
    """The vocabularies whose features file is in ``directory``, newest version first, then terms before topics.

    Parameters
    ----------
    directory : str or pathlib.Path
        A folder laid out as the ``neurosynth-data`` repository (only file names are looked at).

    Returns
    -------
    list of Vocabulary
        Possibly empty.
    """
    found = []
    for path in Path(directory).iterdir():
        match = _FEATURES_NAME.match(path.name)
        if match and path.is_file():
            found.append(Vocabulary(int(match["version"]), match["vocab"], match["type"], match["source"]))
    order = {"terms": 0}
    return sorted(found, key=lambda v: (-v.version, order.get(v.name, 1), int(re.sub(r"\D", "", v.name) or 0), v.name))


def choose_vocabulary(directory: str | Path, vocab: str | None = None, version: int | None = None) -> Vocabulary:
    """The vocabulary of ``directory`` that ``vocab`` / ``version`` name.

    Parameters
    ----------
    directory : str or pathlib.Path
        A folder laid out as the ``neurosynth-data`` repository.
    vocab : str or None
        ``terms``, ``LDA50``, ... (case-insensitive; a ``vocab-`` prefix or the rest of the repository's name,
        e.g. ``vocab-LDA50_source-abstract_type-weight``, are accepted). None: the folder must hold one
        vocabulary (of the chosen version).
    version : int or None
        Database version; None: the newest one that has the vocabulary.

    Returns
    -------
    Vocabulary
        The one chosen.

    Raises
    ------
    ValueError
        When the folder does not exist or holds no features file, when no vocabulary matches (the message lists
        those found), or when ``vocab`` is None and there are several to choose from (listed).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"Neurosynth data directory not found: {directory}")
    found = find_vocabularies(directory)
    if not found:
        raise ValueError(
            f"no Neurosynth features file in {directory} (expected names such as "
            "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz or "
            f"{NEUROSYNTH_V7_FILES['features']})"
        )
    listing = ", ".join(v.label for v in found)
    candidates = [v for v in found if version is None or v.version == version]
    if not candidates:
        raise ValueError(f"no vocabulary of version {version} in {directory}; found: {listing}")
    if vocab is None:
        names = list(dict.fromkeys(v.name for v in candidates))
        if len(names) > 1:
            raise ValueError(f"{directory} holds several vocabularies; choose one with --vocab: {listing}")
        return candidates[0]
    wanted = vocab.strip()
    wanted = wanted[len("vocab-") :] if wanted.lower().startswith("vocab-") else wanted
    name = wanted.split("_", 1)[0].lower()
    matches = [v for v in candidates if v.name.lower() == name]
    if not matches:
        raise ValueError(f"no vocabulary {vocab!r} in {directory}; found: {listing}")
    return matches[0]


def tal_to_mni(xyz: np.ndarray, transform: str = DEFAULT_TAL2MNI) -> np.ndarray:
    """Convert Talairach coordinates to MNI with the inverse of one of Lancaster et al. (2007)'s transforms.

    Parameters
    ----------
    xyz : array_like
        ``(n, 3)`` or ``(3,)`` Talairach coordinates in mm.
    transform : str
        ``lancaster`` (inverse of ``icbm_spm2tal``, Neurosynth's own, the default) or ``brainmap`` (inverse of
        ``icbm_other``, as NiMARE converts).

    Returns
    -------
    numpy.ndarray
        MNI coordinates in mm, float64, same shape as the input.

    Raises
    ------
    ValueError
        For an unknown ``transform``.
    """
    if transform not in TAL2MNI_TRANSFORMS:
        raise ValueError(f"unknown Talairach transform {transform!r}; choose one of {', '.join(TAL2MNI_TRANSFORMS)}")
    xyz = np.asarray(xyz, dtype=float)
    pts = np.atleast_2d(xyz)
    homog = np.c_[pts, np.ones(len(pts))]
    mni = np.linalg.solve(TAL2MNI_TRANSFORMS[transform], homog.T).T[:, :3]
    return mni.reshape(xyz.shape)


def _is_talairach(space: Any) -> bool:
    label = str(space).strip().upper()
    return label.startswith("TAL") or label == "T88"


def _require_file(directory: Path, role: str, files: dict[str, str] | None = None, label: str = "v7") -> Path:
    name = (files or NEUROSYNTH_V7_FILES)[role]
    path = directory / name
    if not path.is_file():
        raise ValueError(f"Neurosynth {label} {role} file not found: {name} (looked in {directory})")
    return path


def _topic_names(labels: list[str], keys_path: Path | None) -> tuple[list[str], dict[str, str]]:
    """``17 · motor cortex hand`` names for the topics of an LDA vocabulary, and each name's full key list.

    The number is the topic's (the vocabulary label's leading number, e.g. ``17_motor_cortex_hand``); the words
    are the first three of its line in ``keys.tsv`` (topic number, a weight, then the top words), or of the
    vocabulary label when there is no keys file.
    """
    keys: dict[str, list[str]] = {}
    if keys_path is not None:
        for line in keys_path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0].strip():
                keys[parts[0].strip()] = parts[2].split()
    names, full = [], {}
    for label in labels:
        number, _, rest = label.partition("_")
        words = keys.get(number) or [w for w in rest.split("_") if w]
        name = f"{number} · {' '.join(words[:3])}".strip()
        names.append(name)
        full[name] = " ".join(words)
    return names, full


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


def load_neurosynth_v7(directory: str | Path, tal2mni: str = DEFAULT_TAL2MNI) -> NeurosynthData:
    """Read the four Neurosynth v7 tf-idf term files from ``directory``.

    Parameters
    ----------
    directory : str or pathlib.Path
        Folder holding the files named in :data:`NEUROSYNTH_V7_FILES` (other files are ignored).
    tal2mni : str
        Talairach-to-MNI transform (:data:`TAL2MNI_TRANSFORMS`).

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
    return _load(paths, dict(NEUROSYNTH_V7_FILES), Vocabulary(7, "terms", "tfidf"), tal2mni)


def load_neurosynth(
    directory: str | Path, vocab: str | None = None, version: int | None = None, tal2mni: str = DEFAULT_TAL2MNI
) -> NeurosynthData:
    """Read one vocabulary of a folder laid out as the ``neurosynth-data`` repository (any version 3-7).

    Parameters
    ----------
    directory : str or pathlib.Path
        The folder.
    vocab, version
        Which vocabulary (:func:`choose_vocabulary`).
    tal2mni : str
        Talairach-to-MNI transform (:data:`TAL2MNI_TRANSFORMS`).

    Returns
    -------
    NeurosynthData
        With ``vocabulary`` set; LDA topics are named ``<number> · <top three words>`` and their top words are
        in ``term_keys``.

    Raises
    ------
    ValueError
        As :func:`choose_vocabulary` and :func:`load_neurosynth_v7`.
    """
    directory = Path(directory)
    chosen = choose_vocabulary(directory, vocab, version)
    files = chosen.files
    label = f"v{chosen.version} {chosen.name}"
    paths = {role: _require_file(directory, role, files, label) for role in files if role != "keys"}
    if "keys" in files and (directory / files["keys"]).is_file():
        paths["keys"] = directory / files["keys"]
    return _load(paths, files, chosen, tal2mni)


def _load(paths: dict[str, Path], files: dict[str, str], vocabulary: Vocabulary, tal2mni: str) -> NeurosynthData:
    if tal2mni not in TAL2MNI_TRANSFORMS:
        raise ValueError(f"unknown Talairach transform {tal2mni!r}; choose one of {', '.join(TAL2MNI_TRANSFORMS)}")
    meta_name, coord_name = files["metadata"], files["coordinates"]
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
        xyz[talairach] = tal_to_mni(xyz[talairach], tal2mni)

    terms = _read_vocabulary(paths["vocabulary"])
    if len(set(terms)) != len(terms):
        dupes = pd.Series(terms)[pd.Series(terms).duplicated()].unique()[:5]
        raise ValueError(f"{files['vocabulary']} repeats term(s) {', '.join(dupes)}")
    term_keys: dict[str, str] = {}
    if vocabulary.is_topics:
        terms, term_keys = _topic_names(terms, paths.get("keys"))
        if len(set(terms)) != len(terms):
            raise ValueError(f"{files['vocabulary']}: topic numbers repeat")
    try:
        tfidf = sparse.load_npz(paths["features"])
    except Exception as exc:  # a corrupt or non-sparse npz: say which file
        raise ValueError(f"cannot read {files['features']} as a scipy.sparse matrix: {exc}") from exc
    tfidf = sparse.csc_matrix(tfidf, dtype=np.float64)
    if tfidf.shape != (len(study_ids), len(terms)):
        raise ValueError(
            f"{files['features']} is {tfidf.shape[0]} studies x {tfidf.shape[1]} terms, but "
            f"{meta_name} has {len(study_ids)} studies and {files['vocabulary']} {len(terms)} terms"
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
        vocabulary=vocabulary,
        term_keys=term_keys,
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
    tfidf_threshold: float | None = None,
    radius_mm: float = DEFAULT_RADIUS_MM,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
    left_out: list[str] | None = None,
    study_counts: dict[str, int] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Neurosynth association-test z maps, one term at a time; terms whose map would be all 0 are left out.

    Arguments are checked when this is called; the maps are computed lazily while iterating.

    Parameters
    ----------
    data : NeurosynthData
        From :func:`load_neurosynth_v7`.
    terms : sequence of str, str or None
        Terms to map, in this order (repeats are dropped); None maps the whole vocabulary.
    tfidf_threshold : float or None
        A study has a term when its feature value (tf-idf, or topic weight) is ``>=`` this (must be > 0). None:
        the vocabulary's default (:meth:`Vocabulary.default_threshold`; 0.001 without a vocabulary).
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
    study_counts : dict, optional
        Receives, while iterating, the number of studies that have each term (those a map rests on).

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
    if tfidf_threshold is None:
        tfidf_threshold = data.vocabulary.default_threshold() if data.vocabulary else DEFAULT_TFIDF_THRESHOLD
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
        study_counts if study_counts is not None else {},
    )


def _iter_z_maps(
    data: NeurosynthData,
    selected: list[str],
    tfidf_threshold: float,
    radius_mm: float,
    batch: int,
    progress: Callable[[int, int], None] | None,
    left_out: list[str],
    study_counts: dict[str, int],
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
            study_counts[name] = len(rows)
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
