"""Callbacks of ``dashboard.components.lazy``: a lazy section's body, drawn by its page's loader once the section
has come into view (``assets/incdb-lazy.js`` sets its ``load`` store)."""

from __future__ import annotations

from typing import Any

import dash
from dash import MATCH, Input, Output, State, ctx

from dashboard.components.lazy import lazy_id, load


@dash.callback(
    Output(lazy_id("body", MATCH), "children"),
    Input(lazy_id("load", MATCH), "data"),
    State(lazy_id("args", MATCH), "data"),
    prevent_initial_call=True,
)
def _load(shown: Any, args: Any):
    if shown is not True:
        raise dash.exceptions.PreventUpdate
    key = ctx.triggered_id.get("section") if isinstance(ctx.triggered_id, dict) else None
    return load(key, args)
