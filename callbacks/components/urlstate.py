"""Callbacks of ``dashboard.components.urlstate``: page state in the query string without re-rendering the page."""

from __future__ import annotations

import dash
from dash import MATCH, Input, Output, State

from dashboard.components.urlstate import TABS, TABS_SYNC, replace_query_callback

dash.clientside_callback(
    replace_query_callback("""
    const [active, config] = args;
    const params = {[config.param]: active === config.default ? null : active};"""),
    Output({"type": TABS_SYNC, "name": MATCH}, "modified_timestamp"),
    Input({"type": TABS, "name": MATCH}, "active_tab"),
    State({"type": TABS_SYNC, "name": MATCH}, "data"),
    prevent_initial_call=True,
)
