"""Callbacks of ``dashboard.viewer``: the brain map viewer: Dash layout and clientside wiring around NiiVue."""

from __future__ import annotations

import dash
from dash import ALL, MATCH, ClientsideFunction, Input, Output, State

from dashboard.viewer import _NAMESPACE, ID_PREFIX, _match


def register_viewer_callbacks(app: dash.Dash) -> None:
    """Clientside callbacks shared by every viewer (pattern-matching ids), registered once on ``app``.

    On the app rather than Dash's global list: the global list is handed to whichever app serves a request first,
    so a second app in the same process (tests) would silently get none."""
    fn = lambda name: ClientsideFunction(namespace=_NAMESPACE, function_name=name)  # noqa: E731

    app.clientside_callback(
        fn("sync"),
        Output(_match("sync"), "data"),
        Input(_match("layers"), "data"),
        Input(_match("view"), "value"),
        Input(_match("mosaic"), "value"),
        Input(_match("selected"), "data"),
        Input(_match("atlas"), "value"),
        State(_match("config"), "data"),
    )
    app.clientside_callback(
        fn("showMosaicInput"),
        Output(_match("mosaic-group"), "style"),
        Input(_match("view"), "value"),
    )
    app.clientside_callback(
        fn("lookupRegion"),
        Output(_match("region"), "children"),
        Input(_match("location"), "data"),
        Input(_match("atlas"), "value"),
        State(_match("config"), "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        fn("share"),
        Output(_match("share-done"), "data"),
        Input(_match("copy-link"), "n_clicks"),
        Input(_match("save-image"), "n_clicks"),
        State(_match("config"), "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        fn("renderLayerList"),
        Output(_match("layer-list"), "children"),
        Input(_match("layers"), "data"),
        Input(_match("selected"), "data"),
        State(_match("config"), "data"),
    )
    app.clientside_callback(
        fn("layerAction"),
        Output(_match("layers"), "data", allow_duplicate=True),
        Output(_match("selected"), "data"),
        Input({"type": ID_PREFIX + "layer-action", "viewer": MATCH, "layer": ALL, "action": ALL}, "n_clicks"),
        State(_match("layers"), "data"),
        State(_match("selected"), "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        fn("controlsFromSelection"),
        Output(_match("colormap"), "value"),
        Output(_match("colormap-negative"), "value"),
        Output(_match("colormap-negative"), "disabled"),
        Output(_match("threshold"), "max"),
        Output(_match("threshold"), "step"),
        Output(_match("threshold"), "value"),
        Output(_match("threshold"), "marks"),
        Output(_match("threshold"), "disabled"),
        Output(_match("threshold-negative"), "max"),
        Output(_match("threshold-negative"), "step"),
        Output(_match("threshold-negative"), "value"),
        Output(_match("threshold-negative"), "marks"),
        Output(_match("threshold-negative"), "disabled"),
        Output(_match("opacity"), "value"),
        Output(_match("frame"), "value"),
        Output(_match("frame"), "max"),
        Output(_match("frame-count"), "children"),
        Output(_match("frame-group"), "style"),
        Output(_match("settings-title"), "children"),
        Input(_match("selected"), "data"),
        Input(_match("info"), "data"),
        Input(_match("frame-prev"), "n_clicks"),
        Input(_match("frame-next"), "n_clicks"),
        State(_match("layers"), "data"),
        State(_match("frame"), "value"),
    )
    app.clientside_callback(
        fn("controlsToLayers"),
        Output(_match("layers"), "data", allow_duplicate=True),
        Input(_match("colormap"), "value"),
        Input(_match("colormap-negative"), "value"),
        Input(_match("threshold"), "value"),
        Input(_match("threshold-negative"), "value"),
        Input(_match("opacity"), "value"),
        Input(_match("frame"), "value"),
        State(_match("layers"), "data"),
        State(_match("selected"), "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        fn("gotoCoordinate"),
        Output(_match("goto-done"), "data"),
        Input(_match("goto"), "n_clicks"),
        Input(_match("x"), "n_submit"),
        Input(_match("y"), "n_submit"),
        Input(_match("z"), "n_submit"),
        State(_match("x"), "value"),
        State(_match("y"), "value"),
        State(_match("z"), "value"),
        State(_match("config"), "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        fn("renderReadout"),
        Output(_match("readout"), "children"),
        Output(_match("x"), "value"),
        Output(_match("y"), "value"),
        Output(_match("z"), "value"),
        Input(_match("location"), "data"),
        prevent_initial_call=True,
    )
