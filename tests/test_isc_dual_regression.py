"""Per-subject time courses from FSL dual_regression stage-1 files (pipeline.synchrony.dual_regression)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.synchrony import isc as sync
from pipeline.synchrony.dual_regression import (
    is_skipped_stage,
    is_stage1_name,
    skipped_stage_note,
    stage1_matrix,
    stage1_number,
    stage1_order,
)
from pipeline.temporal.parsing import TimeCourseError
from pipeline.temporal.timecourses import read_melodic_mix
from tests.test_isc import RUNS, designed

N_SUBJECTS, N_COMPONENTS = 4, 5


def write_matrix(path: Path, values: np.ndarray) -> Path:
    """A whitespace-separated matrix as FSL writes it (fsl_glm, melodic): two spaces before every value."""
    path.write_text("".join("".join(f"  {v:.7e}" for v in row) + "\n" for row in values))
    return path


@pytest.fixture
def subjects() -> np.ndarray:
    """``(T, V, S)`` float32 time courses of four subjects in three runs."""
    return designed(np.linspace(0.0, 0.8, N_COMPONENTS), N_SUBJECTS, sum(RUNS), seed=9).astype(np.float32)


@pytest.fixture
def stage1(tmp_path, subjects) -> list[tuple[str, Path]]:
    """The dual_regression folder's stage-1 files, listed out of order (as an archive may list them)."""
    folder = tmp_path / "dr.dr"
    folder.mkdir()
    files = []
    for s in (2, 0, 3, 1):
        name = f"dr.dr/dr_stage1_subject{s:05d}.txt"
        files.append((name, write_matrix(tmp_path / name, subjects[:, :, s])))
    return files


def test_stage1_files_give_the_same_matrix_and_isc_as_a_concatenated_melodic_mix(tmp_path, subjects, stage1):
    concatenated = np.concatenate([subjects[:, :, s] for s in range(N_SUBJECTS)], axis=0)
    mix = read_melodic_mix(write_matrix(tmp_path / "melodic_mix", concatenated), "melodic_mix")
    matrix = stage1_matrix(stage1, n_components=N_COMPONENTS, volumes_per_subject=sum(RUNS))
    assert matrix.dtype == np.float32 and matrix.shape == (N_SUBJECTS * sum(RUNS), N_COMPONENTS)
    np.testing.assert_array_equal(matrix, mix)
    from_dr = sync.component_isc(sync.subjects_array(matrix, N_SUBJECTS), RUNS, n_resamples=100)
    from_mix = sync.component_isc(sync.subjects_array(mix, N_SUBJECTS), RUNS, n_resamples=100)
    for a, b in ((from_dr.isc, from_mix.isc), (from_dr.isc_pairwise, from_mix.isc_pairwise), (from_dr.p, from_mix.p)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(from_dr.subjects, sync.isc(subjects.astype(np.float64)), atol=1e-6)


def test_the_file_numbers_are_the_subject_order():
    names = ["x/dr_stage1_subject00001.txt", "x/melodic_IC.nii.gz", "x/dr_stage1_subject00000.txt", "x/other.txt"]
    assert stage1_order(names) == ["x/dr_stage1_subject00000.txt", "x/dr_stage1_subject00001.txt"]
    assert stage1_number("a\\b\\dr_stage1_subject00012.txt") == 12
    assert stage1_number("dr_stage1_subject12.txt") is None and stage1_number("dr_stage2_subject00000.nii.gz") is None


def test_stage_2_and_3_images_are_skipped_with_a_verdict_line():
    names = [
        "dr.dr/melodic_IC.nii.gz",
        "dr.dr/dr_stage1_subject00000.txt",
        "dr.dr/dr_stage2_subject00000.nii.gz",
        "dr.dr/dr_stage2_subject00000_Z.nii.gz",
        "dr.dr/dr_stage2_ic0003.nii.gz",
        "dr.dr/dr_stage3_ic0003_tfce_corrp_tstat1.nii.gz",
    ]
    assert [is_skipped_stage(n) for n in names] == [False, False, True, True, True, True]
    assert [is_stage1_name(n) for n in names] == [False, True, False, False, False, False]
    assert skipped_stage_note("study.zip", names) == (
        "skipped: 3 dual_regression stage-2 and 1 stage-3 images (per-subject maps and group statistics, not group "
        "components) (in study.zip)"
    )
    assert skipped_stage_note("x.zip", names[2:3]) == (
        "skipped: 1 dual_regression stage-2 image (per-subject maps and group statistics, not group components) "
        "(in x.zip)"
    )
    assert skipped_stage_note("x.zip", names[:2]) is None


def replace(files: list[tuple[str, Path]], number: int, text: str) -> None:
    path = dict(files)[f"dr.dr/dr_stage1_subject{number:05d}.txt"]
    path.write_text(text)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f, x: replace(f, 1, "".join(f"  {a:.4f}  {b:.4f}\n" for a, b in x[:, :2, 1])),
            "dr.dr/dr_stage1_subject00001.txt: 2 columns, but the group map has 5 components",
        ),
        (
            lambda f, x: f.remove(next(item for item in f if item[0].endswith("00002.txt"))),
            "dr_stage1_subject00002.txt missing: dual_regression numbers its subjects from 00000",
        ),
        (
            lambda f, x: replace(f, 3, "  0.1  0.2  0.3  0.4  0.5\n  0.1  subject  0.3  0.4  0.5\n"),
            "dr.dr/dr_stage1_subject00003.txt, line 2, column 2: 'subject' is not a number",
        ),
        (
            lambda f, x: replace(f, 0, "  0.1  0.2  0.3  0.4  0.5\n  0.1  0.2  0.3\n"),
            "dr.dr/dr_stage1_subject00000.txt, line 2: 3 values, but line 1 has 5",
        ),
        (
            lambda f, x: replace(f, 0, "  0.1  0.2  0.3  0.4  0.5\n  nan  0.2  0.3  0.4  0.5\n"),
            "line 2, column 1: 'nan' is not a number",
        ),
        (
            lambda f, x: replace(f, 2, "".join("".join(f"  {v:.4f}" for v in row) + "\n" for row in x[:-5, :, 2])),
            "dr.dr/dr_stage1_subject00002.txt: 141 rows, but the collection's timing gives 146 volumes per subject",
        ),
        (lambda f, x: replace(f, 1, "\n\n"), "dr.dr/dr_stage1_subject00001.txt: the file is empty"),
        (
            lambda f, x: f.append(("other/dr_stage1_subject00001.txt", dict(f)["dr.dr/dr_stage1_subject00001.txt"])),
            "two stage-1 files for subject 00001",
        ),
        (lambda f, x: f.clear(), "no dr_stage1_subjectNNNNN.txt file"),
    ],
)
def test_bad_stage1_files_get_a_clear_message(stage1, subjects, damage, message):
    files = list(stage1)
    damage(files, subjects)
    with pytest.raises(TimeCourseError) as info:
        stage1_matrix(files, n_components=N_COMPONENTS, volumes_per_subject=sum(RUNS))
    assert message in str(info.value), str(info.value)


