"""Synchrony on the pages, without a browser: the component page's lazy ISC section and what its loader draws,
the collection page's ISFC heatmap (clustered, names escaped) and its click, the home page's most synchronising
films with the visibility rule, and the rows by label refreshed after a movie's annotations change."""

from __future__ import annotations

import json

import numpy as np
import plotly
import pytest
from sqlalchemy import select

from pipeline.curation.ingest import ingest
from store.db import session_scope
from store.models import Collection, Component, Job, SynchronyLabel
from tests.test_synchrony_jobs import SYNC_TIMING, make_collection, shared_mix


def rendered(layout) -> str:
    return json.dumps(layout, cls=plotly.utils.PlotlyJSONEncoder)


@pytest.fixture
def app_module(data_dir):
    import app

    return app


def computed(tmp_path, movie="Sync Movie", private=False) -> dict:
    from pipeline.synchrony.jobs import compute_collection_synchrony

    tmp_path.mkdir(parents=True, exist_ok=True)
    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, shared_mix(), movie=movie)
    ingest(job_id)
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if private:
            collection.visibility = "private"
        uuids = session.scalars(
            select(Component.uuid).where(Component.collection_id == collection_id).order_by(Component.volume_index)
        ).all()
        info = {"id": collection_id, "slug": collection.slug, "movie_id": collection.movie_id, "uuids": list(uuids)}
    compute_collection_synchrony(collection_id, n_resamples=50)
    return info


def test_the_component_page_has_a_lazy_isc_section_whose_loader_draws_the_values(app_module, tmp_path):
    from dashboard.components.lazy import load
    from dashboard.pages import component as page

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        text = rendered(page.layout(uuid=c["uuids"][0]))
        body = rendered(load("component-isc", {"uuid": c["uuids"][0]}))
        forged = rendered(load("component-isc", {"uuid": ["not", "text"]}))
    assert '"component-isc"' in text and "Synchrony across viewers (ISC)" in text
    assert "Leave-one-out ISC" in body and "Pairwise ISC" in body and f"/api/components/{c['uuids'][0]}/isc.csv" in body
    assert '"mode": "markers"' in body and '"mode": "lines"' in body  # the strip plot and the windowed curve
    assert "cannot be shown" in forged


def test_a_component_without_time_courses_has_no_isc_section(app_module, tmp_path):
    from dashboard.components.synchrony import component_isc_section
    from tests.services import component_maps, write_nifti
    from tests.test_timeline import new_collection

    collection_id, job_id = new_collection([write_nifti(tmp_path / "one.nii.gz", component_maps(1, seed=2))])
    ingest(job_id)
    with session_scope() as session:
        uuid = session.scalar(select(Component.uuid).where(Component.collection_id == collection_id))
    with app_module.server.test_request_context("/"):
        assert component_isc_section(uuid) is None


def test_the_isc_panel_says_why_a_value_is_missing():
    from dashboard.components.synchrony import isc_panel

    found = {
        "uuid": "abc",
        "isc": None,
        "isc_pairwise": None,
        "p": None,
        "q": None,
        "n_subjects": 1,
        "n_resamples": 0,
        "note": "No ISC: one subject.",
        "subjects": [],
        "window_s": None,
        "movie_time_s": [],
        "windowed": [],
    }
    text = rendered(isc_panel(found))
    assert "No ISC: one subject." in text and "scatter" not in text and "NaN" not in text


def test_the_isfc_heatmap_is_clustered_escapes_names_and_a_click_links_both_components():
    from callbacks.synchrony import clicked_pair
    from dashboard.components.synchrony import cluster_order, isfc_figure

    matrix = np.array([[1, 0.1, 0.9, 0.1], [0.1, 1, 0.1, 0.8], [0.9, 0.1, 1, 0.1], [0.1, 0.8, 0.1, 1]])
    order = cluster_order(matrix)
    assert abs(order.index(0) - order.index(2)) == 1 and abs(order.index(1) - order.index(3)) == 1
    uuids = [f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd" for i in range(4)]
    found = {
        "components": uuids,
        "best_terms": ["<b>bold</b>", None, "visual", "auditory"],
        "matrix": matrix.tolist(),
    }
    figure = isfc_figure(found)
    labels = list(figure.data[0].x)
    assert "<b>" not in " ".join(labels) and any("&lt;b&gt;" in label for label in labels)
    cell = figure.data[0].customdata[0][1]
    assert clicked_pair({"points": [{"customdata": cell}]}) == tuple(cell.split(" "))
    for forged in (
        None,
        {},
        {"points": []},
        {"points": [{"customdata": ["x", "<script>"]}]},
        {"points": [{}]},
        {"points": [{"customdata": "a b c"}]},
        {"points": [{"customdata": "x <script>"}]},
    ):
        assert clicked_pair(forged) is None


def test_the_collection_page_has_the_isfc_section(app_module, tmp_path):
    from flask_login import login_user

    from dashboard.components.lazy import load
    from dashboard.pages.contribute import collection as page
    from store.models import User

    c = computed(tmp_path)
    with session_scope() as session:
        owner = session.get(User, session.get(Collection, c["id"]).owner_id)
        session.expunge(owner)
    with app_module.server.test_request_context("/"):
        login_user(owner)
        text = rendered(page.layout(slug=c["slug"]))
        body = rendered(load("collection-isfc", {"slug": c["slug"]}))
    assert "Networks that move together (ISFC)" in text
    assert '"type": "heatmap"' in body and f"/api/collections/{c['slug']}/isfc.csv" in body


def test_home_lists_the_most_synchronising_films_visible_to_the_viewer(app_module, tmp_path):
    from dashboard.pages import home

    with app_module.server.test_request_context("/"):
        assert home._synchronising() is None  # nothing before any ISC
    computed(tmp_path / "a", movie="Public Sync Film")
    computed(tmp_path / "b", movie="Hidden Sync Film", private=True)
    with app_module.server.test_request_context("/"):
        text = rendered(home._synchronising())
    assert "Public Sync Film" in text and "Hidden Sync Film" not in text and "median ISC" in text


def test_a_temporal_job_refreshes_the_rows_by_label(data_dir, tmp_path):
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import run_job
    from pipeline.temporal.annotations import add_annotation_set
    from store.models import Movie

    c = computed(tmp_path)
    with session_scope() as session:
        labels = set(session.scalars(select(SynchronyLabel.label).where(SynchronyLabel.collection_id == c["id"])))
        assert labels == {"speech"}
        movie = session.get(Movie, c["movie_id"])
        add_annotation_set(session, None, movie, "Faces", "onset\tduration\ttrial_type\n20\t30\tfaces\n", "f.tsv")
        job = create_job(session, "temporal")
        job.movie_id = movie.id
        job_id = job.id
    run_job(job_id)
    with session_scope() as session:
        assert str(session.get(Job, job_id).status) == "succeeded"
        labels = set(session.scalars(select(SynchronyLabel.label).where(SynchronyLabel.collection_id == c["id"])))
    assert labels == {"speech", "faces"}
