"""Callbacks of ``dashboard.pages.system``: the System page (``/admin/system``, administrators only): whether
background jobs can run, and why not."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard.pages.system import _refused, content


@dash.callback(Output("system-content", "children"), Input("system-refresh", "n_clicks"), prevent_initial_call=True)
def _refresh(_n):
    refused = _refused()
    return refused if refused is not None else content()
