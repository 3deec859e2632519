"""A corpus of hostile or broken uploads taken through the real ingest path.

Each one must end with a clear message naming the file, create no component, write nothing outside its own
place, and leave every other collection exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import select

from accounts.users import create_user
from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
from pipeline.curation.ingest import ingest
from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map
from pipeline.jobs.lifecycle import create_job
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask
from store.db import session_scope
from store.models import Collection, Component, Decoding, Job, TermMap

SMALL_AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
SMALL_AFFINE[:3, 3] = [-90, -126, -72]


def nifti_bytes(data, affine=GRID_AFFINE, dtype=None, gz=True) -> bytes:
    img = nib.Nifti1Image(np.asarray(data) if dtype is None else np.asarray(data).astype(dtype), affine)
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


def good_map(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (builtin_term_map(tuple(BUILTIN_PEAKS["visual"])) + rng.normal(0, 0.5, GRID_SHAPE) * brain_mask()).astype(
        np.float32
    )


def small(value=None, shape=(46, 55, 46)) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.normal(size=shape).astype(np.float32) if value is None else np.full(shape, value, np.float32)


def header_with(**fields) -> bytes:
    """An uncompressed .nii whose header fields were edited after writing (bypassing nibabel's checks)."""
    img = nib.Nifti1Image(small(), SMALL_AFFINE)
    hdr = img.header
    for name, value in fields.items():
        hdr[name] = value
    return hdr.binaryblock + b"\0" * 4 + np.asarray(img.dataobj).tobytes()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def link(name: str, target: str, kind) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info


def zip_bomb() -> bytes:
    # 40 MB of zeros compresses to ~40 kB; with the extraction limit lowered to 8 MB it must be stopped.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.nii", b"\0" * 40_000_000)
    return buf.getvalue()


def png_bytes() -> bytes:
    raw = b"\x00\xff\x00\x00"

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", 0)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", __import__("zlib").compress(raw))
        + chunk(b"IEND", b"")
    )


def wrong_magic() -> bytes:
    raw = bytearray(nifti_bytes(small(), SMALL_AFFINE, gz=False))
    raw[344:348] = b"xyz\0"
    return bytes(raw)


def truncated_nii() -> bytes:
    return nifti_bytes(small(), SMALL_AFFINE, gz=False)[:5000]


