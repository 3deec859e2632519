"""Page state in the query string without re-rendering the page.

Dash pages re-runs a page's ``layout()`` whenever its own ``dcc.Location`` sees a new search string, which would
replace the viewer canvas (DESIGN section 10). So tables and tabs write their state with
``history.replaceState`` from a clientside callback: the address bar stays shareable and a reload restores the
state (layouts read the query), but the router is not told and the rest of the page stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

TABS = "incdb-tabs"
TABS_SYNC = "incdb-tabs-sync"

# Merges {name: value} into the current query string; null or "" removes the parameter.
REPLACE_QUERY_JS = """
function incdbReplaceQuery(params) {
    if (!params) { return; }
    const url = new URL(window.location.href);
    for (const [name, value] of Object.entries(params)) {
        if (value === null || value === undefined || value === "") { url.searchParams.delete(name); }
        else { url.searchParams.set(name, String(value)); }
    }
    if (url.href !== window.location.href) { window.history.replaceState(window.history.state, "", url.href); }
}
"""


def replace_query_callback(body: str) -> str:
    """A clientside callback function whose ``body`` computes ``params`` from its arguments, then syncs."""
    return (
        "function(...args) {" + REPLACE_QUERY_JS + body + "\nincdbReplaceQuery(params);\n"
        "return window.dash_clientside.no_update; }"
    )


def url_tabs(name: str, tabs: Sequence[tuple[str, str, Any]], active: str | None, param: str = "tab") -> html.Div:
    """Bootstrap tabs whose active tab is the ``tab`` query parameter (the first tab is the default)."""
    ids = [tab_id for tab_id, _, _ in tabs]
    active = active if active in ids else ids[0]
    return html.Div(
        [
            dbc.Tabs(
                [
                    dbc.Tab(content, label=label, tab_id=tab_id, id=f"tab-{name}-{tab_id}")
                    for tab_id, label, content in tabs
                ],
                id={"type": TABS, "name": name},
                active_tab=active,
                className="incdb-tabs",
            ),
            dcc.Store(id={"type": TABS_SYNC, "name": name}, data={"param": param, "default": ids[0]}),
        ]
    )
