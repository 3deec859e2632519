"""One collection: who contributed it and under which licence, its timing, its components with their ISC, and the
clustered ISFC heatmap of its components (a lazy section, ``dashboard.components.synchrony``).

A collection the viewer may not see (another curator's private one) is a not-found page, as in the API."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html
from sqlalchemy import select

from dashboard.components.common import Child, fmt_date, link, not_found, page_header, row_badges, section
from dashboard.components.data import read
from dashboard.components.metadata import LICENSE_LINKS, metadata_groups
from dashboard.components.synchrony import isfc_section
from dashboard.components.tables import paged_table
from pipeline.synchrony.jobs import MIN_SUBJECTS, ONE_SUBJECT_NOTE
from pipeline.temporal.timing import TimeCourseError, Timing
from store import queries
from store.models import CollectionSynchrony

MAX_SLUG = 255


def title(slug: str | None = None, **_: Any) -> str:
    found = read(queries.get_visible_collection, slug[:MAX_SLUG]) if slug else None
    return f"{found.name} · Collections · INcDb" if found else "Collection not found · INcDb"


dash.register_page(__name__, path_template="/collections/<slug>", order=7, title=title)


def _timing(stored: Any) -> tuple[Timing | None, str]:
    """The collection's timing, or None with the reason it cannot be read."""
    if not stored:
        return None, "No timing was given, so the components have no movie time and no ISC."
    try:
        return Timing.from_dict(stored), ""
    except TimeCourseError as exc:
        return None, f"The stored timing cannot be read: {exc}"


def isc_note(timing: Timing | None, timing_note: str, summary: CollectionSynchrony | None) -> str:
    """Why the collection's components have no ISC, or "" when they have one."""
    if timing is None:
        return timing_note
    if timing.subjects < MIN_SUBJECTS:
        return ONE_SUBJECT_NOTE
    if summary is None:
        return "ISC has not been computed for this collection yet."
    if summary.median_isc is None:
        return summary.note or "No component of this collection has a leave-one-out ISC."
    return ""


def collection_page_data(session, user, slug: str) -> dict[str, Any] | None:
    """What the page shows of a collection the viewer may see, or None."""
    collection = queries.get_visible_collection(session, user, slug)
    if collection is None:
        return None
    out = queries.collection_dict(session, collection)
    timing, timing_note = _timing(collection.timing)
    summary = session.scalar(select(CollectionSynchrony).where(CollectionSynchrony.collection_id == collection.id))
    out["timing"] = timing
    out["isc_note"] = isc_note(timing, timing_note, summary)
    out["median_isc"] = summary.median_isc if summary is not None else None
    return out


def _external(text: str, href: str) -> html.A:
    return html.A(text, href=href, target="_blank", rel="noopener noreferrer")


def _safe_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def _facts(c: dict[str, Any]) -> html.Dl:
    facts: list[Child] = []

    def fact(label: str, value: Child) -> None:
        facts.extend([html.Dt(label), html.Dd(value)])

    fact("Movie", link(c["movie"], f"/movies/{c['movie_slug']}"))
    fact("Contributed by", c["owner"] or "–")
    if c.get("contributors"):
        fact("Contributors", c["contributors"])
    license_ = c.get("license") or "CC0-1.0"
    fact("Licence", _external(license_, LICENSE_LINKS[license_]) if license_ in LICENSE_LINKS else license_)
    if c.get("dataset_url"):
        url = c["dataset_url"]
        fact("Dataset", _external(url, url) if _safe_url(url) else url)
    if c.get("doi"):
        doi = c["doi"].removeprefix("https://doi.org/")
        fact("Paper", _external(f"doi:{doi}", f"https://doi.org/{doi}"))
    fact("Components", f"{c['n_components']:,}")
    timing: Timing | None = c["timing"]
    if timing is not None:
        fact("Runs", f"{len(timing.runs):,} ({timing.rows_per_subject:,} volumes per subject)")
        fact("TR", f"{timing.tr:g} s")
        fact("Subjects", f"{timing.subjects:,}")
    else:
        fact("Timing", "not given")
    fact("Added", fmt_date(c.get("created")))
    return html.Dl(facts, className="incdb-facts", id="collection-facts")


def layout(slug: str | None = None, **query: Any) -> html.Div:
    c = read(collection_page_data, (slug or "")[:MAX_SLUG])
    if c is None:
        return not_found("Collection", slug, links=(("Browse movies", "/movies"), ("Home", "/")))
    note = (
        dbc.Alert(c["isc_note"], color="light", className="small py-2", id="collection-isc-note")
        if c["isc_note"]
        else None
    )
    return html.Div(
        [
            page_header(
                c["name"],
                ["A collection of ", link(c["movie"], f"/movies/{c['movie_slug']}")],
                crumbs=(
                    ("Home", "/"),
                    ("Movies", "/movies"),
                    (c["movie"], f"/movies/{c['movie_slug']}"),
                    ("Collection", None),
                ),
                badges=row_badges(c),
            ),
            dbc.Row(
                [
                    dbc.Col(
                        section(
                            "About this collection",
                            [
                                html.P(c["description"], className="incdb-collection-description")
                                if c.get("description")
                                else None,
                                _facts(c),
                            ],
                        ),
                        lg=5,
                    ),
                    dbc.Col(section("Acquisition and participants", metadata_groups(c.get("metadata") or {})), lg=7),
                ],
                className="g-4",
            ),
            section(
                "Components",
                [
                    note,
                    paged_table(
                        "collection-components",
                        "components",
                        query,
                        context={"collection": c["slug"], "hide": ["movie", "collection"]},
                    ),
                ],
            ),
            isfc_section(c["slug"]),
        ]
    )