def truncated_gz() -> bytes:
    data = nifti_bytes(good_map())
    return data[: len(data) // 2]


def nan_affine() -> bytes:
    img = nib.Nifti1Image(small(), SMALL_AFFINE)
    raw = bytearray(img.to_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    hdr["srow_x"] = [np.nan, 0, 0, 0]
    hdr["qform_code"] = 0
    return hdr.binaryblock + bytes(raw[348:])


def far_away_affine() -> bytes:
    affine = GRID_AFFINE.copy()
    affine[:3, 3] += 400  # the whole map lies outside the standard field of view
    return nifti_bytes(good_map(), affine)


def five_d() -> bytes:
    return nifti_bytes(np.zeros((10, 10, 10, 2, 3), np.float32), SMALL_AFFINE)


def too_many_files() -> bytes:
    one = nifti_bytes(small(), SMALL_AFFINE)
    return zip_of({f"maps/m{i:04d}.nii.gz": one for i in range(2001)})


CASES = {
    # name on upload: (bytes, words the message must contain)
    "truncated.nii.gz": (truncated_gz, "corrupt"),
    "wrong_magic.nii": (wrong_magic, "not a readable NIfTI"),
    "short_data.nii": (truncated_nii, "truncated"),
    "huge_dims.nii": (lambda: header_with(dim=[3, 30000, 30000, 30000, 1, 1, 1, 1]), "exceeds"),
    "flat_2d.nii.gz": (lambda: nifti_bytes(np.ones((20, 20), np.float32), SMALL_AFFINE), "2D"),
    "five_d.nii.gz": (five_d, "5D"),
    "complex.nii.gz": (lambda: nifti_bytes(small().astype(np.complex64), SMALL_AFFINE), "not supported"),
    "rgb.nii": (
        lambda: nib.Nifti1Image(
            np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), SMALL_AFFINE
        ).to_bytes(),
        "not supported",
    ),  # uncompressed: refused
    "all_nan.nii.gz": (lambda: nifti_bytes(np.full(GRID_SHAPE, np.nan, np.float32)), "zero variance"),
    "all_inf.nii.gz": (lambda: nifti_bytes(np.full(GRID_SHAPE, np.inf, np.float32)), "zero variance"),
    "constant.nii.gz": (lambda: nifti_bytes(np.full(GRID_SHAPE, 3.0, np.float32)), "zero variance"),
    "zeros_int8.nii.gz": (lambda: nifti_bytes(np.zeros(GRID_SHAPE, np.int8)), "zero variance"),
    "nan_affine.nii": (nan_affine, "affine"),
    "zero_voxel.nii": (lambda: header_with(pixdim=[1, 0, 0, 0, 1, 1, 1, 1], qform_code=1, sform_code=0), "voxel size"),
    "far_away.nii.gz": (far_away_affine, "zero variance"),
    "empty.nii.gz": (lambda: b"", "empty"),
    "really_png.nii.gz": (png_bytes, "not gzip"),
    "notes.txt": (lambda: b"hello", "unsupported file type"),
    "not_a_zip.zip": (lambda: os.urandom(3000), "not a valid zip"),
    "not_a_tar.tar.gz": (lambda: gzip.compress(os.urandom(3000)), "not a valid tar"),
    "truncated.tar.gz": (lambda: tar_of([("a.nii.gz", nifti_bytes(good_map()))])[:20000], "corrupt"),
    "zipslip.zip": (lambda: zip_of({"../../evil.nii.gz": nifti_bytes(good_map())}), "outside the archive"),
    "absolute.zip": (lambda: zip_of({"/tmp/evil_abs.nii.gz": nifti_bytes(good_map())}), "absolute path"),
    "tarslip.tar.gz": (lambda: tar_of([("../evil_tar.nii.gz", nifti_bytes(good_map()))]), "outside the archive"),
    "symlink.tar.gz": (lambda: tar_of([link("maps/a.nii.gz", "/etc/passwd", tarfile.SYMTYPE)]), "link"),
    "hardlink.tar.gz": (
        lambda: tar_of([("b.nii.gz", nifti_bytes(good_map())), link("c.nii.gz", "b.nii.gz", tarfile.LNKTYPE)]),
        "link",
    ),
    "device.tar.gz": (lambda: tar_of([device("dev.nii")]), "device"),
    "bomb.zip": (zip_bomb, "unpacks to"),
    "too_many.zip": (too_many_files, "more than 2000"),
    "only_junk.zip": (
        lambda: zip_of({"readme.txt": b"x", "__MACOSX/._a.nii.gz": b"x", ".hidden.nii": b"x"}),
        "no .nii",
    ),
}


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and "cache" not in p.parts
        and p.suffix != ".sqlite3-wal"
        and not p.name.startswith("incdb.sqlite3")
    }


def db_digest() -> list:
    with session_scope() as s:
        comps = [
            (c.uuid, c.best_term_id, round(c.best_r, 6), c.storage_key)
            for c in s.scalars(select(Component).order_by(Component.uuid))
        ]
        decs = s.execute(select(Decoding.component_id, Decoding.term_id, Decoding.r).order_by(Decoding.id)).all()
        maps = [
            (t.movie_id, t.term_id, t.n_components, t.storage_key)
            for t in s.scalars(select(TermMap).order_by(TermMap.id))
        ]
        cols = [(c.slug, c.status) for c in s.scalars(select(Collection).order_by(Collection.id))]
    return [comps, [tuple(d) for d in decs], maps, cols]


