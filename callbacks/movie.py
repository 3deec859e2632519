"""Callbacks of ``dashboard.pages.movie``: one movie: the terms its components decode to, the components, and the
collections with their metadata."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback
from dash.exceptions import PreventUpdate

from dashboard.components.data import read
from dashboard.components.urlstate import TABS
from dashboard.pages.movie import _timeline
from store import queries


@callback(
    Output("movie-timeline-body", "children"),
    Output("movie-timeline-body", "data-loaded"),
    Input({"type": TABS, "name": "movie"}, "active_tab"),
    State("movie-timeline-slug", "data"),
    State("movie-timeline-body", "data-loaded"),
    prevent_initial_call=True,
)
def _open_timeline(active: Any, slug: Any, loaded: Any):
    if active != "timeline" or loaded == "1" or queries.lookup_key(slug) is None:
        raise PreventUpdate
    body = read(_timeline, slug)
    if body is None:
        raise PreventUpdate
    return body, "1"
