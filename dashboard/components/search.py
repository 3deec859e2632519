"""The search box: suggestions (terms and movies) as you type; choosing one, or Enter, opens it."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import Child
from dashboard.components.thumbnails import suggestion_thumbnail

PREFIX = "incdb-search-"
MIN_CHARS = 2
KIND_LABELS = {"term": "term", "movie": "movie"}


def search_id(kind: str, name: str) -> dict[str, str]:
    return {"type": PREFIX + kind, "box": name}


def search_box(
    name: str = "main",
    placeholder: str = "Search movies and terms, e.g. “visual” or “Forrest”",
    large: bool = True,
    autofocus: bool = False,
) -> html.Div:
    return html.Div(
        [
            # Its own location: writing its href navigates through Dash pages without a reload.
            dcc.Location(id=search_id("nav", name), refresh="callback-nav"),
            dbc.InputGroup(
                [
                    dbc.InputGroupText(html.Span("⌕", className="incdb-search-icon", **{"aria-hidden": "true"})),
                    dbc.Input(
                        id=search_id("input", name),
                        type="search",
                        placeholder=placeholder,
                        autocomplete="off",
                        autofocus=autofocus,
                        debounce=False,
                        n_submit=0,
                    ),
                ],
                size="lg" if large else None,
            ),
            html.Div(id=search_id("suggestions", name), className="incdb-suggestions", role="listbox"),
        ],
        className="incdb-search",
        id=f"search-{name}",
    )


def suggestion_list(items: list[dict[str, str]], text: str) -> Child:
    if len(text.strip()) < MIN_CHARS:
        return None
    if not items:
        return html.Div(f"No movies or terms match “{text.strip()}”.", className="incdb-suggestion-empty")
    return html.Div(
        [
            dcc.Link(
                [
                    suggestion_thumbnail(item),
                    html.Span(item["label"], className="incdb-suggestion-label"),
                    html.Span(
                        KIND_LABELS.get(item["kind"], item["kind"]),
                        className=f"incdb-suggestion-kind kind-{item['kind']}",
                    ),
                ],
                href=item["href"],
                className="incdb-suggestion",
            )
            for item in items
        ],
        className="incdb-suggestion-list",
    )
