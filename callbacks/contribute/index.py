"""Callbacks of ``dashboard.pages.contribute.index``: my collections (``/contribute``): status, components, warnings,
and what can be done with each."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard.components.curator import sign_in_prompt
from dashboard.pages.contribute.index import rows_for_current_user, table
from web.auth import signed_in_user as user


@dash.callback(
    Output("mine-list", "children"),
    Output("mine-poll", "interval"),
    Input("mine-poll", "n_intervals"),
    prevent_initial_call=True,
)
def _refresh(_n):
    if user() is None:
        return sign_in_prompt("/contribute", "your collections"), 60000
    rows = rows_for_current_user()
    active = any(r["job"] and r["job"]["status"] in ("queued", "running") for r in rows)
    return table(rows), 2000 if active else 15000
