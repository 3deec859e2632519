"""A collection's description and metadata, grouped as in the upload form (``pipeline.curation.metadata.GROUPS``)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.common import Child, fmt_date, plural, row_badges
from pipeline.curation.metadata import GROUPS, Field

LICENSE_LINKS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
}


def format_value(f: Field, value: Any) -> str:
    if f.kind == "bool":
        return "yes" if value else "no"
    if f.kind in ("number", "integer") and isinstance(value, int | float):
        text = f"{value:g}"
        return f"{text} {f.unit}" if f.unit else text
    return str(value)


def metadata_groups(metadata: dict[str, dict[str, Any]]) -> list[Child]:
    """One definition list per group that has values; a note when nothing was filled in."""
    blocks = []
    for group, (label, fields) in GROUPS.items():
        values = (metadata or {}).get(group) or {}
        items = []
        for f in fields:
            if values.get(f.name) in (None, ""):
                continue
            items += [html.Dt(f.label), html.Dd(format_value(f, values[f.name]))]
        if items:
            blocks.append(
                html.Div([html.H4(label, className="incdb-meta-group"), html.Dl(items)], className="incdb-meta-block")
            )
    return blocks or [html.P("No acquisition or participant details were given.", className="text-muted")]


def _external(text: str, href: str) -> html.A:
    return html.A(text, href=href, target="_blank", rel="noopener noreferrer")


def collection_card(c: dict[str, Any]) -> dbc.Card:
    facts: list[Child] = []

    def fact(label: str, value: Child) -> None:
        facts.extend([html.Dt(label), html.Dd(value)])

    fact("Components", f"{c['n_components']:,}")
    fact("Contributed by", c.get("owner") or "–")
    if c.get("contributors"):
        fact("Contributors", c["contributors"])
    license_ = c.get("license") or "CC0-1.0"
    fact("License", _external(license_, LICENSE_LINKS[license_]) if license_ in LICENSE_LINKS else license_)
    if c.get("dataset_url"):
        fact("Dataset", _external(c["dataset_url"], c["dataset_url"]))
    if c.get("doi"):
        doi = c["doi"].removeprefix("https://doi.org/")
        fact("Paper", _external(f"doi:{doi}", f"https://doi.org/{doi}"))
    fact("Added", fmt_date(c.get("created")))
    download = (
        html.A(
            ["Download all maps (.zip)"],
            href=f"/collections/{c['slug']}/maps.zip",
            className="btn btn-outline-primary btn-sm",
            download="",
        )
        if c["n_components"]
        else None
    )
    return dbc.Card(
        [
            dbc.CardHeader(
                html.Div(
                    [html.H3([c["name"], *row_badges(c)], className="incdb-card-title"), download],
                    className="incdb-card-header-row",
                )
            ),
            dbc.CardBody(
                [
                    html.P(c["description"], className="incdb-collection-description")
                    if c.get("description")
                    else None,
                    dbc.Row(
                        [
                            dbc.Col(html.Dl(facts, className="incdb-facts"), md=4),
                            dbc.Col(html.Div(metadata_groups(c.get("metadata") or {}), className="incdb-meta"), md=8),
                        ],
                        className="g-4",
                    ),
                ]
            ),
        ],
        className="incdb-collection mb-4",
        id=f"collection-{c['slug']}",
    )


def collection_list(collections: list[dict[str, Any]]) -> Child:
    if not collections:
        return html.P("No collections you can see.", className="text-muted")
    return html.Div(
        [html.P(plural(len(collections), "collection") + " of this movie.", className="incdb-table-summary")]
        + [collection_card(c) for c in collections]
    )
