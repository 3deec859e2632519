"""The movie as time over HTTP: time courses, temporal decodings, annotation sets and labels (JSON and CSV).

Same visibility rules as the rest of the API; CSV downloads carry every row, the JSON the mean over subjects.
"""
from __future__ import annotations

import csv
import io

import flask
import numpy as np

from pipeline.display import encode_for_display
from pipeline.grid import GRID_AFFINE, to_image
from pipeline.maps import load_map, nifti_bytes
from store import timeline
from store.db import session_scope
from store.queries import get_visible_movie
from web.api import json_response
from web.auth import viewer

blueprint = flask.Blueprint("timeline", __name__)



def _csv(rows: list[list], header: list[str], filename: str) -> flask.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    response = flask.Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blueprint.get("/api/components/<uuid>/timecourse")
def component_timecourse(uuid: str):
    with session_scope() as session:
        course = timeline.component_course(session, viewer(), uuid)
    if course is None:
        return json_response({"error": "component not found, or it has no time course"}, 404)
    return json_response({k: course[k] for k in ("tr", "subjects", "movie_time_s", "values", "sd", "runs")})


@blueprint.get("/api/components/<uuid>/temporal")
def component_temporal(uuid: str):
    with session_scope() as session:
        rows = timeline.component_temporal(session, viewer(), uuid)
    if rows is None:
        return json_response({"error": "component not found"}, 404)
    return json_response({"items": rows})


@blueprint.get("/components/<uuid>/timecourse.csv")
def component_timecourse_csv(uuid: str):
    with session_scope() as session:
        course = timeline.component_course(session, viewer(), uuid)
    if course is None:
        flask.abort(404)
    rows_per_subject = len(course["values"])
    every = course["all_rows"]
    rows = [[i // rows_per_subject + 1, f"{t:.3f}", f"{v:.6g}"]
            for i, (t, v) in enumerate(zip(every["movie_time_s"], every["values"]))]
    return _csv(rows, ["subject", "movie_time_s", "value"], f"{uuid}-timecourse.csv")


@blueprint.get("/components/<uuid>/temporal.csv")
def component_temporal_csv(uuid: str):
    with session_scope() as session:
        rows = timeline.component_temporal(session, viewer(), uuid)
    if rows is None:
        flask.abort(404)
    return _csv([[r["rank"], r["annotation"], r["label"], f"{r['r']:.6f}", f"{r['p']:.6g}", f"{r['q']:.6g}"]
                 for r in rows], ["rank", "annotation", "label", "r", "p", "q"], f"{uuid}-temporal.csv")


@blueprint.get("/api/movies/<slug>/annotations")
def movie_annotations(slug: str):
    with session_scope() as session:
        movie = get_visible_movie(session, viewer(), slug)
        if movie is None:
            return json_response({"error": "movie not found"}, 404)
        return json_response({"movie": movie.title, "items": timeline.movie_annotations(session, movie)})


@blueprint.get("/movies/<slug>/annotations/<int:set_id>.csv")
def annotation_csv(slug: str, set_id: int):
    with session_scope() as session:
        movie = get_visible_movie(session, viewer(), slug)
        sets = timeline.movie_annotations(session, movie) if movie is not None else []
    found = next((s for s in sets if s["id"] == set_id), None)
    if found is None:
        flask.abort(404)
    rows = [[f"{e['onset']:g}", f"{e['duration']:g}", e["label"], f"{e['amplitude']:g}"] for e in found["events"]]
    return _csv(rows, ["onset", "duration", "trial_type", "amplitude"], f"{slug}-annotations-{set_id}.csv")


@blueprint.get("/api/labels/<path:label>")
def label(label: str):
    with session_scope() as session:
        rows = timeline.label_components(session, viewer(), label)
    for row in rows:
        row.pop("storage_key")
    return json_response({"label": label, "items": rows, "q_below": timeline.SIGNIFICANT_Q})


@blueprint.get("/files/labels/<path:label>.nii.gz")
def label_map(label: str):
    """The voxelwise mean of the maps of the components that follow ``label`` (like a movie x term map)."""
    with session_scope() as session:
        rows = timeline.label_components(session, viewer(), label)  # the best ones, at most a hundred
    if not rows:
        flask.abort(404)
    total = None
    for row in rows:
        data = load_map(row["storage_key"])
        total = data.astype(np.float64) if total is None else total + data
    mean = (total / len(rows)).astype(np.float32)
    body = (encode_for_display(mean, GRID_AFFINE) if flask.request.args.get("display") == "1"
            else nifti_bytes(to_image(mean)))
    response = flask.Response(body, mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="label-{len(rows)}-components.nii.gz"'
    response.headers["Cache-Control"] = "private, no-cache"
    return response
