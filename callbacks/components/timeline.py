"""Callbacks of ``dashboard.components.timeline`` on a component page: the Time course panel's label chooser
(kept in the page address) and the overlay of a label's regressor."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard.components.charts import GRAPH
from dashboard.components.data import read
from dashboard.components.timeline import (
    COURSE,
    COURSE_DATA,
    COURSE_LABEL,
    COURSE_NOTE,
    COURSE_TRACKS,
    RESTORE_CHOICE_JS,
    SYNC_CHOICE_BODY,
    course_label_options,
    course_update,
)
from dashboard.components.urlstate import replace_query_callback
from store.queries import lookup_key


@dash.callback(
    Output({"type": GRAPH, "graph": COURSE}, "figure"),
    Output(COURSE_NOTE, "children"),
    Output(COURSE_TRACKS, "options"),
    Input(COURSE_LABEL, "value"),
    Input(COURSE_TRACKS, "value"),
    State(COURSE_DATA, "data"),
    prevent_initial_call=True,
)
def _course(choice, chosen, data):
    # The page holds no events: the tracks and the regressor are read again for what was chosen.
    uuid = data.get("uuid") if isinstance(data, dict) else None
    if not isinstance(uuid, str) or lookup_key(uuid) is None:
        raise dash.exceptions.PreventUpdate
    found = read(course_update, uuid[:64], choice, chosen)
    if found is None:
        raise dash.exceptions.PreventUpdate
    return found


@dash.callback(
    Output(COURSE_TRACKS, "options", allow_duplicate=True),
    Input(COURSE_TRACKS, "search_value"),
    State(COURSE_TRACKS, "value"),
    State(COURSE_DATA, "data"),
    prevent_initial_call=True,
)
def _course_search(search, chosen, data):
    # The chooser lists the chosen labels and at most a hundred others: a search finds the rest on the server.
    uuid = data.get("uuid") if isinstance(data, dict) else None
    if not isinstance(uuid, str) or lookup_key(uuid) is None or not isinstance(search, str | None):
        raise dash.exceptions.PreventUpdate
    options = read(course_label_options, uuid[:64], chosen, (search or "")[:200])
    if options is None:
        raise dash.exceptions.PreventUpdate
    return options


dash.clientside_callback(
    RESTORE_CHOICE_JS,
    Output(COURSE_TRACKS, "value"),
    Input(COURSE_DATA, "data"),
    State(COURSE_TRACKS, "value"),
)

dash.clientside_callback(
    replace_query_callback(SYNC_CHOICE_BODY),
    Output(COURSE_DATA, "modified_timestamp"),
    Input(COURSE_TRACKS, "value"),
    State(COURSE_DATA, "data"),
    prevent_initial_call=True,
)
