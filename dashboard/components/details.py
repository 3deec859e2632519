"""Tables and fact panels of the detail pages (term, movie, movie x term, component)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.common import (
    Child,
    empty_state,
    fmt_date,
    fmt_r,
    fmt_share,
    link,
    plural,
    row_badges,
)
from dashboard.components.maps import component_url
from dashboard.components.tables import Column, data_table
from dashboard.components.thumbnails import merged_thumbnail, with_thumbnail

SCORE_HELP = (
    "Score = mean r × share. Mean r is the average correlation of this movie's components decoded to "
    "the term; share is the fraction of all the movie's components decoded to it. A term scores high "
    "when many of the movie's components match it, and match it well."
)


def term_movies_table(term: dict[str, Any]) -> Child:
    """The movies with components decoded to a term, each with its merged map."""
    if not term["movies"]:
        return empty_state(
            "No components yet.",
            f"No component you can see has been decoded to “{term['name']}”.",
            links=(("Browse terms", "/terms"), ("Contribute data", "/contribute")),
        )

    def merged(m: dict[str, Any]) -> Child:
        href = f"/movies/{m['slug']}/{term['slug']}"
        return link("merged map →" if m["has_merged_map"] else "components →", href, stretched=True)

    columns = [
        Column(
            "Movie",
            lambda m: with_thumbnail(
                merged_thumbnail(m["slug"], term["slug"], f"{term['name']} in {m['title']}", m["has_merged_map"]),
                link(m["title"], f"/movies/{m['slug']}"),
            ),
            "incdb-col-main",
        ),
        Column("Components", lambda m: f"{m['n_components']:,}", "text-end"),
        Column("Mean r", lambda m: fmt_r(m["mean_r"]), "text-end incdb-num"),
        Column("Map", merged, "text-end"),
    ]
    return data_table(columns, term["movies"], table_id_="term-movies-table")


def movie_terms_table(movie: dict[str, Any]) -> Child:
    """A movie's terms ranked by score, with a tooltip saying what the score is."""
    if not movie["terms"]:
        return empty_state("No components yet.", "None of this movie's components you can see has been decoded.")
    header = html.Span(
        ["Score ", html.Span("?", id="score-help", className="incdb-help", tabIndex="0", **{"aria-label": SCORE_HELP})]
    )
    columns = [
        Column(
            "Term",
            lambda t: with_thumbnail(
                merged_thumbnail(
                    movie["slug"], t["slug"], f"{t['name']} in {movie['title']}", t.get("has_merged_map", True)
                ),
                link(t["name"], f"/movies/{movie['slug']}/{t['slug']}", stretched=True),
            ),
            "incdb-col-main",
        ),
        Column(header, lambda t: f"{t['score']:.3f}", "text-end incdb-num"),
        Column("Mean r", lambda t: fmt_r(t["mean_r"]), "text-end incdb-num"),
        Column(
            "Share", lambda t: f"{fmt_share(t['share'])} ({t['n_components']} of {movie['n_components']})", "text-end"
        ),
        Column("Term page", lambda t: link("term →", f"/terms/{t['slug']}"), "text-end"),
    ]
    return html.Div(
        [
            data_table(columns, movie["terms"], table_id_="movie-terms-table"),
            dbc.Tooltip(SCORE_HELP, target="score-help", placement="top"),
        ]
    )


def component_facts(c: dict[str, Any]) -> dbc.Card:
    facts: list[Child] = []

    def fact(label: str, value: Child) -> None:
        facts.extend([html.Dt(label), html.Dd(value)])

    fact("Movie", link(c["movie"], f"/movies/{c['movie_slug']}"))
    fact("Collection", [link(c["collection"], f"/movies/{c['movie_slug']}?tab=collections"), *row_badges(c)])
    fact(
        "Source file",
        [
            html.Code(c["source_file"], id="component-source-file"),
            f", IC {c['volume']} (volume {c['volume']} of the file)",
        ],
    )
    if c.get("best_term"):
        fact(
            "Best term",
            [
                link(c["best_term"], f"/terms/{c['best_term_slug']}") if c.get("best_term_slug") else c["best_term"],
                f" (r = {fmt_r(c['best_r'])})",
            ],
        )
        if c.get("best_term_slug"):
            fact(
                "In this movie",
                link(
                    f"all {c['best_term']} components of {c['movie']} →",
                    f"/movies/{c['movie_slug']}/{c['best_term_slug']}",
                ),
            )
    fact("Decoded", fmt_date(c.get("decoded_at")))
    fact("ID", html.Code(c["uuid"], className="incdb-uuid"))
    downloads = html.Div(
        [
            html.A(
                "Map (NIfTI)",
                href=component_url(c["uuid"]),
                className="btn btn-primary btn-sm",
                download="",
                id="download-map",
            ),
            html.A(
                "Decodings (CSV)",
                href=f"/components/{c['uuid']}/decodings.csv",
                className="btn btn-outline-primary btn-sm",
                download="",
                id="download-csv",
            ),
        ],
        className="incdb-downloads",
    )
    return dbc.Card(dbc.CardBody([html.Dl(facts, className="incdb-facts"), downloads]), className="h-100")


def qc_alert(warnings: list[str]) -> dbc.Alert | None:
    if not warnings:
        return None
    return dbc.Alert(
        [
            html.Strong("Quality check: "),
            plural(len(warnings), "warning") + ". ",
            html.Ul([html.Li(w) for w in warnings], className="mb-0 mt-1"),
        ],
        color="warning",
        id="qc-warnings",
    )


def demo_alert(is_demo: bool) -> dbc.Alert | None:
    if not is_demo:
        return None
    return dbc.Alert(
        "This component belongs to a synthetic demo collection generated by INcDb: it shows how the "
        "site works and is not a recording of anyone's brain.",
        color="info",
        id="demo-alert",
        className="py-2",
    )
