"""Cluster tables of maps on the standard grid (DESIGN section 17).

A map is thresholded on both signs (``value > threshold`` and ``value < -threshold_negative``, the viewer's own
test), the voxels of each sign are split into face-connected clusters by ``scipy.ndimage.label`` (6-connectivity),
and clusters smaller than a minimum size are dropped. Each cluster reports its peak (the voxel of largest absolute
value, the first in C order on ties) in MNI mm with its value, its size in voxels and mm^3, the region at the peak
and the share of its voxels in each region of one atlas (:mod:`pipeline.anatomy.atlas`). Rows are ordered by size,
then by
absolute peak value.

Nothing here knows where a map comes from, so a visitor's uploaded map can be reported with the same code.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.anatomy.atlas import AtlasError, check_atlas, grid_atlas, region_shares
from pipeline.maps.files import load_map
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, voxel_to_mni
from store.storage import get_storage

DEFAULT_MIN_VOXELS = 10
# Starting thresholds per map kind, the viewer's too (dashboard/components/maps.py): MELODIC components are z maps,
# built-in and Neurosynth term maps peak around z = 6, merged maps are means (zeros included) and run lower.
DEFAULT_THRESHOLDS = {"component": 2.5, "term": 1.0, "mean": 1.5, "merged": 1.5}
MAX_MIN_VOXELS = 100_000
MAX_THRESHOLD = 1e9
MAX_CLUSTERS = 200  # a threshold near 0 on a noisy map makes thousands of 1-voxel clusters; the largest are kept
MAX_REGIONS = 8  # regions listed per cluster (the rest are summed as "other")
VOXEL_MM3 = float(abs(np.linalg.det(GRID_AFFINE[:3, :3])))
FACES = ndimage.generate_binary_structure(3, 1)  # neighbours share a face: 6-connectivity

CSV_COLUMNS = (
    "cluster",
    "sign",
    "peak_x",
    "peak_y",
    "peak_z",
    "peak_value",
    "voxels",
    "volume_mm3",
    "atlas",
    "peak_label",
    "peak_probability",
    "regions",
)


class ClusterError(ValueError):
    """A threshold, minimum size or atlas that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ClusterSettings:
    """Checked settings of one cluster table."""

    threshold: float
    threshold_negative: float
    min_voxels: int
    atlas: str


