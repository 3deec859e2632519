"""The page for any address that no page matches."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from dashboard.components.common import not_found
from dashboard.components.search import search_box

dash.register_page(__name__, path="/404", title="Page not found · INcDb")


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            not_found(
                "page",
                heading="Page not found",
                hint="There is no page at this address. It may have moved, or the link may be mistyped. Search "
                "for what you were looking for, or start from one of these:",
            ),
            html.Div(search_box("not-found", large=False), className="incdb-404-search"),
        ]
    )
