"""One component: its map, its decoding profile (chart and full ranked table) and where it came from."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.charts import decoding_figure, nav_graph, profile_links
from dashboard.components.clusters import cluster_panel
from dashboard.components.common import empty_state, fmt_r, not_found, page_header, row_badges, section
from dashboard.components.data import read
from dashboard.components.details import component_facts, demo_alert, qc_alert
from dashboard.components.maps import component_layers, map_viewer
from dashboard.components.similar import similar_section
from dashboard.components.tables import component_name, paged_table
from dashboard.components.timeline import course_panel
from store import queries, timeline


def title(uuid: str | None = None, **_: Any) -> str:
    found = read(queries.component_detail, uuid) if uuid else None
    if not found:
        return "Component not found · INcDb"
    return f"{found['best_term'] or 'Component'} component of {found['movie']} · INcDb"


dash.register_page(__name__, path_template="/components/<uuid>", order=6, title=title)


def _profile(session, user, uuid: str) -> list[dict[str, Any]]:
    comp = queries.get_visible_component(session, user, uuid)
    return queries.full_decoding_profile(session, comp) if comp is not None else []


def _time(session, user, uuid: str) -> dict[str, Any] | None:
    """The component's time course, its temporal decodings and its movie's annotations, or None without a time
    course."""
    course = timeline.component_course(session, user, uuid)
    if course is None:
        return None
    comp = queries.get_visible_component(session, user, uuid)
    rows = timeline.component_temporal(session, user, uuid) or []
    annotations = timeline.movie_annotations(
        session, comp.collection.movie, include=[(r["annotation_id"], r["label"]) for r in rows[:50]]
    )
    return {"course": course, "rows": rows, "annotations": annotations}


def layout(uuid: str | None = None, **query: Any) -> html.Div:
    detail = read(queries.component_detail, (uuid or "")[:64])
    if detail is None:
        return not_found(
            "Component", uuid, links=(("Browse movies", "/movies"), ("Browse terms", "/terms"), ("Home", "/"))
        )
    profile = read(_profile, detail["uuid"])
    name = component_name(detail["source_file"], detail["volume"])
    chart = (
        nav_graph("profile", decoding_figure(profile), profile_links(profile), by_y=True)
        if profile
        else empty_state("This component has not been decoded yet.")
    )
    best = (
        f"Best term: {detail['best_term']} (r = {fmt_r(detail['best_r'])})"
        if detail["best_term"]
        else "Not decoded yet"
    )
    return html.Div(
        [
            page_header(
                ["Component ", html.Span(name, className="incdb-title-muted", title=detail["source_file"])],
                [best, " · ", detail["movie"]],
                crumbs=(
                    ("Home", "/"),
                    ("Movies", "/movies"),
                    (detail["movie"], f"/movies/{detail['movie_slug']}"),
                    ("Component", None),
                ),
                badges=row_badges(detail),
            ),
            demo_alert(detail["is_demo"]),
            qc_alert(detail["qc_warnings"]),
            map_viewer(
                component_layers(detail["uuid"], name),
                "Thresholded at |z| > 2.5 to start with; change it in the settings panel. Negative values are "
                "drawn in cool colours.",
                query,
            ),
            cluster_panel(component=detail["uuid"]),
            dbc.Row(
                [
                    dbc.Col(section("Decoding profile", chart), lg=7),
                    dbc.Col(section("About this component", component_facts(detail)), lg=5),
                ],
                className="g-4",
            ),
            _time_section(detail["uuid"]),
            section(
                [
                    "All terms, ranked ",
                    html.A(
                        "download CSV",
                        href=f"/components/{detail['uuid']}/decodings.csv",
                        className="incdb-section-link",
                        download="",
                    ),
                ],
                paged_table("decodings", "decodings", query, context={"uuid": detail["uuid"]}),
            ),
            similar_section(detail["uuid"]),
        ]
    )


def _time_section(uuid: str) -> html.Section | None:
    found = read(_time, uuid)
    if found is None:
        return None
    return section("Time course", course_panel(found["course"], found["annotations"], found["rows"], uuid))
