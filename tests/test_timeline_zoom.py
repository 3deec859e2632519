"""Zooming the movie timeline at the size of a published study (70 components, 12 tracks: a figure taller than a
1000 px window): the finer columns of the zoomed range, and ``bench/study.py``'s zoom step, which must drag where
the plot is on screen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly
import pytest

from dashboard.components.timeline import FINE, fine_heatmap_patch, timeline_figure, zoom_range
from store.timeline import MAX_COLUMNS, movie_times

# tests/realstudy.py's FULL shape: 8 runs of 450 volumes at TR 2 s overlapping by 8 volumes, 15 subjects, 70 ICs.
TIMING = {"tr": 2.0, "runs": [[k * 442 * 2.0, 450] for k in range(8)], "subjects": 15}
COMPONENTS = 70
TRACKS = 12


def _courses() -> list[dict]:
    times = movie_times(TIMING)[: 8 * 450]
    order = np.argsort(times, kind="stable")
    rng = np.random.default_rng(0)
    return [
        {
            "uuid": f"u{i}",
            "term": "auditory",
            "ic": i + 1,
            "source_file": "melodic_IC.nii.gz",
            "collection": "Study",
            "movie_time_s": times[order],
            "z": rng.standard_normal(len(times))[order],
        }
        for i in range(COMPONENTS)
    ]


def _tracks(end: float) -> list[dict]:
    return [
        {
            "set_id": 1,
            "set": "A",
            "label": f"label {i}",
            "events": 2,
            "intervals": [[30.0 * i, 30.0 * i + 8], [end - 20, end]],
        }
        for i in range(TRACKS)
    ]


def _plain(value):
    return json.loads(json.dumps(value, cls=plotly.utils.PlotlyJSONEncoder))


def test_a_tenth_of_a_full_size_film_gets_its_finer_columns():
    courses = _courses()
    end = float(courses[0]["movie_time_s"][-1])
    span = (0.0, end)
    found = zoom_range({"xaxis.range[0]": 0.45 * end, "xaxis.range[1]": 0.55 * end}, list(span))
    assert found == pytest.approx((0.45 * end, 0.55 * end))
    fine = _plain(fine_heatmap_patch(courses, *found, span).to_plotly_json())
    update = next(op for op in fine["operations"] if op["location"] == ["data", FINE])
    columns = update["params"]["value"]
    assert columns["visible"] is True and len(columns["z"]) == COMPONENTS
    assert 0 < len(columns["x"]) <= MAX_COLUMNS
    assert found[0] <= columns["x"][0] < columns["x"][-1] <= found[1]


def _page_html(figure: dict) -> str:
    """The timeline below 600 px of page (the navbar, the chooser with its labels, the switch), and a stand-in for
    the zoom callback: the finer-columns trace gets columns for the range in view after each relayout."""
    script = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    return f"""<!doctype html><html><head><meta charset="utf-8"><script>{script}</script></head>
<body style="margin:0"><div style="height:600px">header</div>
<div id="movie-timeline"><div id="graph" style="width:1200px"></div></div>
<script>
const gd = document.getElementById("graph");
Plotly.newPlot(gd, {json.dumps(figure["data"])}, {json.dumps(figure["layout"])}).then(() => {{
    gd.on("plotly_relayout", () => {{
        const r = gd.layout.xaxis.range.map(Number), x = [];
        for (let i = 0; i < 50; i++) {{ x.push(r[0] + (r[1] - r[0]) * (i + 0.5) / 50); }}
        setTimeout(() => Plotly.restyle(gd, {{x: [x], visible: true}}, [{FINE}]), 50);
    }});
    document.body.dataset.ready = "1";
}});
</script></body></html>"""


def test_the_bench_zoom_step_drags_a_timeline_taller_than_the_window():
    from tests.browser import browser_page

    courses = _courses()
    end = float(courses[0]["movie_time_s"][-1])
    figure = _plain(timeline_figure(_tracks(end), courses).to_plotly_json())
    assert figure["layout"]["height"] > 1000  # the case: the plot does not fit the window

    from bench.study import _zoom

    with browser_page("http://127.0.0.1:9", width=1280, height=1000) as page:
        page.set_content(_page_html(figure))
        page.wait_for_function("document.body.dataset.ready === '1'")
        seconds, zoomed = _zoom(page)
        assert seconds >= 0
        assert 0 <= zoomed[0] < zoomed[1] <= end and zoomed[1] - zoomed[0] < end / 2, zoomed


def test_the_slider_and_a_reset_stay_within_the_film():
    from tests.browser import browser_page

    courses = _courses()
    end = float(courses[0]["movie_time_s"][-1])
    figure = _plain(timeline_figure(_tracks(end), courses).to_plotly_json())
    graph = "document.getElementById('graph')"
    with browser_page("http://127.0.0.1:9", width=1280, height=1000) as page:
        page.set_content(_page_html(figure))
        page.wait_for_function("document.body.dataset.ready === '1'")
        slider = page.evaluate(f"{graph}._fullLayout.xaxis.rangeslider.range.map(Number)")
        assert slider[0] >= 0 and slider[1] <= end + 1, slider  # no minutes before 0:00:00 on the slider
        page.evaluate(f"Plotly.relayout({graph}, {{'xaxis.range': [1000, 1500]}})")
        page.evaluate(f"Plotly.relayout({graph}, {{'xaxis.autorange': true}})")  # what a double click does
        reset = page.evaluate(f"{graph}._fullLayout.xaxis.range.map(Number)")
        assert reset[0] >= 0 and reset[1] <= end + 1, reset