def test_without_the_map_and_timing_the_files_must_agree_with_the_first(stage1):
    replace(stage1, 2, "  0.1  0.2  0.3\n  0.4  0.5  0.6\n")
    with pytest.raises(
        TimeCourseError, match="subject00002.txt: 3 columns, but dr.dr/dr_stage1_subject00000.txt has 5"
    ):
        stage1_matrix(stage1)


# --- through ingest: an archive of dual_regression output --------------------------------------------------------


def dual_regression_zip(tmp_path: Path, subjects: np.ndarray, missing: int | None = None) -> Path:
    """A zip of a dual_regression folder: the group map, one stage-1 file per subject, stage-2 and stage-3 images."""
    from tests.services import component_maps, write_nifti

    folder = tmp_path / "dr.dr"
    folder.mkdir(parents=True, exist_ok=True)
    write_nifti(folder / "melodic_IC.nii.gz", component_maps(subjects.shape[1], seed=5))
    for s in range(subjects.shape[2]):
        if s != missing:
            write_matrix(folder / f"dr_stage1_subject{s:05d}.txt", subjects[:, :, s])
    write_nifti(folder / "dr_stage2_subject00000.nii.gz", component_maps(subjects.shape[1], seed=6))
    write_nifti(folder / "dr_stage3_ic0000_tfce_corrp_tstat1.nii.gz", component_maps(1, seed=7)[0])
    path = tmp_path / "dr.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member in sorted(folder.iterdir()):
            zf.write(member, f"study/dr.dr/{member.name}")
    return path


def made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stored_course(collection_id: int) -> tuple[str, np.ndarray] | None:
    from sqlalchemy import select

    from store.artifacts import load_vector
    from store.db import session_scope
    from store.models import TimeCourse

    with session_scope() as session:
        course = session.scalar(select(TimeCourse).where(TimeCourse.collection_id == collection_id))
        return None if course is None else (course.mix_file, load_vector(course.storage_key))


