"""The "Similar components" section: the catalogue's components that correlate best with a map (exact spatial r
over the brain mask, ``pipeline.decoding.similar``), each linking to its page.

On a component's page the list is filled by a callback once the section comes into view (so the page does not
wait for the search), and a switch keeps only other collections. The visitor decoder's result page shows a list it has
already, through :func:`similar_table`.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.common import Child, empty_state, fmt_r, link, row_badges, section
from dashboard.components.lazy import watch
from dashboard.components.tables import Column, data_table
from pipeline.decoding import similar
from store import queries

SHOWN = 20
OWN_UUID = "similar-uuid"
OTHERS_ONLY = "similar-others-only"
BODY = "similar-body"
LAZY_KEY = "similar"


def similar_table(items: list[dict[str, Any]], table_id: str = "similar-table") -> Child:
    """Similar components as a table: component (linked), movie, collection, best term and r."""
    if not items:
        return empty_state("No similar component.", "Nothing you can see in the catalogue correlates with this map.")
    columns = [
        Column(
            "Component",
            lambda c: link(c.get("best_term") or "component", f"/components/{c['uuid']}", stretched=True),
            "incdb-col-main",
        ),
        Column("Movie", lambda c: c["movie"]),
        Column("Collection", lambda c: [c["collection"], *row_badges(c)]),
        Column("Best term", lambda c: c.get("best_term") or "—"),
        Column("r", lambda c: fmt_r(c["r"]), "text-end incdb-num"),
    ]
    return data_table(columns, items, table_id_=table_id)


def similar_section(uuid: str) -> html.Div:
    """The section of a component's page; its list comes from ``callbacks.components.similar`` once the section has
    come into view (a lazy section, ``dashboard.components.lazy.watch``)."""
    return watch(
        LAZY_KEY,
        section(
            [
                "Similar components ",
                html.Span("spatial r over the brain mask, across movies", className="incdb-section-link"),
            ],
            [
                dcc.Store(id=OWN_UUID, data=uuid),
                dbc.Switch(id=OTHERS_ONLY, label="Only other collections", value=False, className="mb-2"),
                dcc.Loading(html.Div(html.P("Loading…", className="text-muted"), id=BODY), type="dot"),
            ],
        ),
    )


def _found(session, user, uuid: str, others_only: bool) -> list[dict[str, Any]] | None:
    comp = queries.get_visible_component(session, user, uuid)
    if comp is None:
        return []
    return similar.similar_to_component(session, user, comp, SHOWN, other_collections_only=others_only)
