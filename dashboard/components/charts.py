"""Plotly figures: the term x movie heatmap and a component's decoding profile.

A clickable graph comes with a map from the clicked mark (its x and y labels) to the page it opens; one clientside
callback turns a click into a Dash pages navigation, so no server round trip sits between the click and the new
page. (Dash strips ``customdata`` and point numbers from a heatmap's ``clickData``, so labels are the key.)

Plotly draws labels, hover text and titles through its own HTML subset (``<a href>``, ``<b>``, ``<br>``, ...), so
every string that comes from users or files (movie titles, term names) goes into a figure through ``plot_text``:
a title ``<a href="https://evil.example/">Evil</a>`` is then shown as typed, not turned into a link.

Every graph is a ``<figure>`` with a text alternative (WCAG 1.1.1): a visually hidden caption that says what the
chart shows, and a "Show as table" disclosure next to it with the numbers it draws, built from the figure's own
traces (``figure_table``), so the table can never disagree with the chart.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

from dashboard.components.common import fmt_r, html_table

GRAPH = "incdb-graph"
GRAPH_NAV = "incdb-graph-nav"
GRAPH_LINKS = "incdb-graph-links"
PROFILE_BARS = 20
TABLE_ROWS = 200  # a figure's table shows at most this many rows and columns of values; the downloads have all
TABLE_COLUMNS = 40
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


def _shown(value: Any) -> str:
    """A figure's label as the text it shows (``plot_text`` undone: the table is HTML text, not Plotly markup)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _axis_title(figure: go.Figure, axis: str, default: str) -> str:
    title = getattr(getattr(figure.layout, axis, None), "title", None)
    return _shown(title.text) if title is not None and title.text else default


def _values(values: Any) -> list:
    return [] if values is None else list(values)


def _heatmap_table(trace: Any) -> tuple[list[str], list[list[str]]]:
    xs, ys, z = _values(trace.x), _values(trace.y), [list(row) for row in _values(trace.z)]
    xs = xs or list(range(len(z[0]) if z else 0))
    header = [""] + [_shown(x) for x in xs[:TABLE_COLUMNS]]
    rows = [
        [_shown(y)] + ["" if v is None else _shown(v) for v in row[:TABLE_COLUMNS]]
        for y, row in zip(ys or range(len(z)), z)
    ]
    return header, rows


def figure_table(figure: go.Figure) -> tuple[list[str], list[list[str]]]:
    """The values a figure draws as ``(header, rows)``: a heatmap's matrix (rows = y, columns = x), else one row
    per mark with the trace's name (when it has one), its category and its value. At most ``TABLE_ROWS`` rows."""
    traces = list(figure.data)
    if traces and all(t.type == "heatmap" for t in traces[:1]):
        header, rows = _heatmap_table(traces[0])
        return header, rows[:TABLE_ROWS]
    # A horizontal bar chart's categories are on y: the category first, then the value.
    horizontal = bool(traces) and getattr(traces[0], "orientation", None) == "h"
    x_title, y_title = _axis_title(figure, "xaxis", "x"), _axis_title(figure, "yaxis", "y")
    named = any(t.name for t in traces)
    rows: list[list[str]] = []
    for t in traces:
        if t.type not in ("bar", "scatter") or getattr(t, "fill", None) == "toself":  # bands: drawn around a line
            continue
        for x, y in zip(_values(t.x), _values(t.y)):
            pair = [_shown(y), _shown(x)] if horizontal else [_shown(x), _shown(y)]
            rows.append(([_shown(t.name or "")] if named else []) + pair)
        if len(rows) >= TABLE_ROWS:
            break
    header = (["Series"] if named else []) + ([y_title, x_title] if horizontal else [x_title, y_title])
    if horizontal:
        rows.reverse()  # Plotly draws the first bar at the bottom: the table reads top down, as the chart does
    return header, rows[:TABLE_ROWS]


def table_disclosure(figure: go.Figure, summary: str = "Show as table") -> html.Details:
    """A closed "Show as table" disclosure with ``figure_table``'s rows."""
    header, rows = figure_table(figure)
    return html.Details(
        [
            html.Summary(summary),
            html.Div(html_table(header, rows, row_headers=True), className="incdb-figure-table-scroll"),
        ],
        className="incdb-figure-table",
    )


def accessible_graph(graph: dcc.Graph, figure: go.Figure, description: str, table: bool = True) -> html.Figure:
    """``graph`` as a ``<figure>`` named by ``description`` (a visually hidden caption), with the table of what it
    draws one click away."""
    return html.Figure(
        [
            graph,
            html.Figcaption(description, className="visually-hidden"),
            table_disclosure(figure) if table and figure.data else None,
        ],
        className="incdb-figure",
    )


