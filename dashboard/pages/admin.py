"""Administration (``/admin``): every collection and user, reference sets, recent jobs; the callbacks change
roles and accounts and switch the active reference set (re-decoding everything as one background job). The state
of the workers and queues is on the System page (``/admin/system``, ``dashboard.pages.system``)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from sqlalchemy import func, select

from dashboard.components.curation import job_line
from dashboard.components.curator import badge, sign_in_prompt
from dashboard.components.job_runner import job_runner
from pipeline.jobs.lifecycle import settle_stalled_jobs
from pipeline.jobs.system import job_view, waiting_note
from store.curation import collection_rows
from store.db import session_scope
from store.models import Collection, Job, ReferenceSet, Term, User
from web.auth import signed_in_user as user

dash.register_page(__name__, path="/admin", order=30, title="Administration · INcDb")

RUNNER = "adminjob"  # re-decoding after the active reference set changes runs on this page's job runner


def collections_table(session, admin) -> dbc.Table:
    rows = []
    settle_stalled_jobs(session)
    for r in collection_rows(session, admin, everyone=True):
        rows.append(
            html.Tr(
                [
                    html.Td(
                        [
                            html.A(r["name"], href=f"/contribute/{r['slug']}"),
                            html.Div(f"{r['movie']}{' · demo' if r['is_demo'] else ''}", className="small text-muted"),
                        ]
                    ),
                    html.Td(r["owner"], className="small text-break"),
                    html.Td(r["visibility"]),
                    html.Td(badge(r["status"])),
                    html.Td(str(r["components"])),
                    html.Td(job_line(_with_waiting(session, r["job"]))),
                    html.Td(
                        [
                            dbc.Button(
                                "Reprocess",
                                href=f"/contribute/{r['slug']}?process=1",
                                size="sm",
                                color="secondary",
                                outline=True,
                                className="me-1",
                                disabled=not r["uploads"],
                            ),
                            dbc.Button(
                                "Raw uploads",
                                href=f"/upload/{r['slug']}/raw.zip",
                                size="sm",
                                color="secondary",
                                outline=True,
                                className="me-1",
                                external_link=True,
                                disabled=not r["uploads"],
                            ),
                            dbc.Button(
                                "Delete",
                                href=f"/contribute/{r['slug']}?delete=1",
                                size="sm",
                                color="danger",
                                outline=True,
                            ),
                        ],
                        className="text-nowrap",
                    ),
                ]
            )
        )
    return dbc.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th(h)
                        for h in ("Collection", "Owner", "Visibility", "Status", "Components", "Processing", "")
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        size="sm",
        hover=True,
        responsive=True,
        id="admin-collections",
    )


def _with_waiting(session, summary: dict | None) -> dict | None:
    """A job summary with the waiting message of a queued job no worker takes."""
    if not summary or summary.get("status") != "queued":
        return summary
    job = session.get(Job, summary["id"])
    return {**summary, "waiting": waiting_note(session, job) if job is not None else None}


def users_table(session, admin) -> dbc.Table:
    counts = dict(
        session.execute(select(Collection.owner_id, func.count(Collection.id)).group_by(Collection.owner_id)).all()
    )
    rows = []
    for u in session.scalars(select(User).order_by(User.created, User.id)):
        me = u.id == admin.id
        role_action = ("curator", "Make curator") if u.role == "admin" else ("admin", "Make admin")
        active_action = ("deactivate", "Deactivate") if u.active else ("activate", "Activate")
        rows.append(
            html.Tr(
                [
                    html.Td(
                        [
                            u.email,
                            html.Div(u.display_name if u.display_name != u.email else "", className="small text-muted"),
                        ],
                        className="text-break",
                    ),
                    html.Td(u.affiliation, className="small"),
                    html.Td(u.role),
                    html.Td("active" if u.active else "deactivated"),
                    html.Td(str(counts.get(u.id, 0))),
                    html.Td(
                        [
                            dbc.Button(
                                role_action[1],
                                id={"type": "admin-user", "uid": u.id, "action": role_action[0]},
                                size="sm",
                                color="secondary",
                                outline=True,
                                className="me-1",
                                disabled=me,
                            ),
                            dbc.Button(
                                active_action[1],
                                id={"type": "admin-user", "uid": u.id, "action": active_action[0]},
                                size="sm",
                                color="warning" if u.active else "success",
                                outline=True,
                                disabled=me,
                            ),
                        ],
                        className="text-nowrap",
                    ),
                ],
                id={"type": "admin-user-row", "email": u.email},
            )
        )
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("User", "Affiliation", "Role", "Account", "Collections", "")])),
            html.Tbody(rows),
        ],
        size="sm",
        hover=True,
        responsive=True,
        id="admin-users",
    )


def references_table(session) -> dbc.Table:
    n_terms = dict(
        session.execute(select(Term.reference_set_id, func.count(Term.id)).group_by(Term.reference_set_id)).all()
    )
    rows = []
    for ref in session.scalars(select(ReferenceSet).order_by(ReferenceSet.id)):
        label = "built-in demo reference" if ref.source == "builtin" else ref.source
        rows.append(
            html.Tr(
                [
                    html.Td([ref.name, html.Div(ref.description[:200], className="small text-muted")]),
                    html.Td(label),
                    html.Td(str(n_terms.get(ref.id, 0))),
                    html.Td(f"{ref.voxel_count:,}"),
                    html.Td(
                        dbc.Badge("active", color="success")
                        if ref.active
                        else dbc.Button(
                            "Make active and re-decode",
                            id={"type": "admin-ref", "rid": ref.id},
                            size="sm",
                            color="primary",
                            outline=True,
                        )
                    ),
                ]
            )
        )
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("Reference set", "Source", "Terms", "Voxels", "")])),
            html.Tbody(rows),
        ],
        size="sm",
        responsive=True,
        id="admin-references",
    )


def jobs_table(session) -> dbc.Table:
    rows = []
    settle_stalled_jobs(session)
    for job in session.scalars(select(Job).order_by(Job.id.desc()).limit(30)):
        rows.append(
            html.Tr(
                [
                    html.Td(f"#{job.id}"),
                    html.Td(job.kind),
                    html.Td(job.collection.slug if job.collection else "—", className="small"),
                    html.Td(job_line(job_view(session, job))),
                    html.Td(str(job.attempts)),
                    html.Td(job.created.strftime("%Y-%m-%d %H:%M") if job.created else "", className="small"),
                ]
            )
        )
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("Job", "Kind", "Collection", "Status", "Attempts", "Created")])),
            html.Tbody(rows),
        ],
        size="sm",
        responsive=True,
        id="admin-jobs",
    )


def content():
    admin = user()
    with session_scope() as session:
        return dbc.Tabs(
            [
                dbc.Tab(collections_table(session, admin), label="Collections", tab_id="collections"),
                dbc.Tab(
                    [html.Div(id="admin-users-message"), users_table(session, admin)], label="Users", tab_id="users"
                ),
                dbc.Tab(
                    [
                        html.P(
                            "Decoding uses the active reference set. Switching re-decodes every component and "
                            "rebuilds every merged map, as one job (its progress shows above the tabs).",
                            className="small text-muted mt-2",
                        ),
                        references_table(session),
                    ],
                    label="Reference sets",
                    tab_id="references",
                ),
                dbc.Tab(jobs_table(session), label="Jobs", tab_id="jobs"),
            ],
            id="admin-tabs",
            active_tab="collections",
            persistence=True,
            persistence_type="session",
        )


def layout(**_query):
    u = user()
    if u is None:
        return sign_in_prompt("/admin", "the administration pages")
    if not u.is_admin:
        return dbc.Alert("Only administrators can see this page.", color="warning", id="admin-refused")
    return html.Div(
        [
            html.Div(
                [
                    html.H1("Administration", className="h3 me-auto"),
                    dbc.Button(
                        "System: workers and queues",
                        href="/admin/system",
                        size="sm",
                        color="secondary",
                        outline=True,
                        id="admin-system-link",
                    ),
                ],
                className="d-flex align-items-start",
            ),
            dcc.Store(id="admin-refresh"),
            # Outside the re-rendered tabs: a running re-decode keeps its progress bar and Cancel button.
            html.Div(id="admin-ref-message"),
            job_runner(RUNNER),
            html.Div(content(), id="admin-content"),
        ]
    )


def _admin():
    u = user()
    if u is None or not u.is_admin:
        raise PermissionError("Only administrators can do this.")
    return u
