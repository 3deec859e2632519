"""Synchrony on the pages: a component's ISC section, a collection's ISFC heatmap and the home page's most
synchronising films. Figures are pure functions of ``pipeline.synchrony.reads``' answers; every name from a file or
a person is escaped (``plot_text``) before it reaches Plotly. The two sections are lazy (drawn when they come into
view); the heatmap's clicks are handled in ``callbacks/synchrony.py``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

from dashboard.components.charts import FONT, accessible_graph, plot_text
from dashboard.components.common import Child, empty_state, fmt_r, plural
from dashboard.components.data import read
from dashboard.components.lazy import lazy_section, register_loader
from pipeline.synchrony import reads
from store import queries

ISFC_GRAPH = "incdb-isfc-graph"
ISFC_PAIR = "incdb-isfc-pair"
GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    return {
        "font": FONT,
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 10, "b": 45},
        "plot_bgcolor": "white",
        "showlegend": False,
        **extra,
    }


# --- a component's ISC ----------------------------------------------------------------------------------------


def strip_figure(found: Mapping[str, Any]) -> go.Figure:
    """Each subject's leave-one-out r as a dot on one line, with the Fisher-z mean as a vertical line."""
    values = [(i, r) for i, r in enumerate(found["subjects"], start=1) if r is not None]
    rng = np.random.default_rng(0)  # a fixed jitter: the page draws the same picture each time
    figure = go.Figure(
        go.Scatter(
            x=[r for _, r in values],
            y=list(rng.uniform(-0.3, 0.3, len(values))),
            mode="markers",
            marker={"size": 9, "color": "#2c3e50", "opacity": 0.75},
            text=[f"subject {i}" for i, _ in values],
            hovertemplate="%{text}: r = %{x:.3f}<extra></extra>",
        )
    )
    if found["isc"] is not None:
        figure.add_vline(x=found["isc"], line={"color": "#e74c3c", "width": 2})
    figure.update_layout(
        **_layout(130),
        xaxis={"title": "leave-one-out r per subject", "range": [-1, 1], "zeroline": True},
        yaxis={"visible": False, "range": [-1, 1]},
    )
    return figure


def windowed_figure(found: Mapping[str, Any]) -> go.Figure:
    """Windowed leave-one-out ISC over movie time (minutes); the line breaks between runs."""
    times = np.asarray(found["movie_time_s"], dtype=np.float64)
    values = np.asarray([np.nan if v is None else v for v in found["windowed"]], dtype=np.float64)
    if times.size > 1:
        steps = np.diff(times)
        typical = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0
        breaks = np.flatnonzero((steps <= 0) | (steps > 2 * typical)) + 1
        times = np.insert(times, breaks, np.nan)
        values = np.insert(values, breaks, np.nan)
    minutes = [None if math.isnan(t) else t / 60 for t in times]
    figure = go.Figure(
        go.Scatter(
            x=minutes,
            y=[None if math.isnan(v) else v for v in values],
            mode="lines",
            line={"color": "#18bc9c", "width": 1.5},
            hovertemplate="%{x:.1f} min: ISC %{y:.3f}<extra></extra>",
            connectgaps=False,
        )
    )
    figure.update_layout(
        **_layout(220),
        xaxis={"title": "movie time (min)"},
        yaxis={"title": f"ISC ({found['window_s']:g} s windows)", "zeroline": True},
    )
    return figure


def isc_panel(found: Mapping[str, Any]) -> Child:
    """The body of a component's ISC section from ``reads.component_isc``."""
    csv = html.A("download CSV", href=f"/api/components/{found['uuid']}/isc.csv", download="", className="small")
    note = dbc.Alert(found["note"], color="light", className="small py-2") if found["note"] else None
    if found["isc"] is None and found["isc_pairwise"] is None:
        return html.Div([note or empty_state("No ISC for this component."), csv], id="component-isc")
    facts = [
        ("Leave-one-out ISC", fmt_r(found["isc"])),
        ("Pairwise ISC", fmt_r(found["isc_pairwise"])),
        ("p", fmt_p(found["p"])),
        ("q", fmt_p(found["q"])),
        ("Subjects", str(found["n_subjects"])),
        ("Null", f"{found['n_resamples']:,} phase-randomised resamples per run"),
    ]
    children: list[Any] = [
        html.Dl(
            [item for name, value in facts for item in (html.Dt(name), html.Dd(value))],
            className="incdb-facts incdb-isc-facts",
        ),
        note,
    ]
    if any(r is not None for r in found["subjects"]):
        figure = strip_figure(found)
        children.append(
            accessible_graph(
                dcc.Graph(figure=figure, config=GRAPH_CONFIG, className="incdb-graph"),
                figure,
                f"Strip plot of the {plural(len(found['subjects']), 'subject')}' leave-one-out r; the red line is "
                "their Fisher-z mean.",
            )
        )
    if found["windowed"]:
        figure = windowed_figure(found)
        children.append(
            accessible_graph(
                dcc.Graph(figure=figure, config=GRAPH_CONFIG, className="incdb-graph"),
                figure,
                f"Line chart of the leave-one-out ISC in {found['window_s']:g} s windows over movie time "
                f"({len(found['windowed']):,} windows); the CSV lists every value.",
                table=False,
            )
        )
    children.append(csv)
    return html.Div(children, id="component-isc")


