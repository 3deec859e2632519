"""All movies with at least one collection the user may see."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from dashboard.components.common import page_header
from dashboard.components.tables import paged_table

dash.register_page(__name__, path="/movies", order=3, title="Movies · INcDb")


def layout(**query: Any) -> html.Div:
    return html.Div(
        [
            page_header(
                "Movies",
                "Films that participants watched in the scanner, with the components recorded during them.",
                crumbs=(("Home", "/"), ("Movies", None)),
            ),
            paged_table("movies", "movies", query),
        ]
    )
