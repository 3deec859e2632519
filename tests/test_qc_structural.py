"""QC: a structural (anatomical) image uploaded as a component is flagged, but kept and decoded; component and
statistical maps, positive-only ones included, are not flagged."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets
from scipy.ndimage import gaussian_filter, map_coordinates

import pipeline.maps.nifti as nifti
from pipeline.curation.demo import DEMO_COLLECTIONS, DemoReference, _as_file, demo_component_maps
from pipeline.curation.ingest import ingest
from pipeline.decoding.decode import masked
from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map, builtin_term_maps
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask, underlay
from pipeline.maps.nifti import check_nifti, quality_check, resample_to_grid
from tests.niftis import gaussian_blob, smooth_random, thresholded
from tests.test_ingest import components_of, job_state, new_job

STRUCTURAL = "looks like a structural (anatomical) image, not a statistical or component map"
MASK = brain_mask()


def structural_warnings(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith(STRUCTURAL)]


def the_structural_warning(warnings: list[str]) -> str:
    found = structural_warnings(warnings)
    assert len(found) == 1, f"expected one structural-image warning, got {warnings}"
    return found[0]


@lru_cache(maxsize=4)
def tissue_on_grid(tissue: str, resolution: int) -> np.ndarray:
    """nilearn's MNI152 grey- or white-matter probability template, resampled as ingest resamples it."""
    loader = {"gm": datasets.load_mni152_gm_template, "wm": datasets.load_mni152_wm_template}[tissue]
    return on_grid(loader(resolution=resolution))


def warned_r(warning: str) -> float:
    """The correlation the warning reports."""
    return float(re.search(r"correlates r=(-?[0-9.]+) with", warning).group(1))


def on_grid(img: nib.Nifti1Image) -> np.ndarray:
    """An image resampled as ingest resamples it."""
    return resample_to_grid(np.asarray(img.get_fdata(), np.float32), img.affine)[0]


def subject_like(template: np.ndarray, seed: int, scale: float = 1.0) -> np.ndarray:
    """A single subject's normalised image imitated from a template: a smooth residual misregistration of about
    2 mm per axis, a 20% bias field, noise and scanner-like units (clipped at 0, as magnitude images are)."""
    rng = np.random.default_rng(seed)
    coords = np.indices(GRID_SHAPE).astype(np.float64)
    for axis in range(3):
        field = gaussian_filter(rng.standard_normal(GRID_SHAPE), 6.0)
        coords[axis] += field / field.std()  # 1 voxel = 2 mm
    warped = map_coordinates(np.asarray(template, np.float64), coords, order=1)
    bias = gaussian_filter(rng.standard_normal(GRID_SHAPE), 12.0)
    warped *= 1 + 0.2 * bias / np.abs(bias).max()
    warped += 0.2 * template[MASK].std() * rng.standard_normal(GRID_SHAPE)
    return (np.clip(warped, 0, None) * scale).astype(np.float32)


# --- structural images are flagged ----------------------------------------------------------------------------


def test_mni152_t1_template_through_ingest_is_flagged_kept_and_decoded(data_dir, tmp_path: Path) -> None:
    files = []
    for resolution in (1, 2):
        path = tmp_path / f"mni152_t1_{resolution}mm.nii.gz"
        nib.save(datasets.load_mni152_template(resolution=resolution), path)
        files.append(path)
    control = tmp_path / "ica_component.nii.gz"
    nib.save(
        nib.Nifti1Image(np.where(MASK, smooth_random(np.random.default_rng(0)), 0).astype(np.float32), GRID_AFFINE),
        control,
    )
    job_id = new_job(files + [control])
    result = ingest(job_id)
    assert result.components == 3 and result.errors == []
    job = job_state(job_id)
    assert job.status == "succeeded"
    comps = {c.source_file: c for c in components_of(job_id)}
    assert structural_warnings(comps["ica_component.nii.gz"].qc_warnings) == []
    flagged = {}
    for path in files:
        comp = comps[path.name]
        warning = the_structural_warning(comp.qc_warnings)
        assert "MNI152 T1 template" in warning and "has no negative values" in warning, warning
        assert "keep it only if that is intended" in warning
        assert warned_r(warning) >= 0.9, warning
        # A warning, not a rejection: the map is stored and decoded like any other.
        assert comp.best_term_id is not None and comp.storage_key
        assert any(w == f"{path.name}: {warning}" for w in job.warnings)
        flagged[comp.uuid] = warning

    from app import server
    from tests.test_api import as_user, page_layouts, rendered

    client = server.test_client()
    layouts = page_layouts()
    for uuid, warning in flagged.items():
        response = client.get(f"/api/components/{uuid}")
        assert response.status_code == 200
        detail = response.get_json()
        assert warning in detail["qc_warnings"]
        assert detail["best_term"] and detail["decodings"]
        with as_user(server, None):
            page = rendered(layouts["component"](uuid=uuid))
        assert '"id": "qc-warnings"' in page and json.dumps(warning)[1:-1] in page


