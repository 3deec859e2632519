"""The System page (``/admin/system``, administrators only): whether background jobs can run, and why not.

Everything comes from ``pipeline.jobs.system.system_report`` (also ``GET /api/system``): the Celery workers that answer
a ping (or the embedded mode), the queue lengths, the oldest queued job, stalled and failed jobs, and what the
configuration lacks. Built when the page loads and on "Refresh"; the broker calls time out after a second or two.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.curator import sign_in_prompt
from pipeline.jobs.system import system_report
from store.db import session_scope
from web.auth import signed_in_user as user

dash.register_page(__name__, path="/admin/system", order=31, title="System · INcDb")

START_WORKER = "celery -A app:celery_app worker"


def _job(row: dict) -> Any:
    parts: list[Any] = [html.Strong(f"#{row['id']} {row['kind']}"), f" {row['status']}"]
    if row.get("created"):
        parts.append(html.Span(f", created {row['created'][:16].replace('T', ' ')} UTC", className="text-muted"))
    if row.get("status") == "running" and row.get("last_sign_of_life"):
        parts.append(f", last sign of life {row['last_sign_of_life'][:19].replace('T', ' ')} UTC")
    if row.get("waiting"):
        parts.append(html.Div(row["waiting"], className="text-warning-emphasis job-waiting"))
    if row.get("error"):
        parts.append(html.Div(row["error"], className="text-danger"))
    return html.Li(parts, className="small")


def _jobs_list(rows: list[dict], empty: str, ident: str) -> Any:
    if not rows:
        return html.P(empty, className="text-muted small", id=ident)
    return html.Ul([_job(r) for r in rows], id=ident)


def background_card(report: dict) -> dbc.Card:
    bg = report["background"]
    if bg["mode"] == "embedded":
        workers: Any = html.P(bg["detail"], id="system-workers")
        queues: Any = None
    else:
        if bg["workers_error"]:
            workers = dbc.Alert(bg["workers_error"], color="danger", id="system-workers")
        elif bg["workers"]:
            workers = html.Div(
                [
                    html.P(f"{len(bg['workers'])} worker(s) answered:", className="mb-1"),
                    html.Ul([html.Li(name) for name in bg["workers"]]),
                ],
                id="system-workers",
            )
        else:
            workers = dbc.Alert(
                [
                    "No worker answered: jobs wait in the queue until one runs (",
                    html.Code(START_WORKER),
                    " with the same INCDB_BROKER_URL).",
                ],
                color="danger",
                id="system-workers",
            )
        q = bg["queues"]
        queues = html.P(
            f"Queue: {q['queued']} waiting, {q['reserved']} taken by a worker and not finished."
            if q
            else f"Queue lengths unknown: {bg['queues_error']}",
            id="system-queues",
        )
    return dbc.Card(dbc.CardBody([html.H2("Background workers", className="h5"), workers, queues]), className="mb-3")


def jobs_card(report: dict) -> dbc.Card:
    jobs = report["jobs"]
    taken = jobs["last_taken"]
    oldest = jobs["oldest_queued"]
    return dbc.Card(
        dbc.CardBody(
            [
                html.H2("Jobs", className="h5"),
                html.P(
                    f"{jobs['queued']} queued, {jobs['running']} running; a worker last took a job "
                    + (f"at {taken[:16].replace('T', ' ')} UTC." if taken else "never."),
                    id="system-job-counts",
                ),
                html.H3("Oldest queued job", className="h6"),
                _jobs_list([oldest] if oldest else [], "None.", "system-oldest"),
                html.H3("Running without a recent heartbeat", className="h6"),
                html.P(
                    f"Marked failed after {jobs['stalled_after_s'] // 60} min without one.",
                    className="small text-muted",
                ),
                _jobs_list(jobs["stalled"], "None.", "system-stalled"),
                html.H3("Failed in the last 7 days", className="h6"),
                _jobs_list(jobs["failed"], "None.", "system-failed"),
            ]
        ),
        className="mb-3",
    )


def settings_card(report: dict) -> dbc.Card:
    s = report["settings"]
    items = [html.Li(f"Refused in production: {p}", className="text-danger") for p in s["refused"]]
    items += [html.Li(w, className="text-warning-emphasis") for w in s["warnings"]]
    return dbc.Card(
        dbc.CardBody(
            [
                html.H2("Configuration", className="h5"),
                html.P(
                    [
                        f"Environment: {report['environment']}. Mail: ",
                        s["mail"] or "no INCDB_SMTP_HOST, mails are written to the server log",
                        ".",
                    ]
                ),
                html.Ul(items, id="system-settings")
                if items
                else html.P("Nothing missing.", className="text-muted", id="system-settings"),
                html.P(["Details: ", html.Code("python -m pipeline check"), "."], className="small text-muted mb-0"),
            ]
        ),
        className="mb-3",
    )


def content() -> list:
    with session_scope() as session:
        report = system_report(session)
    return [background_card(report), jobs_card(report), settings_card(report)]


def _refused() -> Any:
    u = user()
    if u is None:
        return sign_in_prompt("/admin/system", "the system status")
    if not u.is_admin:
        return dbc.Alert("Only administrators can see this page.", color="warning", id="system-refused")
    return None


def layout(**_query) -> Any:
    refused = _refused()
    if refused is not None:
        return refused
    return html.Div(
        [
            html.Div(
                [
                    html.H1("System", className="h3 me-auto"),
                    dbc.Button(
                        "Refresh", id="system-refresh", size="sm", color="secondary", outline=True, className="me-2"
                    ),
                    dbc.Button("Administration", href="/admin", size="sm", color="link"),
                ],
                className="d-flex align-items-start",
            ),
            html.Div(content(), id="system-content"),
        ]
    )
