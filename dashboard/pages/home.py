"""Home: search, counts, newest movies, where to start, the most synchronising films and the term x movie heatmap."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.charts import heatmap_figure, heatmap_links, heatmap_note, nav_graph
from dashboard.components.common import demo_notice, empty_state, section, stat_card
from dashboard.components.data import read
from dashboard.components.home import recent_movie_list, start_guide
from dashboard.components.search import search_box
from dashboard.components.synchrony import synchronising_list
from pipeline.synchrony.reads import most_synchronising_movies
from store import queries

dash.register_page(__name__, path="/", order=0, title="INcDb: Internet Neurocinematics Database")


HEATMAP_TERM_CHOICES = (10, 20, 40, 60, 100)
HEATMAP_MOVIE_CHOICES = (10, 20, 40, 100)


def _heatmap_body(heat: dict[str, Any]) -> list:
    if not heat["terms"]:
        return [
            empty_state(
                "No components yet.",
                "The heatmap fills in once collections have been decoded.",
                links=(("Contribute data", "/contribute"),),
            )
        ]
    return [
        nav_graph(
            "heatmap",
            heatmap_figure(heat),
            heatmap_links(heat),
            description=f"Heatmap of the number of components per term (rows, {len(heat['terms'])}) and "
            f"movie (columns, {len(heat['movies'])}); the table below lists the counts, and "
            "every cell's page is reachable from the term and movie pages.",
        ),
        html.P(heatmap_note(heat), className="incdb-viewer-caption", id="heatmap-note"),
    ]


def _chooser(name: str, label: str, choices: tuple[int, ...], value: int) -> html.Div:
    return html.Div(
        [
            dbc.Label(label, html_for=f"heatmap-{name}", className="me-2 mb-0"),
            dcc.Dropdown(
                id=f"heatmap-{name}",
                options=[{"label": str(n), "value": n} for n in choices],
                value=value,
                clearable=False,
                searchable=False,
                style={"width": "6rem"},
            ),
        ],
        className="d-flex align-items-center me-3",
    )


def _synchronising() -> html.Section | None:
    """The films whose components synchronise their viewers most (median ISC); nothing before any ISC exists."""
    films = read(most_synchronising_movies, 5)
    if not films:
        return None
    return section(
        [
            "Most synchronising films",
            html.Small(" median inter-subject correlation of their components", className="text-muted"),
        ],
        synchronising_list(films),
    )


def layout(**_query: Any) -> html.Div:
    counts = read(queries.counts)
    heat = read(queries.heatmap)
    return html.Div(
        [
            html.Div(
                [
                    html.H1("Brain maps of people watching movies", className="incdb-hero-title"),
                    html.P(
                        "INcDb collects independent components recorded while people watch full-length movies and "
                        "decodes each one against term maps, so you can see which networks a film engages.",
                        className="lead",
                    ),
                    search_box("home", autofocus=False),
                ],
                className="incdb-hero",
            ),
            demo_notice(read(queries.demo_collection_count)),
            dbc.Row(
                [
                    dbc.Col(stat_card(counts["movies"], "movies", "/movies", "count-movies"), xs=6, md=3),
                    dbc.Col(
                        stat_card(counts["collections"], "collections", "/movies?sort=newest", "count-collections"),
                        xs=6,
                        md=3,
                    ),
                    dbc.Col(
                        stat_card(counts["components"], "components", "/movies?sort=components", "count-components"),
                        xs=6,
                        md=3,
                    ),
                    dbc.Col(stat_card(counts["terms"], "terms", "/terms", "count-terms"), xs=6, md=3),
                ],
                className="g-3 mb-4",
                id="counts",
            ),
            dbc.Row(
                [
                    dbc.Col(section("Recently added movies", recent_movie_list(read(queries.recent_movies, 5))), lg=6),
                    dbc.Col(section("Not sure where to start?", start_guide(heat)), lg=6),
                ],
                className="g-4 mb-2",
            ),
            _synchronising(),
            section(
                [
                    "Terms × movies",
                    html.Small(
                        " components per cell; click a cell to open its merged map",
                        className="text-muted incdb-section-note",
                    ),
                ],
                [
                    html.Div(
                        [
                            _chooser("terms", "Most used terms", HEATMAP_TERM_CHOICES, queries.DEFAULT_HEATMAP_TERMS),
                            _chooser(
                                "movies",
                                "Movies with most components",
                                HEATMAP_MOVIE_CHOICES,
                                queries.DEFAULT_HEATMAP_MOVIES,
                            ),
                        ],
                        className="d-flex flex-wrap mb-2",
                        id="heatmap-chooser",
                    ),
                    html.Div(_heatmap_body(heat), id="heatmap-body"),
                ],
                class_name="incdb-heatmap-section",
            ),
        ],
        className="incdb-home",
    )
