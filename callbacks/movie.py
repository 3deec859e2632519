"""Callbacks of ``dashboard.pages.movie``: one movie: the terms its components decode to, the components, the
collections with their metadata, and the Timeline tab (its label chooser, zoom and readout)."""

from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, callback, clientside_callback, ctx
from dash.exceptions import PreventUpdate

from dashboard.components.charts import GRAPH
from dashboard.components.data import read
from dashboard.components.timeline import (
    READOUT_JS,
    RESTORE_CHOICE_JS,
    RESTORE_VIEW_JS,
    SYNC_CHOICE_BODY,
    SYNC_VIEW_BODY,
    TIMELINE,
    TIMELINE_MOMENT,
    TIMELINE_NOTE,
    TIMELINE_READOUT,
    TIMELINE_STATE,
    TIMELINE_TRACKS,
    TIMELINE_VIEW,
    TIMELINE_VIEW_NOTE,
    moment_range,
    movie_label_options,
    movie_timeline,
    parse_choices,
    zoom_range,
    zoom_timeline,
    zoom_to_moment,
)
from dashboard.components.urlstate import TABS, replace_query_callback
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


# --- the Timeline tab ----------------------------------------------------------------------------------------------


@callback(
    Output({"type": GRAPH, "graph": TIMELINE}, "figure"),
    Output(TIMELINE_NOTE, "children"),
    Output(TIMELINE_TRACKS, "options"),
    Output(TIMELINE_VIEW_NOTE, "children"),
    Input(TIMELINE_TRACKS, "value"),
    Input(TIMELINE_VIEW, "value"),
    State(TIMELINE_STATE, "data"),
    prevent_initial_call=True,
)
def _timeline_labels(chosen: Any, view: Any, state: Any):
    # The labels drawn or the view (activity / synchrony) changed: the figure is drawn again.
    slug = state.get("slug") if isinstance(state, dict) else None
    pairs = parse_choices(chosen)
    if queries.lookup_key(slug) is None or pairs is None:
        raise PreventUpdate
    found = read(movie_timeline, slug, pairs, view if view == "synchrony" else "activity")
    if found is None:
        raise PreventUpdate
    return found["figure"], found["note"], found["options"], found["view_note"]


@callback(
    Output(TIMELINE_TRACKS, "options", allow_duplicate=True),
    Input(TIMELINE_TRACKS, "search_value"),
    State(TIMELINE_TRACKS, "value"),
    State(TIMELINE_STATE, "data"),
    prevent_initial_call=True,
)
def _timeline_search(search: Any, chosen: Any, state: Any):
    # The chooser lists the chosen labels and at most a hundred others: a search finds the rest on the server.
    slug = state.get("slug") if isinstance(state, dict) else None
    if queries.lookup_key(slug) is None or not isinstance(search, str | None):
        raise PreventUpdate
    options = read(movie_label_options, slug, chosen, (search or "")[:200])
    if options is None:
        raise PreventUpdate
    return options


@callback(
    Output({"type": GRAPH, "graph": TIMELINE}, "figure", allow_duplicate=True),
    Input({"type": GRAPH, "graph": TIMELINE}, "relayoutData"),
    State(TIMELINE_STATE, "data"),
    State(TIMELINE_VIEW, "value"),
    prevent_initial_call=True,
)
def _timeline_zoom(relayout: Any, state: Any, view: Any):
    # A zoom (or a drag of the range slider) gets the finer heatmap columns of the range in view.
    slug = state.get("slug") if isinstance(state, dict) else None
    found = zoom_range(relayout, state.get("span") if isinstance(state, dict) else None)
    if queries.lookup_key(slug) is None or found is None:
        raise PreventUpdate
    span = (float(state["span"][0]), float(state["span"][1]))  # numbers: zoom_range read them
    patch = read(zoom_timeline, slug, found[0], found[1], span, view if view == "synchrony" else "activity")
    if patch is None:
        raise PreventUpdate
    return patch


@callback(
    Output({"type": GRAPH, "graph": TIMELINE}, "figure", allow_duplicate=True),
    Input({"type": TIMELINE_MOMENT, "index": ALL}, "n_clicks"),
    State(TIMELINE_STATE, "data"),
    State(TIMELINE_VIEW, "value"),
    prevent_initial_call=True,
)
def _timeline_moment(clicks: Any, state: Any, view: Any):
    # A moment of synchrony clicked: the timeline zooms there as the slider would.
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(isinstance(c, int) and c > 0 for c in clicks or []):
        raise PreventUpdate
    slug = state.get("slug") if isinstance(state, dict) else None
    span = state.get("span") if isinstance(state, dict) else None
    found = moment_range(trigger.get("index"), span)
    if queries.lookup_key(slug) is None or found is None:
        raise PreventUpdate
    whole = (float(span[0]), float(span[1]))  # numbers: moment_range read them
    patch = read(zoom_to_moment, slug, found[0], found[1], whole, view if view == "synchrony" else "activity")
    if patch is None:
        raise PreventUpdate
    return patch


clientside_callback(
    RESTORE_CHOICE_JS,
    Output(TIMELINE_TRACKS, "value"),
    Input(TIMELINE_STATE, "data"),
    State(TIMELINE_TRACKS, "value"),
)

clientside_callback(
    replace_query_callback(SYNC_CHOICE_BODY),
    Output(TIMELINE_STATE, "modified_timestamp"),
    Input(TIMELINE_TRACKS, "value"),
    State(TIMELINE_STATE, "data"),
    prevent_initial_call=True,
)

clientside_callback(
    RESTORE_VIEW_JS,
    Output(TIMELINE_VIEW, "value"),
    Input(TIMELINE_STATE, "data"),
    State(TIMELINE_VIEW, "value"),
)

clientside_callback(
    replace_query_callback(SYNC_VIEW_BODY),
    Output(TIMELINE_STATE, "modified_timestamp", allow_duplicate=True),
    Input(TIMELINE_VIEW, "value"),
    State(TIMELINE_STATE, "data"),
    prevent_initial_call=True,
)

clientside_callback(
    READOUT_JS,
    Output(TIMELINE_READOUT, "children"),
    Input({"type": GRAPH, "graph": TIMELINE}, "hoverData"),
    State({"type": GRAPH, "graph": TIMELINE}, "figure"),
    State(TIMELINE_STATE, "data"),
    prevent_initial_call=True,
)
