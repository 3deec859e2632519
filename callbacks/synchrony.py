"""Callbacks of ``dashboard.components.synchrony``: a click on a cell of a collection's ISFC heatmap shows links
to its two components."""

from __future__ import annotations

from typing import Any

import dash
from dash import MATCH, Input, Output

from dashboard.components.synchrony import ISFC_GRAPH, ISFC_PAIR, pair_links

UUID_CHARS = frozenset("0123456789abcdef-")


def _uuid(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= UUID_CHARS else None


def clicked_pair(click: Any) -> tuple[str, str] | None:
    """The two component uuids of a clicked ISFC cell, or None for anything else (the browser may send anything)."""
    try:
        custom = click["points"][0]["customdata"]
        a, b = (_uuid(part) for part in custom.split(" "))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None
    return (a, b) if a and b else None


@dash.callback(
    Output({"type": ISFC_PAIR, "key": MATCH}, "children"),
    Input({"type": ISFC_GRAPH, "key": MATCH}, "clickData"),
    prevent_initial_call=True,
)
def _open_pair(click: Any):
    pair = clicked_pair(click)
    if pair is None:
        raise dash.exceptions.PreventUpdate
    return pair_links(*pair)
