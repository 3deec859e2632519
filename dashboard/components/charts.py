"""Plotly figures: the term x movie heatmap and a component's decoding profile.

A clickable graph comes with a map from the clicked mark (its x and y labels) to the page it opens; one clientside
callback turns a click into a Dash pages navigation, so no server round trip sits between the click and the new
page. (Dash strips ``customdata`` and point numbers from a heatmap's ``clickData``, so labels are the key.)

Plotly draws labels, hover text and titles through its own HTML subset (``<a href>``, ``<b>``, ``<br>``, ...), so
every string that comes from users or files (movie titles, term names) goes into a figure through ``plot_text``:
a title ``<a href="https://evil.example/">Evil</a>`` is then shown as typed, not turned into a link.
"""
from __future__ import annotations

from typing import Any

import dash
import plotly.graph_objects as go
from dash import MATCH, Input, Output, State, dcc, html

from dashboard.components.common import fmt_r

GRAPH = "incdb-graph"
GRAPH_NAV = "incdb-graph-nav"
GRAPH_LINKS = "incdb-graph-links"
PROFILE_BARS = 20
POSITIVE = "#e4572e"
NEGATIVE = "#2e86de"
FONT = {"family": "Lato, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 14, "color": "#2c3e50"}
HEATMAP_SCALE = [[0.0, "#e3f6f1"], [0.35, "#8fdcc8"], [0.7, "#2fb69a"], [1.0, "#0b6e5c"]]


def plot_text(value: Any) -> str:
    """Text for a Plotly figure, shown literally: ``&``, ``<`` and ``>`` become entities, which Plotly turns back
    into the characters after it has looked for tags. The figure's marks and their click keys use this same text."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_key(x: Any, y: Any) -> str:
    """Key of a clicked mark in a graph's link map; ``x`` None for graphs keyed by the y label alone."""
    return str(y) if x is None else f"{x}\n{y}"


def nav_graph(name: str, figure: go.Figure, links: dict[str, str], by_y: bool = False,
              class_name: str = "") -> html.Div:
    """A graph whose marks open pages: ``links`` maps ``link_key(x, y)`` (or ``link_key(None, y)`` with
    ``by_y``) to an in-app path."""
    return html.Div([
        dcc.Location(id={"type": GRAPH_NAV, "graph": name}, refresh="callback-nav"),
        dcc.Store(id={"type": GRAPH_LINKS, "graph": name}, data={"by_y": by_y, "links": links}),
        dcc.Graph(id={"type": GRAPH, "graph": name}, figure=figure, className=f"incdb-graph {class_name}".strip(),
                  config={"displayModeBar": False, "responsive": True}),
    ], id=f"graph-{name}")


dash.clientside_callback(
    """
    function(click, config) {
        const point = click && click.points && click.points[0];
        if (!point || !config) { return window.dash_clientside.no_update; }
        const key = config.by_y ? String(point.y) : point.x + "\\n" + point.y;
        const href = config.links[key];
        return href ? href : window.dash_clientside.no_update;
    }
    """,
    Output({"type": GRAPH_NAV, "graph": MATCH}, "href"),
    Input({"type": GRAPH, "graph": MATCH}, "clickData"),
    State({"type": GRAPH_LINKS, "graph": MATCH}, "data"),
    prevent_initial_call=True,
)


def heatmap_figure(data: dict[str, Any]) -> go.Figure:
    """Terms (rows) x movies (columns) of ``store.queries.heatmap``; colour and label = number of components, hover
    adds the mean r."""
    rows = range(len(data["terms"]))
    z: list[list[int | None]] = []
    custom: list[list[list[str]]] = []
    for i in rows:
        z.append([n or None for n in data["count"][i]])  # empty cells stay blank instead of "0"
        custom.append([[plot_text(fmt_r(data["mean_r"][i][j])), plot_text(n)]
                       for j, n in enumerate(data["count"][i])])
    figure = go.Figure(go.Heatmap(
        z=z, x=[plot_text(m) for m in data["movies"]], y=[plot_text(data["terms"][i]) for i in rows],
        customdata=custom, colorscale=HEATMAP_SCALE, zauto=False, zmin=0,
        zmax=max([n for row in z for n in row if n] or [1]), xgap=3, ygap=3,
        hoverongaps=False, texttemplate="%{z}", textfont={"size": 13},
        colorbar={"title": {"text": "components", "side": "right"}, "thickness": 12, "outlinewidth": 0},
        hovertemplate="<b>%{y}</b> in <b>%{x}</b><br>%{customdata[1]} components, mean r %{customdata[0]}"
                      "<br>click to open the merged map<extra></extra>",
    ))
    figure.update_layout(
        height=max(260, 110 + 30 * len(rows)), margin={"l": 10, "r": 10, "t": 10, "b": 10}, font=FONT,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#f6f8fa", hoverlabel={"font_size": 14},
    )
    # Categories even when every label looks like a number (a film called "1917"): labels are the click keys.
    figure.update_xaxes(type="category", side="top", tickangle=0, automargin=True, showgrid=False, fixedrange=True)
    figure.update_yaxes(type="category", autorange="reversed", automargin=True, showgrid=False, fixedrange=True)
    return figure


def heatmap_note(data: dict[str, Any]) -> str | None:
    """Which part of the catalogue the heatmap shows, when it is not all of it."""
    shown_terms, shown_movies = len(data["terms"]), len(data["movies"])
    if shown_terms >= data.get("n_terms", 0) and shown_movies >= data.get("n_movies", 0):
        return None
    return (f"Showing the {shown_terms} of {data['n_terms']} terms and the {shown_movies} of {data['n_movies']} "
            "movies with the most components.")


def heatmap_links(data: dict[str, Any]) -> dict[str, str]:
    """Movie x term page of every non-empty cell shown."""
    return {link_key(plot_text(movie), plot_text(data["terms"][i])):
            f"/movies/{data['movie_slugs'][j]}/{data['term_slugs'][i]}"
            for i in range(len(data["terms"])) for j, movie in enumerate(data["movies"]) if data["count"][i][j]}


def profile_bars(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> list[dict[str, Any]]:
    """The ``n`` strongest terms by |r| (strong negative evidence is evidence too), best r on top."""
    strongest = sorted(profile, key=lambda d: -abs(d["r"]))[:n]
    return sorted(strongest, key=lambda d: d["r"])  # plotly draws the first bar at the bottom


def decoding_figure(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> go.Figure:
    bars = profile_bars(profile, n)
    figure = go.Figure(go.Bar(
        x=[d["r"] for d in bars], y=[plot_text(d["term"]) for d in bars], orientation="h",
        marker={"color": [POSITIVE if d["r"] >= 0 else NEGATIVE for d in bars]},
        hovertemplate="<b>%{y}</b>: r = %{x:.3f}<extra></extra>",
    ))
    figure.update_layout(
        height=max(220, 60 + 24 * len(bars)), margin={"l": 10, "r": 20, "t": 10, "b": 40}, font=FONT, bargap=0.25,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", showlegend=False,
    )
    figure.update_xaxes(title_text="Pearson r with the term map", zeroline=True, zerolinecolor="#95a5a6",
                        zerolinewidth=1.5, gridcolor="#ecf0f1", fixedrange=True)
    figure.update_yaxes(type="category", automargin=True, fixedrange=True)
    return figure


def profile_links(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> dict[str, str]:
    return {link_key(None, plot_text(d["term"])): f"/terms/{d['slug']}" for d in profile_bars(profile, n)
            if d.get("slug")}
