"""The movie as time over HTTP: time courses, temporal decodings, annotation sets and labels (JSON and CSV).

Same visibility rules as the rest of the API; CSV downloads carry every row, the JSON the mean over subjects.
"""

from __future__ import annotations

import flask
import numpy as np

from pipeline.maps.display import encode_for_display
from pipeline.maps.files import load_map, nifti_bytes
from pipeline.maps.grid import GRID_AFFINE, to_image
from store import timeline
from store.db import session_scope
from store.queries import get_visible_movie
from web.api import json_response
from web.auth import viewer
from web.csvfile import csv_response

blueprint = flask.Blueprint("timeline", __name__)


CSV_CACHE = "private, no-cache"


def _csv(rows: list[list], header: list[str], filename: str) -> flask.Response:
    return csv_response(header, rows, filename, CSV_CACHE)


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
    rows = [
        [i // rows_per_subject + 1, f"{t:.3f}", f"{v:.6g}"]
        for i, (t, v) in enumerate(zip(every["movie_time_s"], every["values"]))
    ]
    return _csv(rows, ["subject", "movie_time_s", "value"], f"{uuid}-timecourse.csv")


@blueprint.get("/components/<uuid>/temporal.csv")
def component_temporal_csv(uuid: str):
    with session_scope() as session:
        rows = timeline.component_temporal(session, viewer(), uuid)
    if rows is None:
        flask.abort(404)
    return _csv(
        [[r["rank"], r["annotation"], r["label"], f"{r['r']:.6f}", f"{r['p']:.6g}", f"{r['q']:.6g}"] for r in rows],
        ["rank", "annotation", "label", "r", "p", "q"],
        f"{uuid}-temporal.csv",
    )


@blueprint.get("/api/movies/<slug>/annotations")
def movie_annotations(slug: str):
    """The movie's sets with labels and counts; their events are paged by the route below, never sent whole."""
    with session_scope() as session:
        movie = get_visible_movie(session, viewer(), slug)
        if movie is None:
            return json_response({"error": "movie not found"}, 404)
        items = timeline.movie_annotations(session, movie, with_events=False)
    for item in items:
        item["events_url"] = f"/api/movies/{slug}/annotations/{item['id']}/events"
    return json_response({"movie": movie.title, "items": items})


@blueprint.get("/api/movies/<slug>/annotations/<int:set_id>/events")
def annotation_events(slug: str, set_id: int):
    """One page of a set's events, by onset: ``page``, ``per_page`` (default 1,000, at most 5,000), ``total``."""
    args = flask.request.args
    with session_scope() as session:
        movie = get_visible_movie(session, viewer(), slug)
        found = (
            timeline.annotation_events(session, movie, set_id, args.get("page"), args.get("per_page"))
            if movie is not None
            else None
        )
    if found is None:
        return json_response({"error": "annotation set not found"}, 404)
    return json_response(found.to_dict())


@blueprint.get("/movies/<slug>/annotations/<int:set_id>.csv")
def annotation_csv(slug: str, set_id: int):
    with session_scope() as session:
        movie = get_visible_movie(session, viewer(), slug)
        rows = timeline.annotation_rows(session, movie, set_id) if movie is not None else None
    if rows is None:
        flask.abort(404)
    return _csv(
        [[f"{onset:g}", f"{duration:g}", label, f"{amp:g}"] for onset, duration, label, amp in rows],
        ["onset", "duration", "trial_type", "amplitude"],
        f"{slug}-annotations-{set_id}.csv",
    )


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
    body = (
        encode_for_display(mean, GRID_AFFINE)
        if flask.request.args.get("display") == "1"
        else nifti_bytes(to_image(mean))
    )
    response = flask.Response(body, mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="label-{len(rows)}-components.nii.gz"'
    response.headers["Cache-Control"] = "private, no-cache"
    return response
