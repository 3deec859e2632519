"""Callbacks of ``dashboard.components.tables``: tables with links, and paged tables (search, sort, pages) kept in the
query string."""

from __future__ import annotations

from typing import Any

import dash
from dash import MATCH, Input, Output, State, ctx

from dashboard.components.tables import PREFIX, SOURCES, TableState, _draw, _params, _summary, clean_context, table_id
from dashboard.components.urlstate import replace_query_callback
from store import queries


@dash.callback(
    Output(table_id("body", MATCH), "children"),
    Output(table_id("summary", MATCH), "children"),
    Output(table_id("pagination", MATCH), "max_value"),
    Output(table_id("pagination", MATCH), "active_page"),
    Output(table_id("pagination", MATCH), "style"),
    Output(table_id("query", MATCH), "data"),
    Input(table_id("search", MATCH), "value"),
    Input(table_id("sort", MATCH), "value"),
    Input(table_id("pagination", MATCH), "active_page"),
    State(table_id("context", MATCH), "data"),
    prevent_initial_call=True,
)
def _update_table(search: Any, sort: Any, page: Any, context: Any):
    context = clean_context(context)
    source = SOURCES.get(context["source"]) if context else None
    if source is None:
        raise dash.exceptions.PreventUpdate
    trigger = ctx.triggered_id if isinstance(ctx.triggered_id, dict) else {}
    restart = trigger.get("type") in (PREFIX + "search", PREFIX + "sort")
    sorts = [v for v, _ in source.sorts]
    state = TableState(
        search=queries.search_text(search) if source.searchable else "",
        sort=sort if isinstance(sort, str) and sort in sorts else (sorts[0] if sorts else ""),
        page=1 if restart else queries.clamp_page(page, None)[0],
    )
    data = _draw(source, context, state)
    return (
        data.content,
        _summary(data),
        data.pages,
        data.page,
        None if data.pages > 1 else {"display": "none"},
        _params(source, state, context.get("prefix", "")),
    )


dash.clientside_callback(
    replace_query_callback("const params = args[0];"),
    Output(table_id("query", MATCH), "modified_timestamp"),
    Input(table_id("query", MATCH), "data"),
    prevent_initial_call=True,
)
