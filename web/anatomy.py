"""Anatomy routes: region names at a point (``/api/atlas``), the atlases with their licenses, and cluster tables of
every map kind as JSON and CSV.

The maps are found with the file routes' own lookups (``web.files``), so a cluster table is visible exactly when
its map is, and answers 404 otherwise. Bad parameters answer 400 with a message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flask

from pipeline.anatomy.atlas import ATLASES, DEFAULT_ATLAS, AtlasError, check_atlas, grid_voxel, lookup
from pipeline.anatomy.clusters import (
    CSV_COLUMNS,
    DEFAULT_THRESHOLDS,
    ClusterError,
    check_settings,
    cluster_table,
    csv_row,
    stored_map,
)
from pipeline.maps.grid import voxel_to_mni
from store.db import session_scope
from web.api import json_response
from web.csvfile import csv_response, csv_text
from web.files import PRIVATE_CACHE, PUBLIC_CACHE, component_map_key, merged_map_key, term_map_key, term_mean_key

blueprint = flask.Blueprint("anatomy", __name__)

MAX_COORDINATE = 1e6


def atlas_source(atlas: str) -> dict[str, Any]:
    """Name, license and citation of an atlas, as the API and the pages show them."""
    info = ATLASES[atlas]
    return {
        "id": info.id,
        "name": info.name,
        "probabilistic": info.probabilistic,
        "license": info.license,
        "license_url": info.license_url,
        "citation": info.citation,
    }


def _error(message: str, status: int = 400) -> flask.Response:
    return json_response({"error": message}, status)


def _coordinate(name: str) -> float:
    raw = flask.request.args.get(name, "")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number (MNI mm), not {raw[:40]!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise ValueError(f"{name} must be a finite number of mm")
    return value


@blueprint.get("/api/atlases")
def atlases():
    return json_response({"default": DEFAULT_ATLAS, "items": [atlas_source(a) for a in ATLASES]})


@blueprint.get("/api/atlas")
def atlas_lookup():
    try:
        x, y, z = (_coordinate(axis) for axis in "xyz")
        atlas = flask.request.args.get("atlas")
        labels = lookup(x, y, z, None if atlas is None else check_atlas(atlas))
    except (ValueError, AtlasError) as exc:
        return _error(str(exc))
    voxel = grid_voxel(x, y, z)
    centre = [float(v) for v in voxel_to_mni(voxel)] if voxel is not None else None
    return json_response(
        {
            "x": x,
            "y": y,
            "z": z,
            "voxel": list(voxel) if voxel else None,
            "voxel_mm": centre,
            "labels": labels,
            "sources": {e["atlas"]: atlas_source(e["atlas"]) for e in labels},
        }
    )


# --- cluster tables ----------------------------------------------------------------------------------------------


def map_finder(kind: str) -> Callable[..., str | None]:
    """The lookup of a map kind's storage key: ``component``, ``term`` (reference map), ``mean`` or ``merged``."""
    return {"component": component_map_key, "term": term_map_key, "mean": term_mean_key, "merged": merged_map_key}[kind]


def clusters_of(kind: str, *names: str, args: Any = None) -> tuple[dict[str, Any] | None, str | None]:
    """The cluster table of one map for the current user: (payload, None), (None, error) or (None, None) when the
    map is not visible. ``args`` holds ``threshold``, ``threshold_negative``, ``min_voxels`` and ``atlas``."""
    args = args if args is not None else {}
    try:
        settings = check_settings(
            args.get("threshold"),
            args.get("threshold_negative"),
            args.get("min_voxels"),
            args.get("atlas"),
            default_threshold=DEFAULT_THRESHOLDS[kind],
        )
    except ClusterError as exc:
        return None, str(exc)
    with session_scope() as session:
        key = map_finder(kind)(session, *names)
    if key is None:
        return None, None
    try:
        data = stored_map(key)
    except KeyError:
        return None, None
    rows = cluster_table(data, settings)
    return {
        "threshold": settings.threshold,
        "threshold_negative": settings.threshold_negative,
        "min_voxels": settings.min_voxels,
        "atlas": settings.atlas,
        "source": atlas_source(settings.atlas),
        "items": rows,
        "total": len(rows),
    }, None


def _json_clusters(kind: str, *names: str) -> flask.Response:
    payload, error = clusters_of(kind, *names, args=flask.request.args)
    if error:
        return _error(error)
    if payload is None:
        return _error("map not found", 404)
    return json_response(payload)


def _preamble(payload: dict[str, Any]) -> tuple[str, str]:
    """The ``#`` lines of a cluster table's CSV: the settings, and the atlas's license and citation."""
    source = payload["source"]
    return (
        f"threshold={payload['threshold']:g} threshold_negative={payload['threshold_negative']:g} "
        f"min_voxels={payload['min_voxels']} face-connected clusters",
        f"atlas: {source['name']}; license: {source['license']} ({source['license_url']}); cite: {source['citation']}",
    )


def clusters_csv_text(payload: dict[str, Any]) -> str:
    """The CSV of a cluster table: ``#`` lines naming the settings and the atlas's license and citation, then a
    header row and one row per cluster."""
    return csv_text(CSV_COLUMNS, (csv_row(row) for row in payload["items"]), preamble=_preamble(payload))


def _csv_clusters(kind: str, filename: str, cache_control: str, *names: str) -> flask.Response:
    payload, error = clusters_of(kind, *names, args=flask.request.args)
    if error:
        return flask.Response(error + "\n", status=400, mimetype="text/plain")
    if payload is None:
        return flask.Response("Not found\n", status=404, mimetype="text/plain")
    return csv_response(
        CSV_COLUMNS,
        (csv_row(row) for row in payload["items"]),
        f"{filename}-clusters.csv",
        cache_control,
        preamble=_preamble(payload),
    )


@blueprint.get("/api/components/<uuid>/clusters")
def component_clusters(uuid: str):
    return _json_clusters("component", uuid)


@blueprint.get("/api/terms/<term>/clusters")
def term_clusters(term: str):
    kind = "mean" if flask.request.args.get("map") == "mean" else "term"
    return _json_clusters(kind, term)


@blueprint.get("/api/movies/<movie>/<term>/clusters")
def merged_clusters(movie: str, term: str):
    return _json_clusters("merged", movie, term)


@blueprint.get("/components/<uuid>/clusters.csv")
def component_clusters_csv(uuid: str):
    return _csv_clusters("component", f"component-{uuid}", PRIVATE_CACHE, uuid)


@blueprint.get("/terms/<term>/clusters.csv")
def term_clusters_csv(term: str):
    kind = "mean" if flask.request.args.get("map") == "mean" else "term"
    return _csv_clusters(kind, f"term-{term}" + ("-mean" if kind == "mean" else ""), PUBLIC_CACHE, term)


@blueprint.get("/movies/<movie>/<term>/clusters.csv")
def merged_clusters_csv(movie: str, term: str):
    return _csv_clusters("merged", f"{movie}-{term}-merged", PUBLIC_CACHE, movie, term)
