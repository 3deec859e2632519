"""A whole FSL MELODIC output folder, zipped (issue 22, item 5): only ``melodic_IC`` gives components; MELODIC's
mask, mean image, stats, report and the rest are skipped and said so in one line, and the verdict at upload
confirms which map the time courses were matched to."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.curation.archives import iter_niftis
from pipeline.curation.uploads import check_upload
from tests.services import component_maps, write_nifti
from tests.test_timeline import TIMING, new_collection, speech_course

GICA = "forrest_groupICA.gica"
ICA = f"{GICA}/groupmelodic.ica"
# What MELODIC writes besides melodic_IC and its time courses (a group run puts a report and a log around it).
HELPERS = (
    f"{ICA}/mask.nii.gz",
    f"{ICA}/mean.nii.gz",
    f"{ICA}/melodic_oIC.nii.gz",
    f"{ICA}/melodic_unmix",
    f"{ICA}/melodic_ICstats",
    f"{ICA}/log.txt",
    f"{ICA}/stats/thresh_zstat1.nii.gz",
    f"{ICA}/stats/probmap_1.nii.gz",
    f"{ICA}/report/00index.html",
    f"{ICA}/report/IC_1_thresh.png",
    f"{GICA}/report.html",
    f"{GICA}/log.txt",
)


def melodic_folder(tmp_path: Path, extra: dict[str, Path] | None = None, kind: str = "zip") -> Path:
    """The zipped (or tarred) .gica folder of a 4-component group ICA of two subjects, with its other files."""
    ica = tmp_path / "ica"
    ica.mkdir()
    files = {f"{ICA}/melodic_IC.nii.gz": write_nifti(ica / "ic.nii.gz", component_maps(4, seed=5))}
    # MELODIC's mask and mean image are ordinary maps to a reader that does not know them.
    small = write_nifti(ica / "helper.nii.gz", component_maps(1, seed=7)[0])
    mix, ftmix = ica / "mix", ica / "ftmix"
    np.savetxt(mix, speech_course(4), fmt="%.7e", delimiter="  ")
    np.savetxt(ftmix, np.abs(np.random.default_rng(1).standard_normal((30, 4))), fmt="%.7e")
    files |= {f"{ICA}/melodic_mix": mix, f"{ICA}/melodic_FTmix": ftmix}
    text = ica / "text"
    text.write_text("MELODIC output\n")
    files |= {name: small if name.endswith(".nii.gz") else text for name in HELPERS}
    files |= extra or {}
    path = tmp_path / f"{GICA}.{'zip' if kind == 'zip' else 'tar.gz'}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, src in files.items():
                zf.write(src, name)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, src in files.items():
                tf.add(src, name)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_only_melodic_ic_and_its_time_courses_come_out_of_a_melodic_folder(data_dir, tmp_path, kind):
    archive = melodic_folder(tmp_path, kind=kind)
    warnings: list[str] = []
    notes: list[str] = []
    members = list(
        iter_niftis(archive, archive.name, tmp_path / "work", warnings, include_timecourses=True, notes=notes)
    )
    assert sorted(m.name.split("/")[-1] for m in members) == ["melodic_FTmix", "melodic_IC.nii.gz", "melodic_mix"]
    assert warnings == []
    assert notes == [f"skipped: MELODIC's brain mask and mean image, 10 other MELODIC files (in {archive.name})"]
    warnings = []  # without a list for notes, the line is the one warning
    list(iter_niftis(archive, archive.name, tmp_path / "work2", warnings))
    assert len(warnings) == 1 and warnings[0].startswith("skipped: MELODIC's brain mask and mean image")


def test_a_foreign_file_in_a_melodic_folder_is_a_warning_and_a_map_outside_it_is_kept(data_dir, tmp_path):
    other = write_nifti(tmp_path / "task.nii.gz", component_maps(1, seed=9)[0])
    notes_txt = tmp_path / "notes.txt"
    notes_txt.write_text("my notes\n")
    archive = melodic_folder(
        tmp_path, extra={f"{ICA}/my_task_map.nii.gz": other, f"{ICA}/notes.txt": notes_txt, "task/zstat1.nii.gz": other}
    )
    warnings: list[str] = []
    notes: list[str] = []
    members = list(iter_niftis(archive, archive.name, tmp_path / "work", warnings, notes=notes))
    assert sorted(m.name.split("/", 1)[1] for m in members) == [f"{ICA}/melodic_IC.nii.gz", "task/zstat1.nii.gz"]
    assert warnings == [
        f"{archive.name}: skipped {ICA}/my_task_map.nii.gz (in MELODIC's output folder only melodic_IC holds "
        "components)",
        f"{archive.name}: skipped {ICA}/notes.txt (not a .nii or .nii.gz file)",
    ]
    assert notes == [f"skipped: MELODIC's brain mask and mean image, 10 other MELODIC files (in {archive.name})"]


def test_the_upload_verdict_says_what_was_skipped_and_matched_in_one_line_each(data_dir, tmp_path):
    archive = melodic_folder(tmp_path)
    report = check_upload(archive, archive.name, tmp_path / "work", timing=TIMING)
    assert report.maps == 4 and report.warnings == []
    assert report.notes == [
        f"skipped: MELODIC's brain mask and mean image, 10 other MELODIC files (in {archive.name})",
        "melodic_mix: 240 rows = 2 subjects x 120 volumes, matched to melodic_IC.nii.gz",
        "melodic_FTmix: power spectra (30 frequencies x 4 components), matched to melodic_IC.nii.gz",
    ]
    untimed = check_upload(archive, archive.name, tmp_path / "work2")  # before the collection has a timing
    assert "melodic_mix: 240 rows x 4 components, matched to melodic_IC.nii.gz" in untimed.notes


def test_time_courses_that_do_not_fit_are_a_warning_at_upload_not_a_refusal(data_dir, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savetxt(wrong / "melodic_mix", speech_course(3), fmt="%.7e")
    archive = melodic_folder(tmp_path, extra={f"{ICA}/melodic_mix": wrong / "melodic_mix"})
    report = check_upload(archive, archive.name, tmp_path / "work", timing=TIMING)
    assert report.maps == 4
    assert any("3 columns" in w and "4 volumes" in w and w.endswith("(not used)") for w in report.warnings)


def test_ingesting_a_zipped_gica_folder_makes_only_the_melodic_components(data_dir, tmp_path):
    from pipeline.curation.ingest import ingest

    _, job_id = new_collection([melodic_folder(tmp_path)])
    result = ingest(job_id)
    assert result.components == 4 and not result.errors, result.errors
    assert [w for w in result.warnings if "MELODIC" in w] == [
        f"skipped: MELODIC's brain mask and mean image, 10 other MELODIC files (in {GICA}.zip)"
    ]
