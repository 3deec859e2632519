"""``python -m pipeline reference fetch-neurosynth``: downloads from a local HTTP server laid out as the
neurosynth-data repository (no internet), with checks, resume and a clear message without a server."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.decoding import fetch
from store.db import session_scope
from store.models import ReferenceSet, Term
from tests.neurosynth_files import write_neurosynth_repository

LDA50 = [
    "data-neurosynth_version-7_coordinates.tsv.gz",
    "data-neurosynth_version-7_metadata.tsv.gz",
    "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz",
    "data-neurosynth_version-7_vocab-LDA50_vocabulary.txt",
    "data-neurosynth_version-7_vocab-LDA50_keys.tsv",
    "data-neurosynth_version-7_vocab-LDA50_metadata.json",
]


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves a folder; honours ``Range: bytes=N-`` (206) and can cut a file short once."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        path = Path(server.root) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and server.ranges:
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut.pop(path.name, None)
        self.wfile.write(body[:cut] if cut is not None else body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    write_neurosynth_repository(root, topics=(50,))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.requests, httpd.cut, httpd.ranges = str(root), [], {}, True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def manifest(tmp_path, server, monkeypatch) -> Path:
    """The served files' sizes and checksums as the release list, in place of the shipped one."""
    _, _, root = server
    files = {}
    for path in root.iterdir():
        data = path.read_bytes()
        blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        files[path.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "git_blob": blob}
    target = tmp_path / "manifest.json"
    target.write_text(json.dumps({"files": files}))
    monkeypatch.setattr(fetch, "MANIFEST_PATH", target)
    return target


def test_the_shipped_list_names_the_release_files_with_checksums() -> None:
    known = fetch.load_manifest()
    assert set(LDA50) <= set(known)
    assert fetch.vocabulary_files(7, "lda50", known) == LDA50
    assert all(known[name].sha256 and known[name].size for name in LDA50)
    terms = fetch.vocabulary_files(7, "terms", known)
    assert terms[2] == "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_features.npz"
    assert all(known[name].git_blob for name in terms)
    with pytest.raises(ValueError, match=r"no LDA50 vocabulary of version 5; it has: .*LDA50 \(v6\)"):
        fetch.vocabulary_files(5, "LDA50", known)
    with pytest.raises(ValueError, match="unknown vocabulary 'LDA7'"):
        fetch.vocabulary_files(7, "LDA7", known)
    assert fetch.DEFAULT_BASE_URL.startswith("https://raw.githubusercontent.com/neurosynth/neurosynth-data/")


def test_fetch_downloads_checks_builds_and_activates(data_dir, server, manifest, capsys) -> None:
    from pipeline.__main__ import main

    httpd, url, root = server
    target = data_dir / "ns"
    args = ["reference", "fetch-neurosynth", "--vocab", "LDA50", "--dir", str(target), "--base-url", url]
    assert main([*args, "--activate"]) == 0
    captured = capsys.readouterr()
    assert "[#####" in captured.err and "MB" in captured.err  # the progress bar
    assert f"6 file(s) in {target}" in captured.out
    for name in LDA50:
        assert (target / name).read_bytes() == (root / name).read_bytes()
    assert not list(target.glob("*.part"))
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        assert ref.name == "Neurosynth v7 LDA50" and ref.source == "neurosynth-v7"
        names = session.scalars(select(Term.name).where(Term.reference_set_id == ref.id)).all()
        assert names and all(re.fullmatch(r"\d+ · \S+ \S+ \S+", n) for n in names)

    # Files already there and correct are not downloaded again.
    before = len(httpd.requests)
    assert main([*args, "--name", "again"]) == 0
    assert len(httpd.requests) == before


def test_an_interrupted_download_resumes_with_a_range_request(data_dir, server, manifest, capsys) -> None:
    httpd, url, root = server
    name = LDA50[0]
    size = (root / name).stat().st_size
    httpd.cut[name] = size // 3
    with pytest.raises(RuntimeError, match=r"connection closed after \d+ of \d+ bytes.*run again to resume"):
        fetch.fetch_files([name], data_dir / "ns", base_url=url)
    part = data_dir / "ns" / (name + ".part")
    assert part.stat().st_size == size // 3 and not (data_dir / "ns" / name).exists()

    fetch.fetch_files([name], data_dir / "ns", base_url=url)
    assert httpd.requests[-1] == (f"/{name}", f"bytes={size // 3}-")
    assert (data_dir / "ns" / name).read_bytes() == (root / name).read_bytes() and not part.exists()


def test_a_server_that_ignores_ranges_gets_the_file_written_anew(data_dir, server, manifest) -> None:
    httpd, url, root = server
    name = LDA50[1]
    target = data_dir / "ns"
    target.mkdir()
    (target / (name + ".part")).write_bytes(b"x" * 100)  # not the file's start: must be replaced, not appended to
    httpd.ranges = False
    fetch.fetch_files([name], target, base_url=url)
    assert (target / name).read_bytes() == (root / name).read_bytes()


def test_a_file_that_is_not_the_release_is_refused_and_removed(data_dir, server, manifest, capsys) -> None:
    from pipeline.__main__ import main

    _, url, root = server
    name = LDA50[3]
    (root / name).write_text("0_tampered\n" * 3)
    target = data_dir / "ns"
    assert main(["reference", "fetch-neurosynth", "--vocab", "LDA50", "--dir", str(target), "--base-url", url]) == 1
    err = capsys.readouterr().err
    assert f"{name} downloaded from {url} is not the release's file" in err
    assert not (target / name).exists() and not (target / (name + ".part")).exists()
    with session_scope() as session:
        assert session.scalar(select(ReferenceSet).where(ReferenceSet.source == "neurosynth-v7")) is None


def test_without_a_server_the_message_says_so_and_nothing_is_built(data_dir, capsys, monkeypatch) -> None:
    from pipeline.__main__ import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("INCDB_NEUROSYNTH_URL", f"http://127.0.0.1:{port}/")
    target = data_dir / "ns"
    assert main(["reference", "fetch-neurosynth", "--vocab", "LDA50", "--dir", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot download http://127.0.0.1:{port}/{LDA50[0]}")
    assert "offline" in err and "build-neurosynth" in err
    assert not [p for p in target.iterdir() if not p.name.endswith(".part")]
    with session_scope() as session:
        assert session.scalar(select(ReferenceSet).where(ReferenceSet.source == "neurosynth-v7")) is None
