"""Memory and CPU of hostile files follow the upload, not what a header claims (the public decoder and curators'
ingest): peak RSS of a real serving process is measured with the kernel's high-water mark (``VmHWM``, reset
through ``/proc/<pid>/clear_refs``), a gzip bomb is not inflated past its header's byte count, and refused files
count toward the sender's hourly cap."""

from __future__ import annotations

import gzip
import struct
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests

from pipeline.curation.uploads import check_nifti_file
from pipeline.maps.nifti import NiftiError, check_nifti
from tests.niftis import smooth_random
from tests.services import running, service_env, start_embedded

# What one hostile decode may add to the serving process at most, whatever the header claims (the README states it).
BOUND_MB = 300


def _header_only(
    path: Path,
    shape: tuple[int, ...],
    dtype=np.float64,
    zooms=(2.0, 2.0, 2.0),
    data_mb: int = 0,
    compresslevel: int = 6,
) -> Path:
    """A gzipped NIfTI whose header claims ``shape`` of ``dtype``, followed by ``data_mb`` MB of zeros (not the
    whole claim): what a hostile visitor sends."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_zooms(zooms + (1.0,) * (len(shape) - 3))
    affine = np.diag(list(zooms) + [1.0])
    affine[:3, 3] = [-90, -126, -72]
    header.set_sform(affine, code=4)
    header.set_qform(affine, code=4)
    with gzip.open(path, "wb", compresslevel=compresslevel) as fh:
        fh.write(header.binaryblock + b"\0" * 4)
        zeros = b"\0" * (1024 * 1024)
        for _ in range(data_mb):
            fh.write(zeros)
    return path


def _zeros_file(path: Path, shape: tuple[int, ...], dtype=np.float32, zooms=(3.0, 3.0, 3.0)) -> Path:
    """A complete gzipped NIfTI of zeros: every byte its header claims is there, a few hundred KB compressed."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    affine = np.diag(list(zooms) + [1.0])
    affine[:3, 3] = [-90, -126, -72]
    header.set_sform(affine, code=4)
    header.set_qform(affine, code=4)
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header.binaryblock + b"\0" * 4)
        zeros = b"\0" * (4 * 1024 * 1024)
        while nbytes > 0:
            fh.write(zeros[: min(nbytes, len(zeros))])
            nbytes -= len(zeros)
    return path


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the kernel's peak RSS starts again from the current RSS


def _post(url: str, path: Path) -> requests.Response:
    return requests.post(
        f"{url}/api/decode?name={path.name}",
        data=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=300,
    )


def _settle(url: str, token: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/api/decode/{token}", timeout=30).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{token} did not finish")


