"""Callbacks of ``dashboard.pages.home``: home: search, counts, newest movies, where to start, and the term x movie
heatmap."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, callback

from dashboard.components.data import read
from dashboard.pages.home import _heatmap_body
from store import queries


@callback(
    Output("heatmap-body", "children"),
    Input("heatmap-terms", "value"),
    Input("heatmap-movies", "value"),
    prevent_initial_call=True,
)
def _choose_heatmap(terms: Any, movies: Any) -> list:
    return _heatmap_body(read(queries.heatmap, terms, movies))
