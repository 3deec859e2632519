"""The command line (``python -m pipeline``), run as a subprocess against a copy of the demo data directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from pipeline.decoding.reference import BUILTIN_NAME, BUILTIN_PEAKS, builtin_term_map
from pipeline.maps.grid import GRID_AFFINE
from store.db import dispose_engine, session_scope
from store.models import (
    Collection,
    Component,
    Decoding,
    Movie,
    ReferenceSet,
    Term,
    TermMap,
    Upload,
    User,
)
from tests.conftest import ROOT, use_environment
from tests.niftis import mni_affine, smooth_random, write

COMMANDS = ("init", "demo", "decode", "merge", "reference", "ingest", "user")
PASSWORD = "a sufficiently long password"


def run(data_dir: Path, *args: str, password: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env["INCDB_DATA_DIR"] = str(data_dir)
    if password is not None:
        env["INCDB_PASSWORD"] = password
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def shared_demo(tmp_path_factory, demo_template) -> Path:
    """One copy of the demo data for the commands that only read it."""
    path = tmp_path_factory.mktemp("cli") / "demo"
    shutil.copytree(demo_template, path)
    return path


@pytest.fixture
def demo_db(shared_demo):
    use_environment(shared_demo)
    yield shared_demo
    dispose_engine()


def public_components(n: int) -> list[tuple[str, str, float, list[tuple[str, float]]]]:
    """(storage key, best term, best r, top decodings) of n public demo components with distinct best terms."""
    out, seen = [], set()
    with session_scope() as session:
        comps = session.scalars(
            select(Component).join(Collection).where(Collection.visibility == "public").order_by(Component.id)
        ).all()
        for comp in comps:
            if comp.best_term.name in seen:
                continue
            seen.add(comp.best_term.name)
            out.append(
                (comp.storage_key, comp.best_term.name, comp.best_r, [(d.term.name, d.r) for d in comp.decodings])
            )
            if len(out) == n:
                break
    return out


def test_help_lists_the_commands(shared_demo):
    proc = run(shared_demo, "--help")
    for command in COMMANDS:
        assert f"    {command} " in proc.stdout or f"    {command}\n" in proc.stdout, (command, proc.stdout)


def test_decode_prints_the_best_term_first(demo_db):
    (key, best, best_r, _), (key2, best2, _, _) = public_components(2)
    assert best != best2
    proc = run(demo_db, "decode", str(demo_db / "files" / key))
    lines = proc.stdout.strip().splitlines()
    with session_scope() as session:
        n_terms = session.scalar(select(func.count(Term.id)).join(ReferenceSet).where(ReferenceSet.active))
    assert len(lines) == n_terms
    term, r = lines[0].rsplit(None, 1)
    assert term.strip() == best and float(r) == pytest.approx(best_r, abs=1e-4)
    values = [float(line.rsplit(None, 1)[1]) for line in lines]
    assert values == sorted(values, reverse=True)
    top = run(demo_db, "decode", str(demo_db / "files" / key2), "--top", "3").stdout.strip().splitlines()
    assert len(top) == 3 and top[0].rsplit(None, 1)[0].strip() == best2


def test_decode_json_matches_the_stored_decodings(demo_db):
    ((key, best, _, decodings),) = public_components(1)
    proc = run(demo_db, "decode", str(demo_db / "files" / key), "--json")
    result = json.loads(proc.stdout)
    assert isinstance(result, list) and all(set(item) == {"term", "r"} for item in result)
    rs = [item["r"] for item in result]
    assert rs == sorted(rs, reverse=True)
    assert result[0]["term"] == best
    printed = {item["term"]: item["r"] for item in result}
    for term, r in decodings:  # every stored top decoding equals what the command prints
        assert printed[term] == pytest.approx(r, abs=1e-5)


def test_errors_print_one_line(demo_db, tmp_path):
    assert_one_error_line(
        run(demo_db, "decode", str(tmp_path / "missing.nii.gz"), check=False), "missing.nii.gz", "not found"
    )
    png = tmp_path / "picture.nii.gz"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    assert_one_error_line(run(demo_db, "decode", str(png), check=False), "picture.nii.gz")
    assert_one_error_line(
        run(demo_db, "reference", "activate", "no such set", check=False),
        "no reference set named 'no such set'",
        BUILTIN_NAME,
    )
    four_d = write(
        tmp_path / "four.nii.gz", np.stack([smooth_random(np.random.default_rng(i)) for i in range(2)], axis=-1)
    )
    assert_one_error_line(run(demo_db, "decode", str(four_d), "--volume", "3", check=False), "2 volume(s)", "--volume")


def test_decode_one_volume_of_a_4d_file_on_another_grid(demo_db, tmp_path):
    """--volume picks a volume of a 4D file; a 3 mm LAS file is resampled: its built-in "faces" volume decodes to
    faces first."""
    from scipy.ndimage import affine_transform

    affine, shape = mni_affine(3.0, flip_lr=True)
    faces = builtin_term_map(tuple(BUILTIN_PEAKS["faces"]))
    transform = np.linalg.inv(GRID_AFFINE) @ affine  # the 2 mm map's value at each 3 mm voxel centre
    faces_3mm = affine_transform(faces, transform[:3, :3], transform[:3, 3], output_shape=shape, order=1)
    data = np.stack([smooth_random(np.random.default_rng(1), shape, 1.5), faces_3mm], axis=-1).astype(np.float32)
    path = write(tmp_path / "ica_3mm.nii.gz", data, affine)
    result = json.loads(run(demo_db, "decode", str(path), "--volume", "2", "--json", "--top", "2").stdout)
    assert len(result) == 2
    assert result[0]["term"] == "faces" and result[0]["r"] > 0.9 > result[1]["r"]


def test_reference_list_marks_the_active_set(demo_db):
    lines = run(demo_db, "reference", "list").stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"* {BUILTIN_NAME}  [builtin, {len(BUILTIN_PEAKS)} terms")


def test_merge_command(demo_db, tmp_path):
    keys = [k for k, *_ in public_components(2)]
    out = tmp_path / "merged.nii.gz"
    proc = run(demo_db, "merge", str(out), *(str(demo_db / "files" / k) for k in keys), "--backend", "numpy")
    assert "merged 2 map(s)" in proc.stdout and "numpy" in proc.stdout
    expected = np.mean([nib.load(str(demo_db / "files" / k)).get_fdata() for k in keys], axis=0)
    np.testing.assert_allclose(nib.load(str(out)).get_fdata(), expected, atol=1e-5)


# --- commands that change the data (each on its own copy) -------------------------------------------------------


def test_reference_import_nifti_activates_and_redecodes(demo_dir, tmp_path):
    folder = tmp_path / "neurosynth-like"
    folder.mkdir()
    on_grid = ("visual", "auditory", "language")
    for term in on_grid:
        write(folder / f"{term}_association-test_z.nii.gz", builtin_term_map(tuple(BUILTIN_PEAKS[term])))
    (folder / "README.txt").write_text("not a map")
    with session_scope() as session:
        before = {c.uuid: c.best_term.name for c in session.scalars(select(Component))}
    dispose_engine()
    proc = run(demo_dir, "reference", "import-nifti", str(folder), "--name", "X", "--activate")
    assert "reference set 'X': 3 terms (active)" in proc.stdout
    assert f"re-decoded {len(before)} component(s)" in proc.stdout
    lines = run(demo_dir, "reference", "list").stdout.splitlines()
    assert [line[:2] for line in lines] == ["  ", "* "]
    assert lines[0].startswith(f"  {BUILTIN_NAME}") and lines[1].startswith("* X  [nifti-folder, 3 terms")
    with session_scope() as session:
        x = session.scalar(select(ReferenceSet).where(ReferenceSet.name == "X"))
        assert x.active and [t.name for t in x.terms] == sorted(on_grid)
        x_terms = {t.id for t in x.terms}
        comps = session.scalars(select(Component)).all()
        assert len(comps) == len(before)
        for comp in comps:
            assert comp.best_term_id in x_terms
            assert {d.term_id for d in comp.decodings} == x_terms
            if before[comp.uuid] in on_grid:  # the best of all terms is also the best of a subset holding it
                assert comp.best_term.name == before[comp.uuid]
        term_maps = session.scalars(select(TermMap)).all()
        assert term_maps and all(tm.reference_set_id == x.id for tm in term_maps)


def test_user_create_and_ingest(demo_dir, tmp_path):
    proc = run(demo_dir, "user", "create", "Admin@Example.org", "--admin", "--first-name", "Ada", password=PASSWORD)
    assert proc.stdout.strip() == "created admin admin@example.org"
    assert_one_error_line(
        run(demo_dir, "user", "create", "short@example.org", password="short", check=False), "at least"
    )
    assert_one_error_line(run(demo_dir, "user", "create", "nopass@example.org", check=False), "INCDB_PASSWORD")
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "admin@example.org"))
        assert user.role == "admin" and user.first_name == "Ada"
        assert check_password_hash(user.password_hash, PASSWORD)
        assert session.scalar(select(User).where(User.email.in_(["short@example.org", "nopass@example.org"]))) is None
        n_before = session.scalar(select(func.count(Component.id)))
    dispose_engine()

    rng = np.random.default_rng(2)
    affine, shape = mni_affine(3.0)
    path = write(
        tmp_path / "new_melodic_IC.nii.gz",
        np.stack([smooth_random(rng, shape, 1.5) for _ in range(3)], axis=-1),
        affine,
    )
    proc = run(
        demo_dir,
        "ingest",
        str(path),
        "--movie",
        "Brand New Film",
        "--year",
        "2020",
        "--collection",
        "CLI Collection",
        "--owner",
        "admin@example.org",
    )
    assert proc.stdout.strip().endswith("collection cli-collection: 3 component(s)")
    with session_scope() as session:
        collection = session.scalar(select(Collection).where(Collection.slug == "cli-collection"))
        assert collection.owner.email == "admin@example.org" and collection.status == "ready"
        assert (collection.movie.title, collection.movie.year) == ("Brand New Film", 2020)
        assert sorted(c.volume_index for c in collection.components) == [0, 1, 2]
        assert all(c.best_term_id is not None and c.decodings for c in collection.components)
        assert session.scalar(select(func.count(Component.id))) == n_before + 3
    dispose_engine()
    assert_one_error_line(
        run(
            demo_dir,
            "ingest",
            str(path),
            "--movie",
            "M",
            "--collection",
            "C",
            "--owner",
            "nobody@example.org",
            check=False,
        ),
        "no user nobody@example.org",
    )


def counts() -> dict[str, int]:
    with session_scope() as session:
        return {
            m.__name__: session.scalar(select(func.count()).select_from(m))
            for m in (User, Movie, Collection, Upload, Component, Decoding, TermMap, ReferenceSet, Term)
        }


def files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "files").rglob("*"))
        if p.is_file()
    }


def test_demo_twice_changes_nothing(demo_dir):
    before, before_files = counts(), files(demo_dir)
    dispose_engine()
    assert before["Collection"] == 6 and before["Component"] == 60
    proc = run(demo_dir, "demo")
    assert "nothing to do" in proc.stdout
    assert counts() == before
    assert files(demo_dir) == before_files