def test_hostile_headers_keep_the_decoder_within_its_memory_bound(data_dir, tmp_path):
    """A real ``python app.py``: after a warm-up decode, a 1 MB file claiming 512^3 float64 voxels, three such
    files at once, and a 100-volume file whose every claimed byte is zeros (the per-sender data cap switched off,
    so it is read and resampled in full): the process's peak RSS stays within BOUND_MB of its idle RSS."""
    env = service_env(data_dir, INCDB_DECODE_MAX_DATA_BYTES_ANONYMOUS="0", INCDB_DECODE_PER_HOUR_ANONYMOUS="0")
    app = start_embedded(env, tmp_path / "app.log")
    with running(app):
        warm = tmp_path / "warm.nii.gz"
        nib.save(
            nib.Nifti1Image(
                smooth_random(np.random.default_rng(3), shape=(61, 73, 61)),
                np.array([[3, 0, 0, -90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1.0]]),
            ),
            warm,
        )
        r = _post(app.url, warm)
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        time.sleep(0.5)
        idle = _rss_mb(app.pid, "VmRSS")
        _reset_peak(app.pid)

        bomb = _header_only(tmp_path / "claims512.nii.gz", (512, 512, 512), np.float64, data_mb=1024)
        assert bomb.stat().st_size < 2 * 1024 * 1024
        answers: list[requests.Response] = []
        threads = [threading.Thread(target=lambda: answers.append(_post(app.url, bomb))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after_bombs = _rss_mb(app.pid, "VmHWM")
        assert after_bombs - idle < BOUND_MB, f"peak {after_bombs:.0f} MB, idle {idle:.0f} MB"
        # Each is refused from its header (422); one sent while the sender's two slots are taken waits for none (429).
        assert {a.status_code for a in answers} <= {422, 429}, [a.text for a in answers]
        refused = [a for a in answers if a.status_code == 422]
        assert refused and all("voxels per volume" in a.json()["error"] for a in refused)

        many = _zeros_file(tmp_path / "many.nii.gz", (64, 76, 64, 100))  # 100 volumes, 125 MB claimed and present
        r = _post(app.url, many)
        assert r.status_code == 202, r.text
        body = _settle(app.url, r.json()["id"])
        assert body["status"] == "failed" and "constant inside the brain mask" in (body["error"] or "")
        peak = _rss_mb(app.pid, "VmHWM")
    print(f"decoder memory: idle {idle:.0f} MB, peak {peak:.0f} MB")
    assert peak - idle < BOUND_MB, f"peak {peak:.0f} MB, idle {idle:.0f} MB"


def test_a_header_claim_over_the_senders_cap_is_refused_before_inflating(tmp_path):
    """The claim (voxels x volumes x bytes) is checked from the header alone: a 4 MB file claiming 4 GiB is
    refused in well under the time inflating it takes, and says the limit."""
    bomb = _header_only(tmp_path / "claim.nii.gz", (256, 256, 256, 64), np.float32, data_mb=0)
    with pytest.raises(NiftiError, match="limit here is 512.0 MiB"):
        check_nifti_file(bomb, bomb.name, max_data_bytes=512 * 1024**2)


def _count_inflated(monkeypatch) -> list[int]:
    """Counts the bytes the upload check inflates."""
    import pipeline.curation.uploads as uploads

    seen = [0]
    real_open = uploads._gzip.open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def read(self, n=-1):
            data = self.fh.read(n)
            seen[0] += len(data)
            return data

    monkeypatch.setattr(uploads._gzip, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    return seen


def test_a_gzip_bomb_is_not_inflated_past_its_headers_byte_count(tmp_path, monkeypatch):
    """A valid small header, then gzip members holding far more zeros than the header describes, the last
    member cut short: refused after inflating at most the header's bytes plus the slack, with a clear message."""
    from pipeline.curation.uploads import GZIP_SLACK

    path = tmp_path / "bomb.nii.gz"
    _header_only(path, (40, 48, 40), np.float32, zooms=(4.0, 4.0, 4.0), data_mb=200, compresslevel=9)
    member = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    with open(path, "ab") as fh:
        fh.write(member)
        fh.write(member[: len(member) // 2])  # cut short
    claimed = check_nifti(path).data_end
    seen = _count_inflated(monkeypatch)
    with pytest.raises(NiftiError, match="more data than the header describes"):
        check_nifti_file(path, path.name)
    assert seen[0] <= claimed + GZIP_SLACK + 4 * 1024 * 1024


def test_a_complete_file_still_passes_and_a_short_one_is_truncated(tmp_path):
    good = _zeros_file(tmp_path / "ok.nii.gz", (20, 24, 20, 3))
    assert check_nifti_file(good, good.name) == 3
    short = tmp_path / "short.nii.gz"
    _header_only(short, (20, 24, 20, 3), np.float32, zooms=(4.0, 4.0, 4.0), data_mb=0)
    with pytest.raises(NiftiError, match="truncated"):
        check_nifti_file(short, short.name)


def test_chunked_reading_equals_nibabel_for_every_layout(tmp_path):
    """``volume_chunks`` (a few volumes at a time, from the stream) gives nibabel's values: scaled integers,
    big-endian floats, float64, NaN set to 0, chunks of one volume."""
    rng = np.random.default_rng(0)
    cases = {
        "int16_scaled.nii.gz": (rng.integers(-3000, 3000, (9, 10, 11, 5)).astype(np.int16), 0.01, 2.5),
        "be_float32.nii": (rng.standard_normal((9, 10, 11, 4)).astype(">f4"), None, None),
        "float64.nii.gz": (rng.standard_normal((9, 10, 11)), None, None),
    }
    for name, (data, slope, inter) in cases.items():
        data = np.array(data)
        if data.dtype.kind == "f":
            data.flat[7] = np.nan
        img = nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0]))
        if slope is not None:
            img.header.set_slope_inter(slope, inter)
        nib.save(img, tmp_path / name)
        checked = check_nifti(tmp_path / name)
        want = np.asarray(nib.load(tmp_path / name).get_fdata(dtype=np.float64), dtype=np.float32)
        want[~np.isfinite(want)] = 0
        if want.ndim == 3:
            want = want[..., None]
        per_volume = int(np.prod(checked.shape[:3])) * 4
        got = np.concatenate([b for _, b in checked.volume_chunks(max_bytes=per_volume)], axis=3)
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)
        np.testing.assert_array_equal(checked.volumes(), got)


def test_refused_files_count_toward_the_hourly_cap(web, tmp_path, monkeypatch):
    """Three refused files from one address, with a cap of three per hour: the fourth request is refused with 429
    before its body is even checked."""
    from store.config import reset_settings
    from tests.services import Client

    monkeypatch.setenv("INCDB_DECODE_PER_HOUR_ANONYMOUS", "3")
    reset_settings()
    client = Client(flask_app=web.server)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti" + struct.pack("<i", 348)))
    for _ in range(3):
        r = client.post(
            f"/api/decode?name={bad.name}", data=bad.read_bytes(), headers={"Content-Type": "application/octet-stream"}
        )
        assert r.status_code == 422, r.text
    r = client.post(
        f"/api/decode?name={bad.name}", data=bad.read_bytes(), headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 429, r.text