def _number(value: Any, name: str, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ClusterError(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ClusterError(f"{name} must be a number, not {str(value)[:40]!r}") from None
    if not math.isfinite(number) or not 0 <= abs(number) <= MAX_THRESHOLD:
        raise ClusterError(f"{name} must be a finite number up to {MAX_THRESHOLD:g}")
    return number


def check_settings(
    threshold: Any = None,
    threshold_negative: Any = None,
    min_voxels: Any = None,
    atlas: Any = None,
    default_threshold: float = 0.0,
) -> ClusterSettings:
    """Settings from untrusted values (query parameters, a browser's store).

    Parameters
    ----------
    threshold : number, text or None
        Positive threshold, >= 0; None or "" means ``default_threshold``.
    threshold_negative : number, text or None
        Absolute value of the negative threshold, >= 0; None or "" means the positive threshold.
    min_voxels : int, text or None
        Smallest cluster kept, 1 to :data:`MAX_MIN_VOXELS`; None or "" means :data:`DEFAULT_MIN_VOXELS`.
    atlas : str or None
        Atlas id for the region names; None or "" means the default atlas.
    default_threshold : float
        The threshold when none is given.

    Returns
    -------
    ClusterSettings

    Raises
    ------
    ClusterError
        When a value is not a number, is negative or too large, or names no atlas.
    """
    positive = _number(threshold, "threshold", default_threshold)
    if positive < 0:
        raise ClusterError("threshold must be 0 or more")
    negative = _number(threshold_negative, "threshold_negative", positive)
    negative = abs(negative)
    size = _number(min_voxels, "min_voxels", DEFAULT_MIN_VOXELS)
    if size != int(size) or not 1 <= size <= MAX_MIN_VOXELS:
        raise ClusterError(f"min_voxels must be a whole number from 1 to {MAX_MIN_VOXELS:,}")
    try:
        atlas_id = check_atlas(atlas)
    except AtlasError as exc:
        raise ClusterError(str(exc)) from None
    return ClusterSettings(positive, negative, int(size), atlas_id)


def _labelled(mask: np.ndarray, min_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Face-connected labels of ``mask`` and the label numbers of the clusters of at least ``min_voxels``."""
    labels, count = ndimage.label(mask, structure=FACES)
    if count == 0:
        return labels, np.empty(0, dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels, np.flatnonzero(sizes >= min_voxels)


def _peak(data: np.ndarray, members: np.ndarray, sign: int) -> tuple[int, int, int]:
    """The voxel of largest ``sign * value`` among ``members`` (flat indices, ascending), first on ties."""
    values = data.ravel()[members]
    best = members[int(np.argmax(values * sign))]
    i, j, k = np.unravel_index(best, GRID_SHAPE)
    return int(i), int(j), int(k)


def _row(data: np.ndarray, members: np.ndarray, sign: int, atlas: str) -> dict[str, Any]:
    ijk = _peak(data, members, sign)
    x, y, z = (float(v) for v in voxel_to_mni(ijk))
    grid = grid_atlas(atlas)
    index = int(grid.index[ijk])
    probability = round(float(grid.probability[ijk]), 4) if grid.probability is not None and index >= 0 else None
    shares = region_shares(members, atlas)
    regions = [{"label": label, "share": round(share, 4)} for label, share in shares[:MAX_REGIONS]]
    rest = sum(share for _, share in shares[MAX_REGIONS:])
    if rest > 0:
        regions.append({"label": "other regions", "share": round(rest, 4)})
    return {
        "sign": "positive" if sign > 0 else "negative",
        "peak_x": x,
        "peak_y": y,
        "peak_z": z,
        "peak_i": ijk[0],
        "peak_j": ijk[1],
        "peak_k": ijk[2],
        "peak_value": float(data[ijk]),
        "voxels": int(members.size),
        "volume_mm3": round(members.size * VOXEL_MM3, 3),
        "atlas": atlas,
        "peak_label": grid.label(index),
        "peak_probability": probability,
        "regions": regions,
    }


def cluster_table(data: np.ndarray, settings: ClusterSettings) -> list[dict[str, Any]]:
    """The clusters of a map above the thresholds, largest first.

    Parameters
    ----------
    data : numpy.ndarray
        ``(91, 109, 91)`` map on the standard grid; non-finite values count as 0.
    settings : ClusterSettings
        Thresholds, minimum size and atlas (:func:`check_settings`).

    Returns
    -------
    list of dict
        One row per cluster (at most :data:`MAX_CLUSTERS`), numbered from 1 in the order of the list:
        ``cluster``, ``sign`` ("positive"/"negative"), ``peak_x/y/z`` (MNI mm), ``peak_i/j/k`` (grid voxel),
        ``peak_value``, ``voxels``, ``volume_mm3``, ``atlas``, ``peak_label`` (None outside every region),
        ``peak_probability`` (probabilistic atlases), ``regions``: ``[{"label", "share"}]``, largest share first.

    Raises
    ------
    ValueError
        When ``data`` is not on the standard grid.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.shape != GRID_SHAPE:
        raise ValueError(f"a map of shape {data.shape} is not on the {GRID_SHAPE} grid")
    # C order once: maps load in Fortran order, and every ravel() of those would be a 3.6 MB copy.
    data = np.ascontiguousarray(np.where(np.isfinite(data), data, np.float32(0)))
    found: list[tuple[int, float, np.ndarray, int]] = []
    for sign, mask in ((1, data > settings.threshold), (-1, data < -settings.threshold_negative)):
        labels, kept = _labelled(mask, settings.min_voxels)
        if kept.size == 0:
            continue
        flat = labels.ravel()
        inside = np.flatnonzero(flat)
        by_cluster = np.argsort(flat[inside], kind="stable")
        order = inside[by_cluster]  # voxels grouped by cluster, ascending flat index within each
        bounds = np.searchsorted(flat[inside][by_cluster], np.arange(flat.max() + 2))
        for number in kept:
            members = order[bounds[number] : bounds[number + 1]]
            peak = float(np.max(data.ravel()[members] * sign))
            found.append((members.size, peak, members, sign))
    found.sort(key=lambda item: (-item[0], -item[1]))
    rows = []
    for number, (_, _, members, sign) in enumerate(found[:MAX_CLUSTERS], start=1):
        rows.append({"cluster": number, **_row(data, members, sign, settings.atlas)})
    return rows


def csv_row(row: dict[str, Any]) -> list[str]:
    """One cluster as the cells of :data:`CSV_COLUMNS` (regions as ``label share%; ...``)."""
    regions = "; ".join(f"{r['label'] or 'no region'} {r['share'] * 100:.1f}%" for r in row["regions"])
    probability = "" if row["peak_probability"] is None else f"{row['peak_probability']:.2f}"
    return [
        str(row["cluster"]),
        row["sign"],
        f"{row['peak_x']:g}",
        f"{row['peak_y']:g}",
        f"{row['peak_z']:g}",
        f"{row['peak_value']:.6g}",
        str(row["voxels"]),
        f"{row['volume_mm3']:g}",
        row["atlas"],
        row["peak_label"] or "",
        probability,
        regions,
    ]


_maps: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_maps_lock = threading.Lock()
MAP_CACHE_ITEMS = 8  # 3.6 MB each; a threshold slider asks for the same map many times in a row


def stored_map(key: str) -> np.ndarray:
    """The map stored under ``key``, read once per stored version and kept in a small per-process cache.

    Raises
    ------
    KeyError
        When nothing is stored under ``key``.
    """
    version = get_storage().version(key)
    with _maps_lock:
        hit = _maps.get((key, version))
        if hit is not None:
            _maps.move_to_end((key, version))
            return hit
    data = load_map(key)
    if data.ndim == 4:
        data = data[..., 0]
    data.setflags(write=False)
    with _maps_lock:
        _maps[(key, version)] = data
        while len(_maps) > MAP_CACHE_ITEMS:
            _maps.popitem(last=False)
    return data
