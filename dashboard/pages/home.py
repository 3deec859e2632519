"""Home: search, counts, newest movies, where to start, and the term x movie heatmap."""
from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.charts import heatmap_figure, heatmap_links, heatmap_note, nav_graph
from dashboard.components.common import demo_notice, empty_state, section, stat_card
from dashboard.components.data import read
from dashboard.components.home import recent_movie_list, start_guide
from dashboard.components.search import search_box
from store import queries

dash.register_page(__name__, path="/", order=0, title="INcDb: Internet Neurocinematics Database")


def layout(**_query: Any) -> html.Div:
    counts = read(queries.counts)
    heat = read(queries.heatmap)
    return html.Div([
        html.Div([
            html.H1("Brain maps of people watching movies", className="incdb-hero-title"),
            html.P("INcDb collects independent components recorded while people watch full-length movies and "
                   "decodes each one against term maps, so you can see which networks a film engages.",
                   className="lead"),
            search_box("home", autofocus=False),
        ], className="incdb-hero"),
        demo_notice(read(queries.demo_collection_count)),
        dbc.Row([
            dbc.Col(stat_card(counts["movies"], "movies", "/movies", "count-movies"), xs=6, md=3),
            dbc.Col(stat_card(counts["collections"], "collections", "/movies?sort=newest", "count-collections"),
                    xs=6, md=3),
            dbc.Col(stat_card(counts["components"], "components", "/movies?sort=components", "count-components"),
                    xs=6, md=3),
            dbc.Col(stat_card(counts["terms"], "terms", "/terms", "count-terms"), xs=6, md=3),
        ], className="g-3 mb-4", id="counts"),
        dbc.Row([
            dbc.Col(section("Recently added movies", recent_movie_list(read(queries.recent_movies, 5))), lg=6),
            dbc.Col(section("Not sure where to start?", start_guide(heat)), lg=6),
        ], className="g-4 mb-2"),
        section(["Terms × movies", html.Small(" components per cell; click a cell to open its merged map",
                                              className="text-muted incdb-section-note")],
                [nav_graph("heatmap", heatmap_figure(heat), heatmap_links(heat)),
                 html.P(heatmap_note(heat), className="incdb-viewer-caption")] if heat["terms"] else empty_state(
                    "No components yet.", "The heatmap fills in once collections have been decoded.",
                    links=(("Contribute data", "/contribute"),)),
                class_name="incdb-heatmap-section"),
    ], className="incdb-home")