def _load_component_isc(args: Mapping[str, Any]) -> Child:
    uuid = args.get("uuid")
    found = read(reads.component_isc, uuid) if isinstance(uuid, str) and 0 < len(uuid) <= 64 else None
    if found is None:
        return empty_state("This component cannot be shown.")
    return isc_panel(found)


def _has_course(session, user, uuid: str) -> bool:
    comp = queries.get_visible_component(session, user, uuid)
    return comp is not None and comp.timecourse_id is not None


def component_isc_section(uuid: str) -> html.Div | None:
    """The component page's lazy ISC section; None for a component without time courses (nothing to say)."""
    if not read(_has_course, uuid):
        return None
    return lazy_section("component-isc", "Synchrony across viewers (ISC)", {"uuid": uuid})


# --- a collection's ISFC --------------------------------------------------------------------------------------


def cluster_order(matrix: np.ndarray) -> list[int]:
    """Rows in the order of an average-linkage clustering on 1 - r (similar components side by side)."""
    n = matrix.shape[0]
    if n < 3:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    distance = 1 - np.nan_to_num(matrix, nan=0.0)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0)
    return [int(i) for i in leaves_list(linkage(squareform(np.clip(distance, 0, 2), checks=False), "average"))]


def isfc_figure(found: Mapping[str, Any]) -> go.Figure:
    """The ISFC matrix, clustered, with best terms as labels; a cell's customdata names its two components
    (``"row-uuid column-uuid"``)."""
    matrix = np.asarray([[np.nan if v is None else v for v in row] for row in found["matrix"]], dtype=np.float64)
    order = cluster_order(matrix)
    names = [plot_text(f"{i + 1}. {found['best_terms'][i] or 'component'}") for i in range(len(found["components"]))]
    labels = [names[i] for i in order]
    z = [[None if math.isnan(matrix[i, j]) else float(matrix[i, j]) for j in order] for i in order]
    # One text per cell ("uuid uuid"): plotly's heatmap leaves a cell's customdata out of its click event when the
    # cell holds a list, so the pair travels as a string.
    custom = [[f"{found['components'][i]} {found['components'][j]}" for j in order] for i in order]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            customdata=custom,
            colorscale="RdBu",
            reversescale=True,
            zmid=0,
            colorbar={"title": "r"},
            hovertemplate="%{y} × %{x}: r = %{z:.3f}<extra></extra>",
        )
    )
    size = max(320, min(900, 18 * len(labels) + 140))
    figure.update_layout(
        **_layout(size, margin={"l": 160, "r": 20, "t": 10, "b": 140}),
        xaxis={"tickangle": -60, "automargin": True},
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return figure


def isfc_panel(found: Mapping[str, Any]) -> Child:
    """The body of a collection's ISFC section from ``reads.collection_isfc``."""
    if not found["matrix"]:
        return empty_state("No ISFC yet.", found["note"] or None)
    figure = isfc_figure(found)
    key = "isfc"
    return html.Div(
        [
            accessible_graph(
                dcc.Graph(
                    id={"type": ISFC_GRAPH, "key": key},
                    figure=figure,
                    config=GRAPH_CONFIG,
                    className="incdb-graph",
                ),
                figure,
                f"Heatmap of the inter-subject functional correlation between the collection's "
                f"{plural(len(found['components']), 'component')}, clustered; the CSV lists every value.",
                table=False,
            ),
            html.Div(
                html.P("Click a cell to open its two components.", className="small text-muted"),
                id={"type": ISFC_PAIR, "key": key},
                **{"aria-live": "polite"},
            ),
            html.A(
                "download CSV", href=f"/api/collections/{found['collection']}/isfc.csv", download="", className="small"
            ),
        ],
        id="collection-isfc",
    )


def pair_links(uuid_a: str, uuid_b: str) -> Child:
    """Links to the two components of a clicked ISFC cell."""
    return html.P(
        [
            "Open ",
            html.A("the row's component", href=f"/components/{uuid_a}", target="_blank", rel="noopener"),
            " and ",
            html.A("the column's component", href=f"/components/{uuid_b}", target="_blank", rel="noopener"),
            ".",
        ],
        className="small",
    )


def _load_isfc(args: Mapping[str, Any]) -> Child:
    slug = args.get("slug")
    found = read(reads.collection_isfc, slug) if isinstance(slug, str) and 0 < len(slug) <= 255 else None
    if found is None:
        return empty_state("This collection cannot be shown.")
    return isfc_panel(found)


def isfc_section(slug: str) -> html.Div:
    """A collection's lazy ISFC section."""
    return lazy_section("collection-isfc", "Networks that move together (ISFC)", {"slug": slug})


register_loader("component-isc", _load_component_isc)
register_loader("collection-isfc", _load_isfc)


# --- home -----------------------------------------------------------------------------------------------------


def synchronising_list(items: list[dict[str, Any]]) -> Child:
    """The home page's most synchronising films: median ISC of their components."""
    if not items:
        return empty_state("No ISC yet.", "Films appear here once a collection with two or more subjects is processed.")
    return html.Ol(
        [
            html.Li(
                [
                    html.A(item["movie"], href=f"/movies/{item['movie_slug']}"),
                    html.Span(
                        f" median ISC {fmt_r(item['median_isc'])} over {plural(item['n_components'], 'component')}",
                        className="text-muted small",
                    ),
                ]
            )
            for item in items
        ],
        className="incdb-synchronising",
        id="most-synchronising",
    )
