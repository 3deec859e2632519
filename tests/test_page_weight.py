"""Deterministic guards on what a page costs the browser (issue: pages ready in 2 s).

Dash 4's renderer subscribes every rendered component to its store and every mounting component dispatches an
action that runs all subscribers, so a page's browser CPU grows with the square of its Dash components: a 200-row
cluster table of ``html.Td`` cells (1,800 components) alone cost the component page about 20 s. These tests count
components, not seconds: a page layout, a cluster table and a chart's table stay under fixed bounds, and tables drawn
as one component still escape every value.
"""

from __future__ import annotations

import importlib

import plotly.graph_objects as go
from dash.development.base_component import Component as DashComponent

from dashboard.components.charts import table_disclosure
from dashboard.components.clusters import cluster_table
from dashboard.components.common import html_table

PAGE_BOUND = 700  # Dash components in a component page's layout (the demo: about 450)


def count(node) -> int:
    if isinstance(node, DashComponent):
        return 1 + sum(count(getattr(node, k, None)) for k in node._prop_names)
    if isinstance(node, list | tuple):
        return sum(count(x) for x in node)
    return 0


def _cluster_rows(n: int) -> list[dict]:
    return [
        {
            "cluster": i + 1,
            "sign": "positive" if i % 2 else "negative",
            "peak_x": -2.0 * i,
            "peak_y": 4.0,
            "peak_z": 6.0,
            "peak_value": 3.5,
            "voxels": 100 - i,
            "volume_mm3": 800.0,
            "peak_label": "Left Frontal Pole",
            "peak_probability": 0.5,
            "regions": [{"label": "Left Frontal Pole", "share": 0.5}, {"label": None, "share": 0.5}],
        }
        for i in range(n)
    ]


def test_a_cluster_table_of_200_rows_is_a_handful_of_components():
    drawn = cluster_table(_cluster_rows(200))
    assert count(drawn) <= 6
    html_text = str(drawn)
    assert html_text.count('class="incdb-cluster-row"') == 50 and 'data-mm="-98,4,6"' in html_text
    assert "the 50 largest are listed here" in html_text


def test_a_charts_table_is_one_component_whatever_its_size():
    figure = go.Figure(go.Heatmap(z=[[float(i + j) for j in range(40)] for i in range(200)]))
    assert count(table_disclosure(figure)) <= 5


def test_tables_drawn_as_one_component_escape_every_value():
    table = html_table(
        ["<b>head</b>"],
        [['<img src=x onerror="alert(1)">'], ["a & b"]],
        row_attrs=[{"data-x": '"><script>', "onclick": "alert(1)", "bad name": "x"}, {}],
    )
    text = table.children
    assert "<img" not in text and "<script>" not in text and "<b>" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text and "a &amp; b" in text
    assert 'data-x="&quot;&gt;&lt;script&gt;"' in text  # an attribute's value is escaped ...
    assert "onclick" not in text and "bad name" not in text  # ... handlers and names that are not names are dropped


def test_the_component_page_layout_stays_under_its_bound(web, demo_dir):
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Component

    with session_scope() as session:
        uuid = session.scalar(select(Component.uuid).order_by(Component.id))
    page = importlib.import_module("dashboard.pages.component")
    with web.server.test_request_context("/"):
        layout = page.layout(uuid=uuid)
    assert count(layout) <= PAGE_BOUND


def test_the_component_page_draws_its_sections_below_the_fold_only_when_asked(web, demo_dir):
    from sqlalchemy import select

    from dashboard.components.lazy import load
    from store.db import session_scope
    from store.models import Component

    with session_scope() as session:
        uuid = session.scalar(select(Component.uuid).order_by(Component.id))
    page = importlib.import_module("dashboard.pages.component")
    with web.server.test_request_context("/"):
        layout = str(page.layout(uuid=uuid, page="2"))
        assert "decodings-table" not in layout and "incdb-lazy-load" in layout
        assert "'section': 'component-decodings'" in layout and "'section': 'similar'" in layout
        table = str(load("component-decodings", {"uuid": uuid, "query": {"page": "2"}}))
        assert "decodings-table" in table and "active_page=2" in table
        for key, args in (
            ("component-decodings", {"uuid": 5}),
            ("component-decodings", {"uuid": "no-such-component"}),
            ("component-decodings", ["not", "a", "dict"]),
            ("no-such-section", {"uuid": uuid}),
            (["component-decodings"], {"uuid": uuid}),
        ):
            assert "cannot be shown" in str(load(key, args)), (key, args)
