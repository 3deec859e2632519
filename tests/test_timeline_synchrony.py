"""Synchrony on the movie Timeline and the component Time course, without a browser: the switch "activity /
synchrony" (kept in the page address) draws the windowed ISC with the same rows as the activity heatmap, the
moments of synchrony are listed and zoom the timeline, the component's windowed ISC is drawn under its time
course, and a movie without ISC says why."""

from __future__ import annotations

import json

import numpy as np
import plotly
import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict
from sqlalchemy import select

from pipeline.curation.ingest import ingest
from store.db import session_scope
from store.models import Collection, Component
from tests.test_synchrony_jobs import ONE_TIMING, SYNC_TIMING, make_collection, shared_mix


def rendered(layout) -> str:
    return json.dumps(layout, cls=plotly.utils.PlotlyJSONEncoder)


@pytest.fixture
def app_module(data_dir):
    import app

    return app


def stretch_mix() -> np.ndarray:
    """Four components shared by the three subjects only in volumes 25-44 of run 1 (movie time 50-88 s, where
    "speech" runs from 60 to 80 s): a moment of synchrony there."""
    rng = np.random.default_rng(5)
    t = SYNC_TIMING.rows_per_subject
    common = rng.standard_normal((t, 4))
    stretch = np.zeros((t, 1))
    stretch[25:45] = 3.0
    return np.concatenate([common * stretch + rng.standard_normal((t, 4)) for _ in range(3)]).astype(np.float32)


def computed(tmp_path, timing=SYNC_TIMING, mix=None, movie="Sync Movie") -> dict:
    from pipeline.synchrony.jobs import compute_collection_synchrony

    tmp_path.mkdir(parents=True, exist_ok=True)
    collection_id, job_id = make_collection(tmp_path, timing, shared_mix(timing) if mix is None else mix, movie=movie)
    ingest(job_id)
    compute_collection_synchrony(collection_id, n_resamples=50)
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        uuids = session.scalars(
            select(Component.uuid).where(Component.collection_id == collection_id).order_by(Component.volume_index)
        ).all()
        return {"id": collection_id, "slug": collection.slug, "movie": collection.movie.slug, "uuids": list(uuids)}


def found(layout, name: str):
    """The component of a layout whose id is ``name`` (or a graph named ``name``)."""
    for item in layout._traverse():
        ident = getattr(item, "id", None)
        if ident == name or (isinstance(ident, dict) and ident.get("graph") == name and hasattr(item, "figure")):
            return item
    raise AssertionError(f"no {name} in the layout")


def labels_callback(chosen, view, state):
    from callbacks.movie import _timeline_labels

    return _timeline_labels(chosen, view, state)


def moment_callback(time_s, state, view="activity"):
    from callbacks.movie import _timeline_moment
    from dashboard.components.timeline import TIMELINE_MOMENT

    ident = json.dumps({"index": time_s, "type": TIMELINE_MOMENT}, separators=(",", ":"))
    token = context_value.set(AttributeDict(triggered_inputs=[{"prop_id": f"{ident}.n_clicks", "value": 1}]))
    try:
        return _timeline_moment([1], state, view)
    finally:
        context_value.reset(token)


def patch_operations(patch) -> dict[str, object]:
    return {
        ".".join(map(str, op["location"])): op["params"].get("value") for op in patch.to_plotly_json()["operations"]
    }


# --- the switch ------------------------------------------------------------------------------------------------