def describe_figure(figure: go.Figure) -> str:
    """A default description: the kind of chart and its size, from its traces and axis titles."""
    traces = list(figure.data)
    if not traces:
        return "Empty chart."
    first = traces[0]
    if first.type == "heatmap":
        n_y, n_x = len(_values(first.y) or _values(first.z)), len(_values(first.x))
        return f"Heatmap of {n_y} rows by {n_x} columns; the table below lists its values."
    n = sum(len(_values(t.y)) for t in traces if t.type in ("bar", "scatter"))
    kind = "Bar chart" if first.type == "bar" else "Line chart"
    return (
        f"{kind} of {n} values, {_axis_title(figure, 'xaxis', 'x')} against "
        f"{_axis_title(figure, 'yaxis', 'y')}; the table below lists them."
    )


def nav_graph(
    name: str,
    figure: go.Figure,
    links: dict[str, str],
    by_y: bool = False,
    class_name: str = "",
    description: str | None = None,
) -> html.Div:
    """A graph whose marks open pages: ``links`` maps ``link_key(x, y)`` (or ``link_key(None, y)`` with
    ``by_y``) to an in-app path. ``description``: the text alternative (default: ``describe_figure``); the pages
    the marks open are linked from the page's tables too, so the keyboard reaches them without the chart."""
    graph = dcc.Graph(
        id={"type": GRAPH, "graph": name},
        figure=figure,
        className=f"incdb-graph {class_name}".strip(),
        config={"displayModeBar": False, "responsive": True},
    )
    return html.Div(
        [
            dcc.Location(id={"type": GRAPH_NAV, "graph": name}, refresh="callback-nav"),
            dcc.Store(id={"type": GRAPH_LINKS, "graph": name}, data={"by_y": by_y, "links": links}),
            accessible_graph(graph, figure, description or describe_figure(figure)),
        ],
        id=f"graph-{name}",
    )


def heatmap_figure(data: dict[str, Any]) -> go.Figure:
    """Terms (rows) x movies (columns) of ``store.queries.heatmap``; colour and label = number of components, hover
    adds the mean r."""
    rows = range(len(data["terms"]))
    z: list[list[int | None]] = []
    custom: list[list[list[str]]] = []
    for i in rows:
        z.append([n or None for n in data["count"][i]])  # empty cells stay blank instead of "0"
        custom.append([[plot_text(fmt_r(data["mean_r"][i][j])), plot_text(n)] for j, n in enumerate(data["count"][i])])
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[plot_text(m) for m in data["movies"]],
            y=[plot_text(data["terms"][i]) for i in rows],
            customdata=custom,
            colorscale=HEATMAP_SCALE,
            zauto=False,
            zmin=0,
            zmax=max([n for row in z for n in row if n] or [1]),
            xgap=3,
            ygap=3,
            hoverongaps=False,
            texttemplate="%{z}",
            textfont={"size": 13},
            colorbar={"title": {"text": "components", "side": "right"}, "thickness": 12, "outlinewidth": 0},
            hovertemplate="<b>%{y}</b> in <b>%{x}</b><br>%{customdata[1]} components, mean r %{customdata[0]}"
            "<br>click to open the merged map<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(260, 110 + 30 * len(rows)),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        font=FONT,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="#f6f8fa",
        hoverlabel={"font_size": 14},
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
    return (
        f"Showing the {shown_terms} of {data['n_terms']} terms and the {shown_movies} of {data['n_movies']} "
        "movies with the most components."
    )


def heatmap_links(data: dict[str, Any]) -> dict[str, str]:
    """Movie x term page of every non-empty cell shown."""
    return {
        link_key(
            plot_text(movie), plot_text(data["terms"][i])
        ): f"/movies/{data['movie_slugs'][j]}/{data['term_slugs'][i]}"
        for i in range(len(data["terms"]))
        for j, movie in enumerate(data["movies"])
        if data["count"][i][j]
    }


def profile_bars(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> list[dict[str, Any]]:
    """The ``n`` strongest terms by |r| (strong negative evidence is evidence too), best r on top."""
    strongest = sorted(profile, key=lambda d: -abs(d["r"]))[:n]
    return sorted(strongest, key=lambda d: d["r"])  # plotly draws the first bar at the bottom


def decoding_figure(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> go.Figure:
    bars = profile_bars(profile, n)
    figure = go.Figure(
        go.Bar(
            x=[d["r"] for d in bars],
            y=[plot_text(d["term"]) for d in bars],
            orientation="h",
            marker={"color": [POSITIVE if d["r"] >= 0 else NEGATIVE for d in bars]},
            hovertemplate="<b>%{y}</b>: r = %{x:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(220, 60 + 24 * len(bars)),
        margin={"l": 10, "r": 20, "t": 10, "b": 40},
        font=FONT,
        bargap=0.25,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        showlegend=False,
    )
    figure.update_xaxes(
        title_text="Pearson r with the term map",
        zeroline=True,
        zerolinecolor="#95a5a6",
        zerolinewidth=1.5,
        gridcolor="#ecf0f1",
        fixedrange=True,
    )
    figure.update_yaxes(type="category", automargin=True, fixedrange=True)
    return figure


def profile_links(profile: list[dict[str, Any]], n: int = PROFILE_BARS) -> dict[str, str]:
    return {
        link_key(None, plot_text(d["term"])): f"/terms/{d['slug']}" for d in profile_bars(profile, n) if d.get("slug")
    }
