"""Callbacks of ``dashboard.components.similar``: the "Similar components" section: the catalogue's components that
correlate best with a map (exact spatial r), once the section has come into view."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State
from dash.exceptions import PreventUpdate

from dashboard.components.common import empty_state
from dashboard.components.data import read
from dashboard.components.lazy import lazy_id
from dashboard.components.similar import BODY, LAZY_KEY, OTHERS_ONLY, OWN_UUID, _found, similar_table


@dash.callback(
    Output(BODY, "children"),
    Input(lazy_id("shown", LAZY_KEY), "data"),
    Input(OTHERS_ONLY, "value"),
    State(OWN_UUID, "data"),
    prevent_initial_call=True,
)
def _fill(shown: Any, others_only: Any, uuid: Any):
    if shown is not True or not isinstance(uuid, str) or not 0 < len(uuid) <= 64:
        raise PreventUpdate
    found = read(_found, uuid, others_only is True)
    if found is None:
        return empty_state(
            "Not indexed yet.",
            "This component was stored before the similarity index existed; an "
            "administrator builds it with `python -m pipeline similar rebuild`.",
        )
    return similar_table(found)
