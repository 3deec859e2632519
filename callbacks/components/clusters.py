"""Callbacks of ``dashboard.components.clusters``: the cluster table under a map page's viewer: clusters above the
viewer's current threshold, asked for once the section has come into view."""

from __future__ import annotations

from typing import Any

import dash
from dash import ClientsideFunction, Input, Output, State

from dashboard.components.clusters import LAYER_KINDS, PANEL, _source_line, _text, cluster_id, cluster_table, csv_href
from dashboard.components.common import empty_state
from dashboard.components.lazy import lazy_id
from dashboard.components.maps import VIEWER_ID
from dashboard.viewer import component_id
from web.anatomy import clusters_of


@dash.callback(
    Output(cluster_id("body"), "children"),
    Output(cluster_id("csv"), "href"),
    Output(cluster_id("source"), "children"),
    Input(cluster_id("settings"), "data"),
    Input(cluster_id("min-voxels"), "value"),
    State(cluster_id("context"), "data"),
    prevent_initial_call=True,
)
def _update_clusters(settings: Any, min_voxels: Any, context: Any):
    settings = settings if isinstance(settings, dict) else {}
    context = context if isinstance(context, dict) else {}
    found = LAYER_KINDS.get(settings.get("layer")) if isinstance(settings.get("layer"), str) else None
    if found is None:
        return empty_state("Select a map layer in the viewer to list its clusters."), "", ""
    kind, needs = found
    names = tuple(_text(context.get(n)) for n in needs)
    if not all(names):
        return empty_state("This page has no such map."), "", ""
    query = {
        "threshold": settings.get("threshold"),
        "threshold_negative": settings.get("threshold_negative"),
        "min_voxels": min_voxels,
        "atlas": settings.get("atlas"),
    }
    if not all(v is None or isinstance(v, int | float | str) and not isinstance(v, bool) for v in query.values()):
        return empty_state("These settings cannot be used."), "", ""
    payload, error = clusters_of(kind, *names, args=query)
    if error:
        return empty_state("These settings cannot be used.", error), "", ""
    if payload is None:
        return empty_state("The map is not available."), "", ""
    shown = {
        "threshold": payload["threshold"],
        "threshold_negative": payload["threshold_negative"],
        "min_voxels": payload["min_voxels"],
        "atlas": payload["atlas"],
    }
    return cluster_table(payload["items"]), csv_href(kind, names, shown), _source_line(payload["source"])


dash.clientside_callback(
    ClientsideFunction(namespace="incdbClusters", function_name="settings"),
    Output(cluster_id("settings"), "data"),
    Input(component_id("layers", VIEWER_ID), "data"),
    Input(component_id("selected", VIEWER_ID), "data"),
    Input(component_id("atlas", VIEWER_ID), "value"),
    Input(lazy_id("shown", PANEL), "data"),
    State(cluster_id("settings"), "data"),
)
