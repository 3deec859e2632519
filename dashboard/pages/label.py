"""One annotation label across movies: the components whose time courses follow it (q < 0.05), best first, and
the mean of their maps, a map of, say, "speech" made from time courses rather than from text."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import empty_state, page_header, plural, section
from dashboard.components.data import read
from dashboard.components.maps import MERGED_THRESHOLD, layer, map_viewer
from store import timeline

MAX_ROWS = 200


def title(label: str | None = None, **_: Any) -> str:
    return f"{label} · Labels · INcDb" if label else "Label · INcDb"


dash.register_page(__name__, path_template="/labels/<label>", order=7, title=title)


def label_url(label: str) -> str:
    return f"/files/labels/{quote(label, safe='')}.nii.gz"


def layout(label: str | None = None, **_query: Any) -> html.Div:
    label = (label or "")[:200]
    rows = read(timeline.label_components, label)
    header = page_header(["Label ", html.Span(label, className="incdb-title-muted")],
                         f"{'at least ' if len(rows) >= timeline.MAX_LABEL_COMPONENTS else ''}"
                         f"{plural(len(rows), 'component')} whose time course follows it (q < 0.05)",
                         crumbs=(("Home", "/"), ("Movies", "/movies"), (label, None)))
    if not rows:
        return html.Div([header, empty_state(
            "No component follows this label", "No component's time course follows an annotation label of this "
            "name with q < 0.05, or the label does not exist. Labels come from the movies' annotation sets.",
            links=(("Movies", "/movies"),))])
    table = dbc.Table([
        html.Thead(html.Tr([html.Th(h) for h in ("Component", "Movie", "Collection", "Annotation set", "r", "q")])),
        html.Tbody([html.Tr([html.Td(dcc.Link("open", href=f"/components/{r['uuid']}")),
                             html.Td(dcc.Link(r["movie"], href=f"/movies/{r['movie_slug']}")),
                             html.Td(r["collection"]), html.Td(r["annotation"]), html.Td(f"{r['r']:+.3f}"),
                             html.Td(f"{r['q']:.3g}")]) for r in rows[:MAX_ROWS]]),
    ], size="sm", hover=True, responsive=True, className="incdb-table", id="label-components")
    return html.Div([
        header,
        map_viewer([layer(label_url(label), f"{label}: mean of {plural(len(rows), 'component')}", "label",
                          threshold=MERGED_THRESHOLD)],
                   "The voxelwise mean of the maps of the components listed below (zeros included)."),
        section(["Components ", html.A("JSON", href=f"/api/labels/{quote(label, safe='')}",
                                       className="incdb-section-link")], table),
    ])
