"""Components named as curators name them (issue 22, items 4 and 6): the movie Timeline heatmap's rows say which
component they are (``IC 3 · auditory``, MELODIC's numbering) with the movie time and the labels of that time on
hover, and pages show ``melodic_IC.nii.gz · IC 3`` rather than the path inside the upload, which stays in the
details."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from store.db import session_scope
from store.models import Collection, Component, Movie
from tests.services import Client

ARCHIVE_PATH = "forrest_groupICA70.gica.zip/forrest_groupICA70.gica/groupmelodic.ica/melodic_IC.nii.gz"


def _plain(node: Any) -> Any:
    return json.loads(json.dumps(node, cls=__import__("plotly").utils.PlotlyJSONEncoder))


def _components(node: Any, **props: Any) -> list[dict]:
    """The components of a layout (as JSON) whose props hold all of ``props``."""
    found = []
    if isinstance(node, list):
        for item in node:
            found += _components(item, **props)
    elif isinstance(node, dict):
        own = node.get("props", {})
        if "props" in node and all(own.get(k) == v for k, v in props.items()):
            found.append(node)
        for child in own.values() if "props" in node else node.values():
            found += _components(child, **props)
    return found


def _texts(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    if isinstance(node, dict) and "props" in node:
        return _texts(node["props"].get("children"))
    return []


def test_heatmap_rows_name_each_component_by_its_ic_and_best_term(demo_dir):
    from dashboard.components.timeline import timeline_panel
    from store import timeline

    with session_scope() as session:
        movie = session.scalar(
            select(Movie).join(Collection).join(Component).where(Component.timecourse_id.is_not(None)).limit(1)
        )
        courses = timeline.movie_courses(session, None, movie)
        truth = {
            c.uuid: (c.volume_index + 1, c.best_term.name if c.best_term else "undecoded")
            for c in session.scalars(select(Component).join(Collection).where(Collection.movie_id == movie.id))
        }
        panel = _plain(timeline_panel(session, None, movie.slug))
    graph = next(g for g in _components(panel) if "figure" in g["props"])
    heatmap = next(t for t in graph["props"]["figure"]["data"] if t["type"] == "heatmap")
    links = next(s for s in _components(panel) if "data" in s["props"] and "links" in (s["props"]["data"] or {}))
    links = links["props"]["data"]["links"]
    rows = heatmap["y"]
    assert len(rows) == len(courses) == len(set(rows)) > 3
    for row in rows:
        uuid = links[row].rsplit("/", 1)[-1]
        ic, term = truth[uuid]
        assert row.startswith(f"IC {ic} · {term}"), (row, ic, term)
    hover = heatmap["hovertemplate"]
    assert "%{y}" in hover and "movie time" in hover
    # The clock and the labels drawn at the time under the pointer are written by the browser into the line above
    # the figure, from the figure's own tracks (no text per cell is sent): dashboard.components.timeline.READOUT_JS.
    assert _components(panel, id="timeline-readout")


def test_pages_name_a_component_by_its_file_and_ic(demo_dir):
    """A demo component, given the path a zipped MELODIC .gica folder puts in front of its file."""
    import app as web
    from dashboard.components.tables import TableState, draw_components

    with session_scope() as session:
        comp = session.scalar(select(Component).where(Component.volume_index == 2).order_by(Component.id).limit(1))
        comp.source_file = ARCHIVE_PATH
        uuid, slug = comp.uuid, comp.collection.movie.slug
    layout = json.loads(Client(flask_app=web.server).page_layout(f"/components/{uuid}"))
    header = _components(layout, className="incdb-page-header")[0]
    heading = "".join(_texts(_components(header, className="incdb-title")))
    assert "melodic_IC.nii.gz · IC 3" in heading and ARCHIVE_PATH not in "".join(_texts(header)), heading
    assert _components(header, title=ARCHIVE_PATH)  # the whole path on hover
    facts = _components(layout, id="component-source-file")
    assert facts and _texts(facts) == [ARCHIVE_PATH]
    with web.server.test_request_context(), session_scope() as session:
        table = _plain(draw_components(session, None, {"movie": slug, "per_page": 100}, TableState()).content)
    [row_link] = [c for c in _components(table) if c["props"].get("href") == f"/components/{uuid}"]
    assert row_link["props"]["children"] == "melodic_IC.nii.gz · IC 3"
    assert row_link["props"]["title"] == ARCHIVE_PATH
