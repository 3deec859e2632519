"""All terms of the active reference set, with how many movies and components were decoded to each."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from dashboard.components.common import page_header
from dashboard.components.tables import paged_table

dash.register_page(__name__, path="/terms", order=1, title="Terms · INcDb")


def layout(**query: Any) -> html.Div:
    return html.Div(
        [
            page_header(
                "Terms",
                "Each term is a reference map of one brain function. Components are decoded to the "
                "term whose map they correlate with best.",
                crumbs=(("Home", "/"), ("Terms", None)),
            ),
            paged_table("terms", "terms", query),
        ]
    )
