"""Uploaded archives are unpacked safely (DESIGN sections 3 and 11): only NIfTI members, only inside the work
directory, no links or devices, bounded member count and size."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.curation.archives import ArchiveError, file_kind, iter_niftis, storage_suffix

NIFTI_A = b"\x1f\x8b" + b"pretend nifti A" * 10  # contents are copied, not parsed, at this stage
NIFTI_B = b"plain nifti B" * 7


@pytest.fixture
def place(tmp_path):
    """A folder holding the archive and the work directory, and nothing else: whatever appears there besides the
    two is a file written outside the work directory."""
    root = tmp_path / "place"
    workdir = root / "work"
    workdir.mkdir(parents=True)
    return root


def unpack(archive: Path, name: str | None = None, **limits) -> tuple[list, list[str], Path]:
    workdir = archive.parent / "work"
    warnings: list[str] = []
    members = list(iter_niftis(archive, name or archive.name, workdir, warnings, **limits))
    return members, warnings, workdir


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_nothing_outside(root: Path, archive: Path) -> None:
    """Only the archive and the work directory (and its contents) exist under root, and nothing was written next
    to root either."""
    names = everything_under(root)
    assert {n for n in names if not n.startswith("work")} == {archive.name}, names
    assert sorted(p.name for p in root.parent.iterdir()) == ["place"]


TREE = {
    "study/sub-01/ica/melodic_IC.nii.gz": NIFTI_A,
    "study/sub-02/zstat1.nii": NIFTI_B,
    "top.nii.gz": NIFTI_B,
    "study/README.txt": b"notes",
    "study/sub-01/report.html": b"<html>",
    "__MACOSX/study/sub-01/ica/._melodic_IC.nii.gz": b"resource fork",
    "study/.DS_Store": b"finder",
    "study/.hidden/secret.nii.gz": NIFTI_A,
    "study/sub-02/.zstat_backup.nii": NIFTI_B,
}
EXPECTED_NIFTIS = {
    "study/sub-01/ica/melodic_IC.nii.gz": NIFTI_A,
    "study/sub-02/zstat1.nii": NIFTI_B,
    "top.nii.gz": NIFTI_B,
}
EXPECTED_SKIPPED = {"study/README.txt", "study/sub-01/report.html"}


def make_zip(path: Path, members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(d.rstrip("/") + "/", b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz", dirs: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, mode) as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def check_tree_result(members, warnings, workdir, archive_name):
    by_name = {m.name: m for m in members}
    assert set(by_name) == {f"{archive_name}/{n}" for n in EXPECTED_NIFTIS}
    for name, data in EXPECTED_NIFTIS.items():
        member = by_name[f"{archive_name}/{name}"]
        assert member.path.read_bytes() == data
        # Extracted under our own numbered name, directly inside the work directory.
        assert member.path.parent == workdir and member.path.name.startswith("member-")
        assert member.path.name.endswith(".nii.gz" if name.endswith(".gz") else ".nii")
    skipped = {w.split("skipped ", 1)[1].split(" (")[0] for w in warnings}
    assert skipped == EXPECTED_SKIPPED, warnings
    assert all(w.startswith(f"{archive_name}: ") for w in warnings)
    assert not any("MACOSX" in w or ".DS_Store" in w or "hidden" in w for w in warnings)
    assert len(list(workdir.iterdir())) == len(EXPECTED_NIFTIS)


def test_zip_with_nested_folders(place):
    archive = make_zip(place / "upload.zip", TREE, dirs=("study/", "study/sub-01/", "empty/"))
    members, warnings, workdir = unpack(archive)
    check_tree_result(members, warnings, workdir, "upload.zip")
    assert_nothing_outside(place, archive)


@pytest.mark.parametrize("name, mode", [("upload.tar.gz", "w:gz"), ("upload.tgz", "w:gz"), ("upload.tar", "w")])
def test_tar_with_nested_folders(place, name, mode):
    archive = make_tar(place / name, TREE, mode, dirs=("study", "study/sub-01"))
    members, warnings, workdir = unpack(archive)
    check_tree_result(members, warnings, workdir, name)
    assert_nothing_outside(place, archive)


def test_plain_nifti_is_passed_through(place):
    path = place / "map.nii.gz"
    path.write_bytes(NIFTI_A)
    (member,), warnings, workdir = unpack(path)
    assert member.name == "map.nii.gz" and member.path == path and warnings == []
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("evil", ["../x.nii.gz", "study/../../x.nii.gz", "..", "a/../../../etc/x.nii"])
def test_zip_slip_is_refused(place, evil):
    archive = make_zip(place / "evil.zip", {"ok.nii.gz": NIFTI_A, evil: NIFTI_B})
    with pytest.raises(ArchiveError, match=r"outside the archive \('\.\.'\)") as info:
        unpack(archive)
    assert str(info.value).startswith("evil.zip: ")
    assert_nothing_outside(place, archive)
    assert list((place / "work").iterdir()) == []  # refused before anything was extracted


def test_dotdot_inside_the_archive_is_fine(place):
    archive = make_zip(place / "ok.zip", {"a/b/../map.nii.gz": NIFTI_A})
    (member,), _, _ = unpack(archive)
    assert member.name == "ok.zip/a/map.nii.gz"


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("evil", ["/tmp/x.nii.gz", "\\\\server\\x.nii.gz", "C:/x.nii.gz"])
def test_absolute_paths_are_refused(place, kind, evil):
    members = {"ok.nii.gz": NIFTI_A, evil: NIFTI_B}
    archive = make_zip(place / "abs.zip", members) if kind == "zip" else make_tar(place / "abs.tar.gz", members)
    with pytest.raises(ArchiveError, match="absolute path"):
        unpack(archive)
    assert_nothing_outside(place, archive)


def test_zip_absolute_path_via_raw_zipinfo(place):
    # zipfile.writestr strips a leading "/" from names given as strings; a ZipInfo keeps it, as hostile tools do.
    archive = place / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("placeholder.nii.gz")
        info.filename = "/etc/cron.d/x.nii.gz"
        zf.writestr(info, NIFTI_A)
    assert zipfile.ZipFile(archive).namelist() == ["/etc/cron.d/x.nii.gz"]
    with pytest.raises(ArchiveError, match="absolute path"):
        unpack(archive)
    assert_nothing_outside(place, archive)


def add_special(tf: tarfile.TarFile, name: str, kind: bytes, target: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    tf.addfile(info)


@pytest.mark.parametrize(
    "kind, target, message",
    [
        (tarfile.SYMTYPE, "/etc/passwd", "is a link"),
        (tarfile.SYMTYPE, "../../outside.nii.gz", "is a link"),
        (tarfile.LNKTYPE, "ok.nii.gz", "is a link"),
        (tarfile.CHRTYPE, "", "device or special"),
        (tarfile.FIFOTYPE, "", "device or special"),
    ],
)
def test_tar_links_and_devices_are_refused(place, kind, target, message):
    archive = place / "links.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = io.BytesIO(NIFTI_A)
        info = tarfile.TarInfo("ok.nii.gz")
        info.size = len(NIFTI_A)
        tf.addfile(info, data)
        add_special(tf, "sub/link.nii.gz", kind, target)
    with pytest.raises(ArchiveError, match=message) as info:
        unpack(archive)
    assert "sub/link.nii.gz" in str(info.value)
    assert_nothing_outside(place, archive)
    assert list((place / "work").iterdir()) == []


def test_zip_symlink_member_is_refused(place):
    archive = place / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.nii.gz", NIFTI_A)
        info = zipfile.ZipInfo("link.nii.gz")
        info.create_system = 3  # unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link or device"):
        unpack(archive)
    assert_nothing_outside(place, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_members(place, kind):
    members = {f"maps/map{i:03d}.nii.gz": NIFTI_A for i in range(6)}
    archive = make_zip(place / "many.zip", members) if kind == "zip" else make_tar(place / "many.tgz", members)
    with pytest.raises(ArchiveError, match="6 files in the archive, more than 5"):
        unpack(archive, max_members=5)
    assert list((place / "work").iterdir()) == []
    members_ok, _, _ = unpack(archive, max_members=6)
    assert len(members_ok) == 6


def lie_about_size(archive: Path, member: str, declared: int) -> None:
    """Rewrite the uncompressed size of one member in both the local header and the central directory."""
    raw = bytearray(archive.read_bytes())
    name = member.encode()
    local = raw.find(b"PK\x03\x04")
    while local != -1:
        name_len = struct.unpack_from("<H", raw, local + 26)[0]
        if raw[local + 30 : local + 30 + name_len] == name:
            struct.pack_into("<I", raw, local + 22, declared)
        local = raw.find(b"PK\x03\x04", local + 4)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + name_len] == name:
            struct.pack_into("<I", raw, central + 24, declared)
        central = raw.find(b"PK\x01\x02", central + 4)
    archive.write_bytes(bytes(raw))


def test_zip_bomb_declaring_a_small_size_is_stopped(place):
    limit = 64 * 1024
    archive = make_zip(place / "bomb.zip", {"bomb.nii": bytes(4 * 1024 * 1024)})  # 4 MiB of zeros, ~4 kB packed
    assert archive.stat().st_size < limit
    lie_about_size(archive, "bomb.nii", 1000)
    assert zipfile.ZipFile(archive).getinfo("bomb.nii").file_size == 1000
    with pytest.raises(ArchiveError, match="corrupt|more than the allowed size") as info:
        unpack(archive, max_bytes=limit)
    assert str(info.value).startswith("bomb.zip: member bomb.nii")
    written = sum(p.stat().st_size for p in (place / "work").rglob("*") if p.is_file())
    assert written <= limit
    assert_nothing_outside(place, archive)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_larger_than_the_limit_is_refused(place, kind):
    members = {"a.nii": bytes(40_000), "b.nii": bytes(40_000)}
    archive = make_zip(place / "big.zip", members) if kind == "zip" else make_tar(place / "big.tar.gz", members)
    with pytest.raises(ArchiveError, match="more than"):
        unpack(archive, max_bytes=50_000)
    assert list((place / "work").iterdir()) == []
    ok, _, _ = unpack(archive, max_bytes=80_000)
    assert [m.path.stat().st_size for m in ok] == [40_000, 40_000]


def test_only_nifti_members_count_towards_the_size_limit(place):
    archive = make_zip(place / "docs.zip", {"map.nii": bytes(1000), "video.mp4": bytes(100_000)})
    (member,), warnings, _ = unpack(archive, max_bytes=10_000)
    assert member.name == "docs.zip/map.nii"
    assert any("video.mp4" in w for w in warnings)


def test_duplicate_names(place):
    archive = place / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("maps/a.nii.gz", NIFTI_A)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("maps/a.nii.gz", NIFTI_B)
        zf.writestr("maps/./b.nii.gz", NIFTI_A)
        zf.writestr("maps/b.nii.gz", NIFTI_B)
    members, warnings, workdir = unpack(archive)
    assert [m.name for m in members] == ["dup.zip/maps/a.nii.gz", "dup.zip/maps/b.nii.gz"]
    assert members[0].path.read_bytes() == NIFTI_A  # the first of two same-named files is kept
    assert sum("second file named maps/a.nii.gz" in w for w in warnings) == 1
    assert sum("second file named maps/b.nii.gz" in w for w in warnings) == 1
    assert len(list(workdir.iterdir())) == 2


def test_duplicate_names_in_tar(place):
    archive = place / "dup.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for data in (NIFTI_A, NIFTI_B):
            info = tarfile.TarInfo("x/map.nii")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (member,), warnings, _ = unpack(archive)
    assert member.path.read_bytes() == NIFTI_A
    assert any("second file named x/map.nii" in w for w in warnings)


@pytest.mark.parametrize("name", ["maps.rar", "maps.7z", "brain.png", "notes", "map.nii.bz2", "x.tar.bz2"])
def test_unsupported_extension(place, name):
    with pytest.raises(ArchiveError, match="unsupported file type") as info:
        file_kind(name)
    assert str(info.value).startswith(f"{name}: ")
    assert ".nii.gz" in str(info.value) and ".zip" in str(info.value)
    path = place / name
    path.write_bytes(b"data")
    with pytest.raises(ArchiveError, match="unsupported file type"):
        unpack(path)
    with pytest.raises(ArchiveError):
        storage_suffix(name)


@pytest.mark.parametrize(
    "name, kind, suffix",
    [
        ("a.nii", "nifti", ".nii"),
        ("A.NII.GZ", "nifti", ".nii.gz"),
        ("x.zip", "zip", ".zip"),
        ("x.tar.gz", "tar", ".tar.gz"),
        ("x.TGZ", "tar", ".tgz"),
        ("x.tar", "tar", ".tar"),
    ],
)
def test_supported_kinds(name, kind, suffix):
    assert file_kind(name) == kind
    assert storage_suffix(name) == suffix


def test_archive_without_niftis(place):
    archive = make_zip(place / "docs.zip", {"readme.txt": b"x", "__MACOSX/._a.nii": b"y"})
    with pytest.raises(ArchiveError, match="no .nii or .nii.gz files"):
        unpack(archive)


@pytest.mark.parametrize(
    "name, message",
    [("broken.zip", "not a valid zip"), ("broken.tar.gz", "not a valid tar"), ("broken.tgz", "not a valid tar")],
)
def test_corrupt_archives(place, name, message):
    path = place / name
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ArchiveError, match=message):
        unpack(path)


def test_corrupt_zip_member(place):
    archive = make_zip(place / "crc.zip", {"map.nii": b"A" * 5000})
    raw = bytearray(archive.read_bytes())
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 14, 0xDEADBEEF)  # wrong CRC-32 in the local header
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 16, 0xDEADBEEF)
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="corrupt"):
        unpack(archive)