OTHER_STRUCTURAL = {  # name: (the map on the grid, the template the warning names)
    "gm-template-1mm": (lambda: tissue_on_grid("gm", 1), "grey-matter probability template"),
    "wm-template-2mm": (lambda: tissue_on_grid("wm", 2), "T1 template"),
    "subject-like-t1-scanner-units": (lambda: subject_like(underlay(), seed=1, scale=1000.0), "T1 template"),
    "subject-like-gm": (lambda: subject_like(tissue_on_grid("gm", 2), seed=2), "grey-matter probability template"),
}


@pytest.mark.parametrize("name", list(OTHER_STRUCTURAL))
def test_other_structural_images_are_flagged(name: str) -> None:
    make, template = OTHER_STRUCTURAL[name]
    result = quality_check(make())
    assert result.rejected is None
    warning = the_structural_warning(result.warnings)
    assert f"MNI152 {template}" in warning, (name, warning)
    assert warned_r(warning) >= 0.6, (name, warning)


def test_a_few_negative_voxels_do_not_hide_a_structural_image() -> None:
    """Resampling a T1 with spline or sinc kernels rings slightly below zero at edges; a handful of such voxels
    still leaves it structural, while a signed map is not."""
    t1 = np.array(underlay())
    inside = np.flatnonzero(MASK.ravel())
    rng = np.random.default_rng(3)
    ringing = t1.copy().ravel()
    ringing[rng.choice(inside, size=len(inside) // 200, replace=False)] = -0.01  # 0.5% of in-brain voxels
    warning = the_structural_warning(quality_check(ringing.reshape(GRID_SHAPE)).warnings)
    assert f"almost no negative values ({len(inside) // 200} of {len(inside)} in-brain voxels)" in warning
    signed = t1.copy().ravel()
    signed[rng.choice(inside, size=len(inside) // 20, replace=False)] = -0.01  # 5%
    assert structural_warnings(quality_check(signed.reshape(GRID_SHAPE)).warnings) == []


# --- component and statistical maps are not -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory) -> list[np.ndarray]:
    """The 60 demo components as ingest's QC sees them: written as the demo loader writes them (2 mm, or 3 mm
    LAS), read, resampled and masked."""
    directory = tmp_path_factory.mktemp("demo-files")
    reference = DemoReference.from_maps(builtin_term_maps())
    rows = []
    for seed, spec in enumerate(DEMO_COLLECTIONS, start=1):
        checked = check_nifti(_as_file(spec, demo_component_maps(spec, seed, reference), directory))
        rows.append(masked(resample_to_grid(checked.volumes(), checked.affine)))
    return list(np.concatenate(rows))


def test_demo_components_are_not_flagged_and_are_far_from_the_threshold(demo_rows) -> None:
    assert len(demo_rows) == sum(spec.n_components for spec in DEMO_COLLECTIONS) == 60
    full = np.zeros(GRID_SHAPE, np.float32)
    for row in demo_rows:
        full[MASK] = row
        assert structural_warnings(quality_check(full, inside=row).warnings) == []
    best = max(nifti.template_match(row).r for row in demo_rows)
    assert best < nifti.STRUCTURAL_MIN_R / 4, best


def typical_maps() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    z = np.where(MASK, smooth_random(rng), 0).astype(np.float32)
    smooth = np.where(MASK, smooth_random(rng, sigma_vox=4.0), 0).astype(np.float32)
    terms = [builtin_term_map(tuple(peaks)) for peaks in BUILTIN_PEAKS.values()]
    blobs = gaussian_blob(GRID_AFFINE, GRID_SHAPE, (-40.0, -20.0, 50.0)) + gaussian_blob(
        GRID_AFFINE, GRID_SHAPE, (30.0, 10.0, -10.0)
    )
    maps = [
        ("unthresholded z map", z),
        ("thresholded z map (5%)", thresholded(z, 0.05)),
        ("thresholded-positive z map", np.maximum(z, 0)),
        ("positive-only smooth map without zeros", np.where(MASK, z - z[MASK].min() + 0.1, 0)),
        ("|z| of a very smooth map", np.abs(smooth)),
        ("sum of association maps (meta-analysis-like, positive, few zeros)", np.sum(terms, axis=0)),
        ("two Gaussian blobs", blobs),
    ]
    maps += [(f"Neurosynth-like association map: {term}", m) for term, m in zip(BUILTIN_PEAKS, terms)]
    return [(name, np.asarray(m, np.float32)) for name, m in maps]


def test_typical_component_and_statistical_maps_are_not_flagged() -> None:
    positive_only = 0
    for name, data in typical_maps():
        result = quality_check(data)
        assert result.rejected is None, name
        assert structural_warnings(result.warnings) == [], (name, result.warnings)
        positive_only += bool(data[MASK].min() >= 0)
    # Most of these have no negative values at all: the correlation is what tells them from a T1.
    assert positive_only >= 20


def test_a_signed_map_that_follows_the_anatomy_is_a_component_map() -> None:
    """ICA gives white-matter and CSF noise components that follow the anatomy; as z maps they are signed, so they
    are not called anatomical images (they correlate 0.85 or more with the T1 template)."""
    for template in (underlay(), tissue_on_grid("wm", 2)):
        inside = template[MASK]
        zmap = np.where(MASK, (template - inside.mean()) / inside.std(), 0).astype(np.float32)
        assert structural_warnings(quality_check(zmap).warnings) == []
