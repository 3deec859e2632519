"""Layout of the component's Time course panel and the collection form (issue 22, item 11): the power spectrum
keeps its own height beside a long decoding table, and the TR sits with the timing fields that need it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import plotly

from dashboard.components.timeline import course_panel


def _plain(node: Any) -> Any:
    return json.loads(json.dumps(node, cls=plotly.utils.PlotlyJSONEncoder))


def _find(node: Any, **props: Any) -> list[dict]:
    found = []
    if isinstance(node, list):
        for item in node:
            found += _find(item, **props)
    elif isinstance(node, dict):
        own = node.get("props", {})
        if "props" in node and all(own.get(k) == v for k, v in props.items()):
            found.append(node)
        for child in own.values() if "props" in node else node.values():
            found += _find(child, **props)
    return found


def _fills_its_container(graph: dict) -> bool:
    """dcc.Graph's own rule (``isResponsive`` in dash 4's async-graph.js): with ``responsive`` left at "auto", a
    graph whose config asks for responsiveness and whose layout fixes not both height and width takes 100% of its
    container's height unless its style gives one."""
    props = graph["props"]
    layout = props["figure"].get("layout", {})
    responsive = props.get("responsive", "auto")
    if isinstance(responsive, bool):
        fills = responsive
    else:
        fills = bool(
            (props.get("config") or {}).get("responsive")
            and layout.get("autosize", True)
            and (layout.get("height") is None or layout.get("width") is None)
        )
    return fills and not (props.get("style") or {}).get("height")


def test_the_power_spectrum_keeps_its_height_beside_a_long_decoding_table():
    n = 120
    course = {
        "movie_time_s": list(np.arange(n) * 2.0),
        "values": list(np.sin(np.arange(n) / 5)),
        "sd": None,
        "runs": [[0.0, n]],
        "tr": 2.0,
        "spectrum": {"frequency_hz": list(np.linspace(0, 0.25, 61)), "power": list(np.ones(61))},
    }
    rows = [
        {"annotation": "Speech", "annotation_id": 1, "label": f"label {i}", "r": 0.1, "p": 0.5, "q": 0.9, "rank": i + 1}
        for i in range(60)
    ]  # 25 shown: a table far taller than the spectrum
    panel = _plain(course_panel(course, [], rows, "uuid"))
    [spectrum] = _find(panel, id="course-spectrum")
    assert not _fills_its_container(spectrum), spectrum["props"].get("style")
    assert spectrum["props"]["style"]["height"] == f"{spectrum['props']['figure']['layout']['height']}px"


def test_the_tr_sits_with_the_timing_fields_not_in_the_collapsed_acquisition_group(web):
    from dashboard.components.collection_form import collection_form

    with web.server.test_request_context():
        form = _plain(
            collection_form(
                "edit",
                {
                    "metadata": {"acquisition": {"tr": 2.0, "field_strength": 3.0}},
                    "timing": {"tr": 2.0, "runs": [[0, 451]], "subjects": 15},
                },
            )
        )
    tr_id = {"type": "edit-meta", "group": "acquisition", "field": "tr"}
    [accordion] = _find(form, id="edit-meta-groups")
    assert not _find(accordion, id=tr_id)
    [timing] = [
        d
        for d in _find(form)
        if _find(d, id="edit-runs") and _find(d, id="edit-timing-summary") and d["props"].get("id") != "edit-form"
    ]
    [tr] = _find(timing, id=tr_id)
    assert tr["props"]["value"] == "2"
    acquisition = next(i for i in _find(accordion) if i["props"].get("item_id") == "acquisition")
    assert acquisition["props"]["title"].endswith("(1 filled)")  # the TR is counted where it is shown
