"""Pieces of the home page: the newest movies and a short guide with concrete first clicks."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from dashboard.components.common import Child, empty_state, fmt_date, plural


def recent_movie_list(movies: list[dict[str, Any]]) -> Child:
    if not movies:
        return empty_state(
            "No movies yet.",
            "Movies appear here once a contributor uploads a collection.",
            links=(("Contribute data", "/contribute"),),
        )
    return html.Ul(
        [
            html.Li(
                [
                    dcc.Link(m["title"], href=f"/movies/{m['slug']}", className="incdb-recent-title"),
                    html.Span(f" ({m['year']})" if m.get("year") else "", className="text-muted"),
                    html.Div(
                        f"{plural(m['n_components'], 'component')} · added {fmt_date(m['latest'])}",
                        className="incdb-recent-meta",
                    ),
                ],
                className="list-group-item",
            )
            for m in movies
        ],
        className="list-group list-group-flush incdb-recent",
        id="recent-movies",
    )


def _busiest_cell(heat: dict[str, Any]) -> tuple[int, int] | None:
    best = None
    for i, row in enumerate(heat["count"]):
        for j, n in enumerate(row):
            if n and (best is None or n > heat["count"][best[0]][best[1]]):
                best = (i, j)
    return best


def start_guide(heat: dict[str, Any]) -> html.Ol:
    """Four steps, with links into the data that exists (the busiest term and movie x term cell)."""
    cell = _busiest_cell(heat)
    term_step: list[Child] = ["Pick a brain function on the ", dcc.Link("Terms", href="/terms"), " page"]
    cell_step: list[Child] = ["Click a cell of the heatmap below to see how one movie engaged one term"]
    if cell is not None:
        i, j = cell
        term, slug = heat["terms"][i], heat["term_slugs"][i]
        term_step += [
            ", for example ",
            dcc.Link(term, href=f"/terms/{slug}"),
            ": its reference map next to the mean of every component decoded to it.",
        ]
        cell_step += [
            ", for example ",
            dcc.Link(f"{term} in {heat['movies'][j]}", href=f"/movies/{heat['movie_slugs'][j]}/{slug}"),
            ".",
        ]
    else:
        term_step.append(".")
        cell_step.append(".")
    return html.Ol(
        [
            html.Li(
                [
                    "Search for a movie or a term in the box above, or browse all ",
                    dcc.Link("movies", href="/movies"),
                    ".",
                ]
            ),
            html.Li(term_step),
            html.Li(cell_step),
            html.Li(
                "Open any component to see its map, its full decoding profile and where it came from; "
                "maps and profiles download as NIfTI and CSV."
            ),
        ],
        className="incdb-guide",
        id="start-guide",
    )
