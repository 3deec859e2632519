"""One movie: the terms its components decode to, the components, and the collections with their metadata."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import demo_badge, link, not_found, page_header, plural
from dashboard.components.data import arg, read
from dashboard.components.details import movie_terms_table
from dashboard.components.metadata import collection_list
from dashboard.components.tables import paged_table
from dashboard.components.timeline import choices_from_query, timeline_panel, view_from_query
from dashboard.components.urlstate import url_tabs
from store import queries


def title(movie: str | None = None, **_: Any) -> str:
    found = read(queries.get_visible_movie, movie) if movie else None
    return f"{found.title} · Movies · INcDb" if found else "Movie not found · INcDb"


# Dash tries path templates in registry order and "/movies/<movie>" also matches "/movies/<movie>/<term>", so the
# movie x term page (order 4) must be tried before this one.
dash.register_page(__name__, path_template="/movies/<movie>", order=5, title=title)


def _timeline(
    session, user, slug: str, chosen: list[tuple[int, str]] | None = None, view: str = "activity"
) -> html.Div | None:
    return timeline_panel(session, user, slug, chosen, view)


def _timeline_tab(
    slug: str, active: bool, chosen: list[tuple[int, str]] | None = None, view: str = "activity"
) -> html.Div:
    """The Timeline tab reads every time course of the movie: made when the tab is opened, not on every visit
    (with the labels chosen in the page address, ``labels``, and its view, ``view``)."""
    body = read(_timeline, slug, chosen, view) if active else dbc.Spinner(color="secondary", size="sm")
    return html.Div(
        [
            dcc.Store(id="movie-timeline-slug", data=slug),
            html.Div(body, id="movie-timeline-body", **{"data-loaded": "1" if active else "0"}),
        ]
    )


def _collection_pages(collections: list[dict[str, Any]]) -> html.Ul | None:
    """Links to the collections' own pages (components with their ISC, the ISFC heatmap)."""
    if not collections:
        return None
    return html.Ul(
        [html.Li(link(c["name"], f"/collections/{c['slug']}")) for c in collections],
        className="incdb-collection-pages",
        id="movie-collection-pages",
    )


def layout(movie: str | None = None, **query: Any) -> html.Div:
    detail = read(queries.movie_detail, movie or "")
    if detail is None:
        return not_found("Movie", movie, links=(("All movies", "/movies"), ("Home", "/")))
    collections = detail["collections"]
    all_demo = bool(collections) and all(c["is_demo"] for c in collections)
    name = f"{detail['title']} ({detail['year']})" if detail.get("year") else detail["title"]
    return html.Div(
        [
            page_header(
                name,
                f"{plural(detail['n_components'], 'component')} in "
                f"{plural(detail['n_collections'], 'collection')}, "
                f"decoded to {plural(detail['n_terms'], 'term')}",
                crumbs=(("Home", "/"), ("Movies", "/movies"), (detail["title"], None)),
                badges=[demo_badge()] if all_demo else [],
            ),
            url_tabs(
                "movie",
                [
                    (
                        "terms",
                        f"Terms ({detail['n_terms']})",
                        html.Div(
                            [
                                movie_terms_table(detail),
                                html.P(
                                    f"The {len(detail['terms'])} best-scoring of {detail['n_terms']} terms.",
                                    className="text-muted",
                                )
                                if detail["n_terms"] > len(detail["terms"])
                                else None,
                            ]
                        ),
                    ),
                    (
                        "components",
                        f"Components ({detail['n_components']})",
                        paged_table(
                            "components", "components", query, context={"movie": detail["slug"], "hide": ["movie"]}
                        ),
                    ),
                    (
                        "collections",
                        f"Collections ({detail['n_collections']})",
                        html.Div(
                            [
                                _collection_pages(collections),
                                collection_list(collections),
                                html.P(
                                    f"The oldest {len(collections)} of {detail['n_collections']} "
                                    "collections are listed; "
                                    "every component is in the Components tab.",
                                    className="text-muted",
                                )
                                if detail["n_collections"] > len(collections)
                                else None,
                            ]
                        ),
                    ),
                    (
                        "timeline",
                        "Timeline",
                        _timeline_tab(
                            detail["slug"],
                            arg(query, "tab") == "timeline",
                            choices_from_query(query),
                            view_from_query(query),
                        ),
                    ),
                ],
                arg(query, "tab"),
            ),
        ]
    )
