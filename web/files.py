"""File routes: every map as NIfTI and as a glass-brain PNG thumbnail, a component's decodings as CSV, a
collection's maps as a streamed zip.

Maps are full precision by default; ``?display=1`` gives the viewer's 8-bit encoding. Private data is 404 to
anyone who may not see it (not 403: its existence is private too).

Caching: a component belongs to one collection, which its owner can make private at any time, so component files
(and the CSV and zip made from them) may be kept by the browser only, and only to be revalidated on every use
(``private, no-cache`` with an ETag: a 304 costs one small request, and a map that became private answers 404 at
once). Term maps and merged maps are made from public data only and may be cached by anyone for a few minutes.
A thumbnail follows the rules of its map.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator

import flask
from sqlalchemy import select

from pipeline.maps.display import encode_for_display
from pipeline.maps.files import load_map
from pipeline.maps.grid import GRID_AFFINE, underlay
from pipeline.maps.thumbnails import PNG_MIMETYPE, thumbnail_or_render
from store import queries
from store.access import can_view
from store.artifacts import thumbnail_key
from store.db import session_scope
from store.models import Component, TermMap
from store.storage import get_storage
from web.auth import viewer
from web.csvfile import csv_response

blueprint = flask.Blueprint("files", __name__)

NIFTI_GZ = "application/gzip"
_display_cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_display_lock = threading.Lock()
DISPLAY_CACHE_ITEMS = 256
PUBLIC_CACHE = "public, max-age=300"
PRIVATE_CACHE = "private, no-cache"


def _display_bytes(key: str, version: str) -> bytes:
    with _display_lock:
        hit = _display_cache.get((key, version))
        if hit is not None:
            _display_cache.move_to_end((key, version))
            return hit
    data = encode_for_display(load_map(key), GRID_AFFINE)
    with _display_lock:
        _display_cache[(key, version)] = data
        while len(_display_cache) > DISPLAY_CACHE_ITEMS:
            _display_cache.popitem(last=False)
    return data


def _send_map(key: str, filename: str, cache_control: str) -> flask.Response:
    storage = get_storage()
    try:
        version = storage.version(key)
    except KeyError:
        flask.abort(404)
    display = flask.request.args.get("display") == "1"
    etag = f"{version}-{'d' if display else 'f'}"
    if display:
        response = flask.Response(_display_bytes(key, version), mimetype=NIFTI_GZ)
    else:
        local = storage.local_path(key)
        if local is not None:
            response = flask.send_file(
                local, mimetype=NIFTI_GZ, conditional=True, etag=False, download_name=filename, as_attachment=False
            )
        else:  # pragma: no cover - object storage streams in chunks
            fh = storage.open(key)
            response = flask.Response(iter(lambda: fh.read(256 * 1024), b""), mimetype=NIFTI_GZ)
            response.call_on_close(fh.close)
    response.set_etag(etag)
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(flask.request)


_underlay_bytes: dict[str, bytes] = {}


@blueprint.get("/files/underlay.nii.gz")
def underlay_file():
    if "u" not in _underlay_bytes:
        _underlay_bytes["u"] = encode_for_display(underlay(), GRID_AFFINE)
    response = flask.Response(_underlay_bytes["u"], mimetype=NIFTI_GZ)
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.set_etag("underlay-v1")
    return response.make_conditional(flask.request)


def component_map_key(session, uuid: str) -> str | None:
    """Storage key of a component's map when the current user may see it."""
    comp = queries.get_visible_component(session, viewer(), uuid)
    return comp.storage_key if comp is not None else None


def term_map_key(session, term: str) -> str | None:
    """Storage key of a term's reference map (active reference set)."""
    t = queries.get_term(session, term)
    return t.storage_key if t is not None else None


def term_mean_key(session, term: str) -> str | None:
    """Storage key of a term's map across all movies, when there is one."""
    t = queries.get_term(session, term)
    tm = t and session.scalar(select(TermMap).where(TermMap.term_id == t.id, TermMap.movie_id.is_(None)))
    return tm.storage_key if tm else None


def merged_map_key(session, movie: str, term: str) -> str | None:
    """Storage key of a movie x term map when the movie is visible to the current user."""
    m = queries.get_visible_movie(session, viewer(), movie)
    t = queries.get_term(session, term)
    tm = m and t and session.scalar(select(TermMap).where(TermMap.term_id == t.id, TermMap.movie_id == m.id))
    return tm.storage_key if tm else None


def _key_or_404(find, *args: str) -> str:
    with session_scope() as session:
        key = find(session, *args)
    if key is None:
        flask.abort(404)
    return key


@blueprint.get("/files/components/<uuid>.nii.gz")
def component_file(uuid: str):
    return _send_map(_key_or_404(component_map_key, uuid), f"component-{uuid}.nii.gz", PRIVATE_CACHE)