def test_a_dual_regression_archive_gives_the_same_time_courses_and_isc_as_melodic_mix(data_dir, tmp_path):
    from pipeline.curation.ingest import ingest
    from pipeline.temporal.timing import Timing
    from tests.test_timeline import melodic_zip, new_collection

    timing = Timing.parse(2.0, "0:60,116:60", 3)
    x = designed(np.array([0.0, 0.4, 0.8]), 3, timing.rows_per_subject, seed=11).astype(np.float32)
    concatenated = np.concatenate([x[:, :, s] for s in range(3)], axis=0)

    dr_collection, dr_job = new_collection([dual_regression_zip(tmp_path / "a", x)], timing=timing)
    result = ingest(dr_job)
    assert result.components == 3 and not result.errors, result.errors  # stage-2/3 images are not components
    assert (
        "skipped: 1 dual_regression stage-2 and 1 stage-3 images (per-subject maps and group statistics, not group "
        "components) (in dr.zip)"
    ) in result.warnings
    mix_file, stored = stored_course(dr_collection)
    assert mix_file == "dr.zip/study/dr.dr/dr_stage1_subject*.txt (3 files)"

    mix_collection, mix_job = new_collection(
        [melodic_zip(made(tmp_path / "b"), 3, concatenated, ftmix=False)], timing=timing
    )
    assert not ingest(mix_job).errors
    _, from_mix = stored_course(mix_collection)
    np.testing.assert_allclose(stored, from_mix, rtol=1e-6)
    np.testing.assert_allclose(stored, concatenated, rtol=1e-6)
    runs = list(timing.run_lengths)
    a = sync.component_isc(sync.subjects_array(stored, 3), runs, n_resamples=50)
    b = sync.component_isc(sync.subjects_array(from_mix, 3), runs, n_resamples=50)
    np.testing.assert_allclose(a.isc, b.isc, atol=1e-6)
    np.testing.assert_allclose(a.isc_pairwise, b.isc_pairwise, atol=1e-6)


@pytest.mark.parametrize(
    ("missing", "subjects", "message"),
    [
        (1, 3, "dr_stage1_subject00001.txt missing: dual_regression numbers its subjects from 00000"),
        (None, 2, "3 dual_regression stage-1 files, but the collection's timing has 2 subjects"),
    ],
)
def test_bad_stage1_files_in_an_archive_change_nothing_but_the_message(data_dir, tmp_path, missing, subjects, message):
    from pipeline.curation.ingest import ingest
    from pipeline.temporal.timing import Timing
    from tests.test_timeline import new_collection

    timing = Timing.parse(2.0, "0:60,116:60", subjects)
    x = designed(np.array([0.0, 0.4, 0.8]), 3, timing.rows_per_subject, seed=11).astype(np.float32)
    collection_id, job_id = new_collection([dual_regression_zip(tmp_path, x, missing=missing)], timing=timing)
    result = ingest(job_id)
    assert result.components == 3  # the maps are still used
    assert any(message in e for e in result.errors), result.errors
    assert stored_course(collection_id) is None


def test_the_upload_check_reads_stage1_files_and_skips_stage_2_and_3(data_dir, tmp_path, subjects):
    from pipeline.curation.uploads import check_upload

    archive = dual_regression_zip(tmp_path / "ok", subjects[:, :3])
    report = check_upload(archive, "dr.zip", made(tmp_path / "work"))
    assert report.maps == 3 and not report.warnings, report.warnings
    assert "dr.zip: dual_regression time courses of 4 subjects" in report.notes
    assert any(n.startswith("skipped: 1 dual_regression stage-2 and 1 stage-3 images") for n in report.notes)

    broken = dual_regression_zip(tmp_path / "gap", subjects[:, :3], missing=2)
    report = check_upload(broken, "dr.zip", made(tmp_path / "work2"))
    assert any("dr_stage1_subject00002.txt missing" in w for w in report.warnings), report.warnings

    single = write_matrix(tmp_path / "dr_stage1_subject00000.txt", subjects[:, :3, 0])
    report = check_upload(single, "dr_stage1_subject00000.txt", made(tmp_path / "work3"))
    assert report.warnings == [
        "dr_stage1_subject00000.txt: one subject's dual_regression time courses, 3 components x 146 volumes; they "
        "are stacked in subject order and matched with the group map when the collection is processed"
    ]
    single.write_text("  0.1  zero\n")
    with pytest.raises(TimeCourseError, match="line 1, column 2: 'zero' is not a number"):
        check_upload(single, "dr_stage1_subject00000.txt", made(tmp_path / "work4"))