@pytest.fixture
def site(data_dir, monkeypatch):
    """A data dir holding one good public collection, and a helper to ingest an upload into a new collection."""
    import pipeline.curation.archives as archives

    monkeypatch.setattr(archives, "MAX_EXTRACTED_BYTES", 8_000_000)
    with session_scope() as s:
        user = create_user(s, "victim@example.org", "a long password")
        col = create_collection(s, user, get_or_create_movie(s, "Good Movie"), "Good data")
        path = data_dir / "good.nii.gz"
        path.write_bytes(nifti_bytes(good_map()))
        add_upload(s, col, path, "good.nii.gz")
        job = create_job(s, "ingest", col.id, user.id).id
        path.unlink()
    assert ingest(job).components == 1

    def run(name: str, payload: bytes) -> tuple[Job, int]:
        with session_scope() as s:
            user = s.scalar(select(create_user.__globals__["User"]).limit(1))
            col = create_collection(s, user, get_or_create_movie(s, "Hostile Movie"), f"hostile {name}")
            src = data_dir.parent / "incoming"
            src.mkdir(exist_ok=True)
            f = src / "upload.bin"
            f.write_bytes(payload)
            try:
                add_upload(s, col, f, name)
            except ValueError as exc:  # refused before storing: unsupported type
                return Job(status="failed", error=str(exc)), col.id
            job_id = create_job(s, "ingest", col.id, user.id).id
        try:
            ingest(job_id)
        except Exception as exc:  # noqa: BLE001 - a crash is recorded on the Job row too
            assert str(exc)
        with session_scope() as s:
            job = s.get(Job, job_id)
            s.expunge(job)
            return job, col.id

    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_upload_is_refused_cleanly(site, data_dir, tmp_path, name):
    before_db = db_digest()
    before_files = tree_digest(data_dir / "files")
    make, words = CASES[name]
    job, collection_id = site(name, make())
    assert job.status == "failed", (job.status, job.message)
    message = job.error
    assert name in message or name.rsplit(".", 1)[0] in message, message
    assert words.lower() in message.lower(), message
    with session_scope() as s:
        assert not s.scalars(select(Component).where(Component.collection_id == collection_id)).all()
    after_db = db_digest()
    # The good collection's components, decodings and merged maps are untouched (new collections only add rows).
    assert after_db[0] == before_db[0] and after_db[1] == before_db[1] and after_db[2] == before_db[2]
    after_files = tree_digest(data_dir / "files")
    assert {k: v for k, v in after_files.items() if k in before_files} == before_files
    new = set(after_files) - set(before_files)
    assert all(k.startswith("uploads/") for k in new), new  # only the stored upload itself
    # Nothing escaped: no file named like the payloads' targets anywhere around the test's folders.
    for escaped in ("evil.nii.gz", "evil_abs.nii.gz", "evil_tar.nii.gz"):
        assert not list(tmp_path.parent.rglob(escaped))
    assert not Path("/tmp/evil_abs.nii.gz").exists()


def test_unicode_and_long_names_are_accepted(site):
    payload = nifti_bytes(good_map(7))
    for name in ("Ψυχή_карта_映画.nii.gz", ("x" * 240) + ".nii.gz"):
        job, collection_id = site(name, payload)
        assert job.status == "succeeded", job.error
        with session_scope() as s:
            comp = s.scalar(select(Component).where(Component.collection_id == collection_id))
            assert comp.source_file == name[:512]
            assert comp.storage_key.startswith("components/") and name not in comp.storage_key


def test_duplicate_names_in_archive_keep_one_and_warn(site):
    one = nifti_bytes(good_map(1))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("maps/a.nii.gz", one)
        with pytest.warns(UserWarning):
            zf.writestr("maps/a.nii.gz", one)
    job, collection_id = site("dups.zip", buf.getvalue())
    assert job.status == "succeeded"
    assert any("second file named maps/a.nii.gz" in w for w in job.warnings)
    with session_scope() as s:
        assert len(s.scalars(select(Component).where(Component.collection_id == collection_id)).all()) == 1


def test_partly_nan_map_is_used_with_nans_as_zero(site):
    data = good_map(2)
    data[:10] = np.nan
    data[-5:] = np.inf
    job, collection_id = site("some_nan.nii.gz", nifti_bytes(data))
    assert job.status == "succeeded", job.error
    with session_scope() as s:
        comp = s.scalar(select(Component).where(Component.collection_id == collection_id))
        assert comp.best_term.name == "visual"
