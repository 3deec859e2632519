"""One term: its reference map and the mean of every component decoded to it, the movies and the components."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from dashboard.components.clusters import cluster_panel
from dashboard.components.common import not_found as not_found_panel
from dashboard.components.common import page_header, plural
from dashboard.components.data import arg, read
from dashboard.components.details import term_movies_table
from dashboard.components.maps import map_viewer, term_layers
from dashboard.components.tables import paged_table
from dashboard.components.urlstate import url_tabs
from pipeline.decoding.reference import term_note
from store import queries


def title(term: str | None = None, **_: Any) -> str:
    found = read(queries.term_detail, term) if term else None
    return f"{found['name']} · Terms · INcDb" if found else "Term not found · INcDb"


dash.register_page(__name__, path_template="/terms/<term>", order=2, title=title)


def layout(term: str | None = None, **query: Any) -> html.Div:
    detail = read(queries.term_detail, term or "")
    if detail is None:
        return not_found_panel("Term", term, links=(("All terms", "/terms"), ("Home", "/")))
    n_components = detail["n_components"]
    caption = (
        f"Green: the {detail['reference_set']} map of “{detail['name']}”. "
        + (
            f"Warm/cool: the mean of the {detail['n_components_mean_map']} public components decoded to it, "
            "across all movies. "
            if detail["has_mean_map"]
            else "No mean map yet: no public component has been decoded to this term. "
        )
        + "Use the layer list to hide, reorder or download maps."
    )
    return html.Div(
        [
            page_header(
                detail["name"],
                f"{plural(n_components, 'component')} in {plural(detail['n_movies'], 'movie')}"
                f" decoded to this term · reference set: {detail['reference_set']}",
                crumbs=(("Home", "/"), ("Terms", "/terms"), (detail["name"], None)),
            ),
            _note(read(term_note, detail["slug"])),
            map_viewer(
                term_layers(detail["slug"], detail["name"], detail["has_mean_map"], detail["n_components_mean_map"]),
                caption,
                query,
            ),
            cluster_panel(term=detail["slug"]),
            url_tabs(
                "term",
                [
                    (
                        "movies",
                        f"Movies ({detail['n_movies']})",
                        html.Div(
                            [
                                term_movies_table(detail),
                                html.P(
                                    f"The {len(detail['movies'])} of {detail['n_movies']} movies with most components.",
                                    className="text-muted",
                                )
                                if detail["n_movies"] > len(detail["movies"])
                                else None,
                            ]
                        ),
                    ),
                    (
                        "components",
                        f"Components ({n_components})",
                        paged_table(
                            "components", "components", query, context={"term": detail["slug"], "hide": ["term"]}
                        ),
                    ),
                ],
                arg(query, "tab"),
            ),
        ]
    )


def _note(note: dict | None) -> html.P | None:
    """The studies the reference map rests on and, for a topic, its top words (from the set's description)."""
    if note is None:
        return None
    words = f" Top words of the topic: {note['keys']}." if note["keys"] else ""
    return html.P(
        f"The reference map rests on {note['studies']:,} studies.{words}", className="small text-muted", id="term-note"
    )
