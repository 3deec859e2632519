"""One annotation label across movies: the components whose time courses follow it (q < 0.05), best first, and
the mean of their maps, a map of, say, "speech" made from time courses rather than from text.

A label is any text (``FORREST (V.O.)``, ``AC/DC``, ``フォレスト``, ``100%``), so every link to this page quotes all
of it (``dashboard.components.timeline.label_href``), and the page unquotes its path variable once: Dash pages
pass the browser's ``location.pathname``, still percent-encoded. The template's ``<label>`` matches across ``/``
(Dash matches it with ``.*``), so a label holding ``/`` opens its page whether the ``/`` is quoted or typed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import empty_state, page_header, plural, section
from dashboard.components.data import read
from dashboard.components.maps import MERGED_THRESHOLD, layer, map_viewer
from store import timeline

MAX_ROWS = 200


def path_label(label: str | None) -> str:
    """The label named by the page's path variable (as Dash pages pass it: percent-encoded), cut to 200
    characters (no label is longer: ``pipeline.temporal.events.MAX_LABEL_CHARS``)."""
    return unquote(label or "", errors="replace")[:200]


def title(label: str | None = None, **_: Any) -> str:
    label = path_label(label)
    return f"{label} · Labels · INcDb" if label else "Label · INcDb"


dash.register_page(__name__, path_template="/labels/<label>", order=7, title=title)


def label_url(label: str) -> str:
    return f"/files/labels/{quote(label, safe='')}.nii.gz"


def layout(label: str | None = None, **_query: Any) -> html.Div:
    label = path_label(label)
    rows = read(timeline.label_components, label)
    header = page_header(
        ["Label ", html.Span(label, className="incdb-title-muted")],
        f"{'at least ' if len(rows) >= timeline.MAX_LABEL_COMPONENTS else ''}"
        f"{plural(len(rows), 'component')} whose time course follows it (q < 0.05)",
        crumbs=(("Home", "/"), ("Movies", "/movies"), (label, None)),
    )
    if not rows:
        return html.Div(
            [
                header,
                empty_state(
                    "No component follows this label",
                    "No component's time course follows an annotation label of this "
                    "name with q < 0.05, or the label does not exist. Labels come from the movies' annotation sets.",
                    links=(("Movies", "/movies"),),
                ),
            ]
        )
    table = dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("Component", "Movie", "Collection", "Annotation set", "r", "q")])),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(dcc.Link("open", href=f"/components/{r['uuid']}")),
                            html.Td(dcc.Link(r["movie"], href=f"/movies/{r['movie_slug']}")),
                            html.Td(r["collection"]),
                            html.Td(r["annotation"]),
                            html.Td(f"{r['r']:+.3f}"),
                            html.Td(f"{r['q']:.3g}"),
                        ]
                    )
                    for r in rows[:MAX_ROWS]
                ]
            ),
        ],
        size="sm",
        hover=True,
        responsive=True,
        className="incdb-table",
        id="label-components",
    )
    return html.Div(
        [
            header,
            map_viewer(
                [
                    layer(
                        label_url(label),
                        f"{label}: mean of {plural(len(rows), 'component')}",
                        "label",
                        threshold=MERGED_THRESHOLD,
                    )
                ],
                "The voxelwise mean of the maps of the components listed below (zeros included).",
            ),
            section(
                [
                    "Components ",
                    html.A("JSON", href=f"/api/labels/{quote(label, safe='')}", className="incdb-section-link"),
                ],
                table,
            ),
        ]
    )
