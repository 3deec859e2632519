"""My collections (``/contribute``): status, components, warnings, and what can be done with each."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.curation import job_line
from dashboard.components.curator import badge, sign_in_prompt
from pipeline.jobs.lifecycle import settle_stalled_jobs
from store.curation import collection_rows
from store.db import session_scope
from web.auth import signed_in_user as user

dash.register_page(__name__, path="/contribute", order=19, title="My collections · INcDb")


def table(rows) -> html.Div:
    if not rows:
        return dbc.Alert(
            [
                "You have no collections yet. ",
                html.A("Create your first collection", href="/contribute/new", className="alert-link"),
                " and upload its maps.",
            ],
            color="light",
            id="mine-empty",
        )
    body = []
    for r in rows:
        actions = [
            dbc.Button(
                "Edit", href=f"/contribute/{r['slug']}", size="sm", color="primary", outline=True, className="me-1"
            ),
            dbc.Button(
                "Reprocess",
                href=f"/contribute/{r['slug']}?process=1",
                size="sm",
                color="secondary",
                outline=True,
                className="me-1",
                disabled=not r["uploads"],
            ),
            dbc.Button("Delete", href=f"/contribute/{r['slug']}?delete=1", size="sm", color="danger", outline=True),
        ]
        notes = []
        if r["unprocessed"]:
            notes.append(html.Div("new files not processed yet", className="small text-info"))
        if r["warned"]:
            notes.append(html.Div(f"{r['warned']} map(s) with QC warnings", className="small text-warning-emphasis"))
        body.append(
            html.Tr(
                [
                    html.Td(
                        [
                            html.A(r["name"], href=f"/contribute/{r['slug']}", className="fw-semibold"),
                            html.Div(r["movie"], className="small text-muted"),
                        ]
                    ),
                    html.Td(dbc.Badge(r["visibility"], color="light", text_color="dark", className="border")),
                    html.Td(badge(r["status"])),
                    html.Td([str(r["components"]), *notes]),
                    html.Td(job_line(r["job"])),
                    html.Td(actions, className="text-nowrap"),
                ],
                id={"type": "mine-row", "slug": r["slug"]},
            )
        )
    return dbc.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th("Collection"),
                        html.Th("Visibility"),
                        html.Th("Status"),
                        html.Th("Components"),
                        html.Th("Processing"),
                        html.Th(""),
                    ]
                )
            ),
            html.Tbody(body),
        ],
        hover=True,
        responsive=True,
        id="mine-table",
    )


def rows_for_current_user():
    u = user()
    with session_scope() as session:
        settle_stalled_jobs(session)  # a job whose process died is shown failed, not running
        return collection_rows(session, u)


def layout(deleted: str | None = None, **_query):
    u = user()
    if u is None:
        return html.Div(
            [
                html.H1("Contribute", className="h3"),
                html.P(
                    "Curators share independent components (or any brain maps) recorded while people watched a "
                    "movie. Each map is decoded against term maps and merged into the movie's term maps."
                ),
                sign_in_prompt("/contribute", "your collections"),
            ]
        )
    rows = rows_for_current_user()
    active = any(r["job"] and r["job"]["status"] in ("queued", "running") for r in rows)
    return html.Div(
        [
            html.Div(
                [
                    html.H1("My collections", className="h3 mb-0"),
                    dbc.Button("New collection", href="/contribute/new", color="primary", id="mine-new"),
                ],
                className="d-flex justify-content-between align-items-center mb-3",
            ),
            dbc.Alert("The collection was deleted.", color="success", duration=5000) if deleted else None,
            dcc.Interval(id="mine-poll", interval=2000 if active else 15000),
            html.Div(table(rows), id="mine-list"),
        ]
    )
