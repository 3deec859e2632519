"""Callbacks of ``dashboard.pages.decode_result``: a visitor's decoded map (``/decode/<id>``): the viewer with the
map, the decoding profile (chart, full ranked."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from dashboard.components.charts import decoding_figure
from dashboard.components.curator import alert
from dashboard.components.data import read
from dashboard.components.maps import VIEWER_ID
from dashboard.components.similar import similar_table
from dashboard.pages.decode_result import _layers, _progress, _state, _terms_table
from dashboard.viewer import component_id, layer_dicts
from pipeline.decoding import visitors
from store.db import session_scope
from web.auth import viewer


@dash.callback(
    Output("decres-progress", "children"),
    Output("decres-go", "href"),
    Input("decres-poll", "n_intervals"),
    State("decres-token", "data"),
    prevent_initial_call=True,
)
def _poll(_n: Any, token: Any):
    """Progress while the decoding runs; the page reloads itself when it has ended."""
    if not isinstance(token, str) or len(token) > 64:
        raise PreventUpdate
    info = read(_state, token)
    if info is None or info["status"] not in ("queued", "running"):
        return no_update, f"/decode/{token}" if info is not None else "/decode"
    return _progress(info), no_update


@dash.callback(
    Output("decres-volume", "value"),
    Input("decres-prev", "n_clicks"),
    Input("decres-next", "n_clicks"),
    Input("decres-heatmap", "clickData"),
    State("decres-volume", "value"),
    State("decres-volume", "min"),
    State("decres-volume", "max"),
    prevent_initial_call=True,
)
def _step(_prev: Any, _next: Any, click: Any, value: Any, low: Any, high: Any):
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (value, low, high)):
        raise PreventUpdate
    trigger = dash.ctx.triggered_id
    if trigger == "decres-heatmap":
        try:
            wanted = int(click["points"][0]["x"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise PreventUpdate from None
    else:
        wanted = value + (1 if trigger == "decres-next" else -1)
    return min(max(wanted, low), high)


@dash.callback(
    Output(component_id("layers", VIEWER_ID), "data", allow_duplicate=True),
    Output("decres-profile", "figure"),
    Output("decres-similar", "children"),
    Output("decres-terms", "children"),
    Input("decres-volume", "value"),
    State("decres-token", "data"),
    prevent_initial_call=True,
)
def _show_volume(volume: Any, token: Any):
    """Another volume: the viewer's layer, the profile, the similar components and the table follow."""
    if not isinstance(token, str) or len(token) > 64 or not isinstance(volume, int) or isinstance(volume, bool):
        raise PreventUpdate
    info = read(_state, token)
    if info is None:
        raise PreventUpdate
    chosen = next((v for v in info["volumes_shown"] if v["volume"] == volume and v["error"] is None), None)
    if chosen is None:
        raise PreventUpdate
    return (
        layer_dicts(_layers(token, chosen, info["volumes"])),
        decoding_figure(chosen["terms"]),
        similar_table(chosen["similar"]),
        _terms_table(chosen["terms"]),
    )


@dash.callback(
    Output("decres-delete-modal", "is_open"),
    Input("decres-delete", "n_clicks"),
    Input("decres-delete-cancel", "n_clicks"),
    prevent_initial_call=True,
)
def _confirm(_open: Any, _cancel: Any) -> bool:
    return dash.ctx.triggered_id == "decres-delete"


@dash.callback(
    Output("decres-delete-message", "children"),
    Output("decres-go", "href", allow_duplicate=True),
    Input("decres-delete-confirm", "n_clicks"),
    State("decres-token", "data"),
    prevent_initial_call=True,
)
def _remove(clicks: Any, token: Any):
    if not isinstance(clicks, int) or clicks < 1 or not isinstance(token, str) or len(token) > 64:
        raise PreventUpdate
    with session_scope() as session:
        row = visitors.find(session, token)
        if row is None or not visitors.can_delete(viewer(), row):
            return alert("Only the curator who sent this map (signed in) can delete it."), no_update
        visitors.delete_result(session, row)
    return None, "/decode"
