"""Callbacks of ``dashboard.components.timeline``: figures and panels of the movie's timeline: annotation tracks,
component time courses, power spectra and the."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard.components.charts import GRAPH
from dashboard.components.timeline import COURSE, COURSE_DATA, COURSE_LABEL, course_figure, label_overlay


@dash.callback(
    Output({"type": GRAPH, "graph": COURSE}, "figure"),
    Input(COURSE_LABEL, "value"),
    State(COURSE_DATA, "data"),
    prevent_initial_call=True,
)
def _overlay(choice, data):
    # The regressor is computed for the one label chosen, not for every label at page load.
    if not isinstance(data, dict) or not isinstance(data.get("course"), dict):
        raise dash.exceptions.PreventUpdate
    course = data["course"]
    try:
        overlay = label_overlay(course, data.get("annotations") or [], choice, (data.get("signs") or {}).get(choice))
    except (TypeError, ValueError, KeyError, IndexError):  # a forged Store: draw the course alone
        overlay = None
    return course_figure({**course, "spectrum": None}, data.get("annotations") or [], overlay)
