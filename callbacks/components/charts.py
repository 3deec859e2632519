"""Callbacks of ``dashboard.components.charts``: plotly figures: the term x movie heatmap and a component's decoding
profile."""

from __future__ import annotations

import dash
from dash import MATCH, Input, Output, State

from dashboard.components.charts import GRAPH, GRAPH_LINKS, GRAPH_NAV

dash.clientside_callback(
    """
    function(click, config) {
        const point = click && click.points && click.points[0];
        if (!point || !config) { return window.dash_clientside.no_update; }
        const key = config.by_y ? String(point.y) : point.x + "\\n" + point.y;
        const href = config.links[key];
        return href ? href : window.dash_clientside.no_update;
    }
    """,
    Output({"type": GRAPH_NAV, "graph": MATCH}, "href"),
    Input({"type": GRAPH, "graph": MATCH}, "clickData"),
    State({"type": GRAPH_LINKS, "graph": MATCH}, "data"),
    prevent_initial_call=True,
)
