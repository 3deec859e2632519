"""One movie x one term: the merged map of the movie's components decoded to the term, and those components."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from dashboard.components.clusters import cluster_panel
from dashboard.components.common import empty_state, not_found, page_header, plural, section
from dashboard.components.data import read
from dashboard.components.maps import map_viewer, merged_layers
from dashboard.components.tables import paged_table
from store import queries


def title(movie: str | None = None, term: str | None = None, **_: Any) -> str:
    found = read(queries.movie_term, movie, term) if movie and term else None
    return f"{found['term']} in {found['movie']} · INcDb" if found else "Not found · INcDb"


dash.register_page(__name__, path_template="/movies/<movie>/<term>", order=4, title=title)


def layout(movie: str | None = None, term: str | None = None, **query: Any) -> html.Div:
    detail = read(queries.movie_term, movie or "", term or "")
    if detail is None:
        what = "Movie" if read(queries.get_visible_movie, movie or "") is None else "Term"
        return not_found(
            what,
            movie if what == "Movie" else term,
            links=(("All movies", "/movies"), ("All terms", "/terms"), ("Home", "/")),
        )
    has_merged = detail["has_merged_map"]
    caption = (
        f"The voxelwise mean of the {detail['n_merged']} public components of {detail['movie']} decoded to "
        f"“{detail['term']}”. The term's reference map is in the layer list (hidden); show it to compare."
        if has_merged
        else f"No merged map yet, so the viewer shows the reference map of “{detail['term']}”."
    )
    components = (
        paged_table(
            "components",
            "components",
            query,
            context={"movie": detail["movie_slug"], "term": detail["term_slug"], "hide": ["movie", "term"]},
        )
        if detail["n_components"]
        else empty_state(
            "No components yet.",
            f"No component of {detail['movie']} you can see has been decoded to “{detail['term']}”.",
            links=(
                (f"All terms of {detail['movie']}", f"/movies/{detail['movie_slug']}"),
                (f"“{detail['term']}” in other movies", f"/terms/{detail['term_slug']}"),
            ),
        )
    )
    private = [c for c in detail["components"] if c.get("visibility") == "private"]
    note = (
        html.P(
            f"{plural(len(private), 'private component')} (yours, or visible to you as an administrator) "
            f"{'is' if len(private) == 1 else 'are'} listed but not part of the public merged map.",
            className="text-muted",
        )
        if private and has_merged
        else None
    )
    return html.Div(
        [
            page_header(
                [detail["term"], html.Span(" in ", className="incdb-title-join"), detail["movie"]],
                f"Merged map of {plural(detail['n_merged'], 'component')}" if has_merged else "No merged map yet",
                crumbs=(
                    ("Home", "/"),
                    ("Movies", "/movies"),
                    (detail["movie"], f"/movies/{detail['movie_slug']}"),
                    (detail["term"], None),
                ),
            ),
            map_viewer(
                merged_layers(detail["movie_slug"], detail["term_slug"], detail["term"], detail["movie"], has_merged),
                caption,
                query,
            ),
            cluster_panel(movie=detail["movie_slug"], term=detail["term_slug"]),
            section("Components that were merged" if has_merged else "Components", [note, components]),
        ]
    )