@blueprint.get("/files/terms/<term>.nii.gz")
def term_file(term: str):
    return _send_map(_key_or_404(term_map_key, term), f"term-{term}.nii.gz", PUBLIC_CACHE)


@blueprint.get("/files/terms/<term>/mean.nii.gz")
def term_mean_file(term: str):
    return _send_map(_key_or_404(term_mean_key, term), f"{term}-all-movies-mean.nii.gz", PUBLIC_CACHE)


@blueprint.get("/files/movies/<movie>/<term>.nii.gz")
def merged_file(movie: str, term: str):
    return _send_map(_key_or_404(merged_map_key, movie, term), f"{movie}-{term}-merged.nii.gz", PUBLIC_CACHE)


def _send_thumbnail(map_key: str, cache_control: str) -> flask.Response:
    """A map's glass-brain PNG, with the map's caching rule; rendered on the fly for a map made before thumbnails
    (``python -m pipeline thumbnails`` stores the missing ones)."""
    storage = get_storage()
    try:
        etag = storage.version(thumbnail_key(map_key))
    except KeyError:
        try:
            etag = storage.version(map_key) + "-r"
        except KeyError:
            flask.abort(404)
    if flask.request.if_none_match.contains(etag):
        response = flask.Response(status=304)
    else:
        try:
            response = flask.Response(thumbnail_or_render(map_key), mimetype=PNG_MIMETYPE)
        except KeyError:
            flask.abort(404)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/files/components/<uuid>.png")
def component_thumbnail(uuid: str):
    return _send_thumbnail(_key_or_404(component_map_key, uuid), PRIVATE_CACHE)


@blueprint.get("/files/terms/<term>.png")
def term_thumbnail(term: str):
    return _send_thumbnail(_key_or_404(term_map_key, term), PUBLIC_CACHE)


@blueprint.get("/files/terms/<term>/mean.png")
def term_mean_thumbnail(term: str):
    return _send_thumbnail(_key_or_404(term_mean_key, term), PUBLIC_CACHE)


@blueprint.get("/files/movies/<movie>/<term>.png")
def merged_thumbnail(movie: str, term: str):
    return _send_thumbnail(_key_or_404(merged_map_key, movie, term), PUBLIC_CACHE)


def _plain_not_found(_error: Exception | None = None) -> flask.Response:
    return flask.Response("Not found\n", status=404, mimetype="text/plain")


@blueprint.route("/files/<path:_unknown>", methods=["GET", "HEAD"])
def unknown_file(_unknown: str):
    """Any other address under /files/: a plain 404 rather than the app's HTML page (Dash serves every path)."""
    return _plain_not_found()


# The routes' own 404s (an unknown or private map) read the same: a file route never answers with a web page.
blueprint.register_error_handler(404, _plain_not_found)


@blueprint.get("/components/<uuid>/decodings.csv")
def decodings_csv(uuid: str):
    with session_scope() as session:
        comp = queries.get_visible_component(session, viewer(), uuid)
        if comp is None:
            flask.abort(404)
        rows = queries.full_decoding_profile(session, comp)
    return csv_response(
        ["rank", "term", "r"],
        ([row["rank"], row["term"], f"{row['r']:.6f}"] for row in rows),
        f"component-{uuid}-decodings.csv",
        PRIVATE_CACHE,
    )


class _ZipStream(io.RawIOBase):
    """A write-only, non-seekable sink whose written bytes are drained chunk by chunk."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._chunks.append(bytes(b))
        return len(b)

    def drain(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


def zip_stream(members: list[tuple[str, str]]) -> Iterator[bytes]:
    """A zip (stored, zip64) of storage objects, produced chunk by chunk: never the whole archive in memory."""
    storage = get_storage()
    sink = _ZipStream()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as zf:
        for arcname, key in members:
            with storage.open(key) as src, zf.open(arcname, mode="w", force_zip64=True) as dst:
                for chunk in iter(lambda: src.read(1024 * 1024), b""):
                    dst.write(chunk)
                    yield sink.drain()
        yield sink.drain()
    yield sink.drain()


@blueprint.get("/collections/<slug>/maps.zip")
def collection_zip(slug: str):
    with session_scope() as session:
        collection = queries.get_visible_collection(session, viewer(), slug)
        if collection is None or not can_view(viewer(), collection):
            flask.abort(404)
        members = [
            (f"{slug}/{c.source_file.replace('/', '_')}_vol{c.volume_index + 1:03d}_{c.uuid[:8]}.nii.gz", c.storage_key)
            for c in session.scalars(
                select(Component)
                .where(Component.collection_id == collection.id)
                .order_by(Component.source_file, Component.volume_index)
            )
        ]
    if not members:
        flask.abort(404)
    response = flask.Response(flask.stream_with_context(zip_stream(members)), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{slug}-maps.zip"'
    response.headers["Cache-Control"] = PRIVATE_CACHE
    return response
