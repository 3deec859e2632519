"""Callbacks of ``dashboard.components.search``: the search box: suggestions (terms and movies) as you type; choosing
one, or Enter, opens it."""

from __future__ import annotations

from typing import Any

import dash
from dash import MATCH, Input, Output, State

from dashboard.components.common import Child
from dashboard.components.data import read
from dashboard.components.search import MIN_CHARS, search_id, suggestion_list
from store import queries


@dash.callback(
    Output(search_id("suggestions", MATCH), "children"),
    Input(search_id("input", MATCH), "value"),
    prevent_initial_call=True,
)
def _suggest(text: Any) -> Child:
    text = queries.search_text(text, 100)
    items = read(queries.search, text) if len(text.strip()) >= MIN_CHARS else []
    return suggestion_list(items, text)


@dash.callback(
    Output(search_id("nav", MATCH), "href"),
    Input(search_id("input", MATCH), "n_submit"),
    State(search_id("input", MATCH), "value"),
    prevent_initial_call=True,
)
def _open_first(_n_submit: Any, text: Any) -> str:
    items = read(queries.search, queries.search_text(text, 100))
    if not items:
        raise dash.exceptions.PreventUpdate
    return items[0]["href"]