def test_the_synchrony_view_draws_windowed_isc_with_the_rows_of_the_activity_view(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import movie_timeline

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        activity = read(movie_timeline, c["movie"])
        state = activity["state"]
        figure, _, _, note = labels_callback(activity["value"], "synchrony", state)
        back, _, _, back_note = labels_callback(activity["value"], "activity", state)
    isc, mean = figure.data[0], activity["figure"].data[0]
    assert isc.colorbar.title.text == "ISC (r)" and mean.colorbar.title.text == "z"
    assert list(isc.y) == list(mean.y) and len(isc.y) == 4  # same row names, same order
    assert isc.zmid == 0 and isc.zmin == -isc.zmax
    values = np.array([[np.nan if v is None else v for v in row] for row in isc.z], dtype=float)
    assert values.shape[0] == 4 and np.isfinite(values).any(axis=1).all()
    # the strongly shared component (IC 1) is more synchronous than the unshared one (IC 2), each on its own row
    rows = {course["uuid"]: i for i, course in enumerate(activity["courses"])}
    assert np.nanmean(values[rows[c["uuids"][0]]]) > np.nanmean(values[rows[c["uuids"][1]]]) + 0.3
    assert "30 s" in note and "only window length stored" in note
    assert back.data[0].colorbar.title.text == "z" and back_note.startswith("Activity")
    # the annotation tracks stay under the heatmap in both views
    assert [t.name for t in figure.data if t.type == "bar"] == [t.name for t in back.data if t.type == "bar"]
    assert any(t.type == "bar" for t in figure.data)


def test_the_view_is_read_from_the_page_address(app_module, tmp_path):
    from dashboard.components.timeline import TIMELINE, TIMELINE_VIEW, view_from_query
    from dashboard.pages import movie as page

    assert view_from_query({"view": "synchrony"}) == "synchrony"
    assert view_from_query({"view": ["synchrony"]}) == "synchrony"
    for bad in ({}, {"view": "<b>"}, {"view": ["x"]}, {"view": 3}, None):
        assert view_from_query(bad) == "activity"
    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        synchrony = page.layout(movie=c["movie"], tab="timeline", view="synchrony")
        activity = page.layout(movie=c["movie"], tab="timeline")
    assert found(synchrony, TIMELINE).figure["data"][0]["colorbar"]["title"]["text"] == "ISC (r)"
    assert found(synchrony, TIMELINE_VIEW).value == "synchrony"
    assert found(activity, TIMELINE).figure["data"][0]["colorbar"]["title"]["text"] == "z"
    assert found(activity, TIMELINE_VIEW).value == "activity"


def test_a_forged_view_draws_the_activity(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import movie_timeline

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        state = read(movie_timeline, c["movie"])["state"]
        figure, _, _, note = labels_callback([], {"not": "a view"}, state)
    assert figure.data[0].colorbar.title.text == "z" and note.startswith("Activity")


# --- the moments of synchrony ----------------------------------------------------------------------------------


def test_moments_are_listed_with_their_time_mean_isc_and_labels_and_zoom_the_timeline(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import FINE, movie_timeline, timeline_panel
    from pipeline.synchrony.reads import movie_synchrony

    c = computed(tmp_path, mix=stretch_mix())
    with app_module.server.test_request_context("/"):
        panel = rendered(read(timeline_panel, c["movie"]))
        state = read(movie_timeline, c["movie"])["state"]
        moments = read(movie_synchrony, c["movie"])["moments"]
        assert moments
        first = moments[0]
        patch = moment_callback(round(first["time_s"], 2), state)
        synchrony_patch = moment_callback(round(first["time_s"], 2), state, "synchrony")
    assert "Moments of synchrony" in panel and "Mean ISC (r)" in panel
    clock = f"0:{int(round(first['time_s'])) // 60:02d}:{int(round(first['time_s'])) % 60:02d}"
    assert clock in panel and '"timeline-moment"' in panel
    assert f"{first['value']:.2f}" in panel
    assert any(m["labels"] == ["speech"] for m in moments) and "speech" in panel
    ops = patch_operations(patch)
    start, end = ops["layout.xaxis.range"]
    assert start < first["time_s"] < end and end - start < state["span"][1] - state["span"][0]
    # the finer columns of the range arrive with the zoom, as with the slider
    fine = [op for op in patch.to_plotly_json()["operations"] if op["location"] == ["data", FINE]]
    assert fine and fine[0]["params"]["value"]["visible"] is True
    assert start <= min(fine[0]["params"]["value"]["x"]) and max(fine[0]["params"]["value"]["x"]) <= end
    assert patch_operations(synchrony_patch)["layout.xaxis.range"] == [start, end]


def test_a_forged_moment_changes_nothing(app_module, tmp_path):
    from dash.exceptions import PreventUpdate

    from dashboard.components.timeline import moment_range

    assert moment_range("12", [0, 100]) is None and moment_range(True, [0, 100]) is None
    assert moment_range(500, [0, 100]) is None and moment_range(float("nan"), [0, 100]) is None
    assert moment_range(50, "span") is None and moment_range(50, [0, 100]) == (0.0, 100.0)
    with app_module.server.test_request_context("/"):
        with pytest.raises(PreventUpdate):
            moment_callback("<script>", {"slug": "no-such-movie", "span": [0, 100]})
        with pytest.raises(PreventUpdate):
            moment_callback(50, {"slug": "no-such-movie", "span": [0, 100]})


# --- the component's curve -------------------------------------------------------------------------------------


def test_the_time_course_panel_draws_the_windowed_isc_under_the_course(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import COURSE, course_section, course_update

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        panel = read(course_section, c["uuids"][0])
        figure, _, _ = read(course_update, c["uuids"][0], None, [])
    for fig in (found(panel, COURSE).figure, figure):
        curves = [t for t in fig.data if getattr(t, "yaxis", None) == "y3"]
        assert len(curves) == 1 and curves[0].name == "windowed ISC (30 s windows)"
        values = [v for v in curves[0].y if v is not None]
        assert values and all(-1 <= v <= 1 for v in values)
        assert fig.layout.yaxis3.title.text == "ISC (r)"
        # under the course, on the same x axis
        assert fig.layout.yaxis3.domain[1] < fig.layout.yaxis.domain[0]
        assert getattr(curves[0], "xaxis", None) in (None, "x")
        # a break between the two runs (movie time 120-232 s has no window)
        assert None in curves[0].x


# --- empty states ----------------------------------------------------------------------------------------------


def test_a_one_subject_movie_says_why_it_has_no_synchrony(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import course_section, movie_timeline, timeline_panel
    from pipeline.synchrony.jobs import ONE_SUBJECT_NOTE

    c = computed(tmp_path, timing=ONE_TIMING, movie="Solo Movie")
    with app_module.server.test_request_context("/"):
        panel = rendered(read(timeline_panel, c["movie"]))
        found = read(movie_timeline, c["movie"], None, "synchrony")
        course = read(course_section, c["uuids"][0])
    assert "No moments of synchrony" in panel and "one subject" in panel
    assert ONE_SUBJECT_NOTE in found["view_note"]
    heatmap = found["figure"].data[0]
    assert heatmap.colorbar.title.text == "ISC (r)" and not heatmap.z
    assert '"y3"' not in rendered(course) and "windowed ISC" not in rendered(course)


def test_a_movie_whose_isc_has_no_moment_says_so(app_module, tmp_path):
    from dashboard.components.data import read
    from dashboard.components.timeline import timeline_panel
    from pipeline.synchrony.reads import movie_synchrony

    c = computed(tmp_path, mix=shared_mix(SYNC_TIMING, shared=(0.0, 0.0, 0.0, 0.0), seed=3))
    with app_module.server.test_request_context("/"):
        moments = read(movie_synchrony, c["movie"])["moments"]
        panel = rendered(read(timeline_panel, c["movie"]))
    assert not moments  # no shared signal: no moment (the data are fixed by their seed)
    assert "No moments of synchrony" in panel and "95th percentile" in panel
