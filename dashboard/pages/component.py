"""One component: its map, its decoding profile (chart and full ranked table) and where it came from.

The header, the viewer and the decoding profile come with the page; the sections below them (clusters, time
course, the ranked table of every term, similar components) are lazy sections (``dashboard.components.lazy``),
drawn when they come into view, so that the page's first answer stays small and the viewer loads first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.charts import decoding_figure, nav_graph, profile_links
from dashboard.components.clusters import cluster_panel
from dashboard.components.common import Child, empty_state, fmt_r, link, not_found, page_header, row_badges, section
from dashboard.components.data import arg, read
from dashboard.components.details import component_facts, demo_alert, qc_alert
from dashboard.components.lazy import lazy_section, register_loader
from dashboard.components.maps import component_layers, map_viewer
from dashboard.components.similar import similar_section
from dashboard.components.synchrony import component_isc_section
from dashboard.components.tables import component_name, paged_table
from dashboard.components.timeline import course_section
from store import queries


def title(uuid: str | None = None, **_: Any) -> str:
    found = read(queries.component_detail, uuid) if uuid else None
    if not found:
        return "Component not found · INcDb"
    return f"{found['best_term'] or 'Component'} component of {found['movie']} · INcDb"


dash.register_page(__name__, path_template="/components/<uuid>", order=6, title=title)


def _profile(session, user, uuid: str) -> list[dict[str, Any]]:
    comp = queries.get_visible_component(session, user, uuid)
    return queries.full_decoding_profile(session, comp) if comp is not None else []


TABLE_ARGS = ("q", "sort", "page")  # the ranked table's state in the address


def _has_time(session, user, uuid: str) -> bool:
    comp = queries.get_visible_component(session, user, uuid)
    return comp is not None and comp.timecourse_id is not None and bool(comp.collection.timing)


def _uuid_arg(args: Mapping[str, Any]) -> str | None:
    uuid = args.get("uuid")
    return uuid if isinstance(uuid, str) and 0 < len(uuid) <= 64 else None


def _load_time(args: Mapping[str, Any]) -> Child:
    uuid = _uuid_arg(args)
    found = read(course_section, uuid) if uuid else None
    return empty_state("This component has no time course.") if found is None else found


def _load_decodings(args: Mapping[str, Any]) -> Child:
    uuid = _uuid_arg(args)
    query = args.get("query") if isinstance(args.get("query"), dict) else {}
    query = {k: v for k, v in query.items() if k in TABLE_ARGS and isinstance(v, str) and len(v) <= 200}
    if uuid is None or read(queries.component_detail, uuid) is None:
        return empty_state("This component cannot be shown.")
    return paged_table("decodings", "decodings", query, context={"uuid": uuid})


register_loader("component-time", _load_time)
register_loader("component-decodings", _load_decodings)


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
                [
                    best,
                    " · ",
                    detail["movie"],
                    " · collection ",
                    link(
                        detail["collection"],
                        f"/collections/{detail['collection_slug']}",
                        class_name="incdb-collection-link",
                    ),
                ],
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
            component_isc_section(detail["uuid"]),
            lazy_section(
                "component-decodings",
                [
                    "All terms, ranked ",
                    html.A(
                        "download CSV",
                        href=f"/components/{detail['uuid']}/decodings.csv",
                        className="incdb-section-link",
                        download="",
                    ),
                ],
                {"uuid": detail["uuid"], "query": {k: arg(query, k) for k in TABLE_ARGS if k in query}},
            ),
            similar_section(detail["uuid"]),
        ]
    )


def _time_section(uuid: str) -> html.Div | None:
    if not read(_has_time, uuid):
        return None
    return lazy_section("component-time", "Time course", {"uuid": uuid})
