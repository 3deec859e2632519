"""Layout pieces of the collection pages: the latest job's line, the license confirmation, the uploads and
components tables and the processing status (built from rows the page read; the one query is the processing
status's: whether a worker took any job lately, ``pipeline.jobs.system.waiting_note``)."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html
from sqlalchemy.orm import object_session

from dashboard.components.curator import badge
from pipeline.jobs.system import job_view
from store.models import ACTIVE_JOB_STATUSES, Collection, Job, JobStatus, Upload
from store.units import human_bytes


def job_line(job: dict | None) -> Any:
    """A job's status badge, progress or message, the first line of its error, and the waiting message of a job
    no worker takes (``waiting``, from ``pipeline.jobs.system.job_view``)."""
    if not job:
        return html.Span("never processed", className="text-muted")
    parts: list[Any] = [badge(job["status"])]
    if job.get("waiting"):
        parts.append(waiting_line(job["waiting"]))
    elif job["status"] in ACTIVE_JOB_STATUSES and job["total"]:
        parts.append(html.Span(f" {job['done']}/{job['total']} maps", className="small"))
    elif job["message"]:
        parts.append(html.Span(" " + job["message"], className="small"))
    if job["status"] == JobStatus.FAILED and job["error"]:
        parts.append(html.Div(job["error"].splitlines()[0][:200], className="small text-danger"))
    return html.Span(parts)


def waiting_line(text: str) -> html.Span:
    """The waiting message of a queued job no worker takes."""
    return html.Span(" " + text, className="small text-warning-emphasis job-waiting")


def license_panel(collection: Collection) -> Any:
    if collection.license_confirmed_at is not None:
        when = collection.license_confirmed_at.strftime("%Y-%m-%d")
        return html.P(
            [
                html.Span("✓ ", className="text-success"),
                (
                    f"{collection.license_confirmed_by or 'The curator'} confirmed on {when} that these data "
                    f"may be shared under {collection.license}."
                ),
            ],
            className="small text-muted mb-2",
            id="coll-license-done",
        )
    return dbc.Alert(
        [
            html.P(
                [
                    "Before uploading: confirm that you have the right to share these data publicly under ",
                    html.Strong(collection.license),
                    (
                        " (participants' consent and your institution's rules allow it, and the maps contain no "
                        "identifying information)."
                    ),
                ],
                className="mb-2",
            ),
            dbc.Checkbox(
                id="coll-license-check", label="I confirm that I may share these data under this license.", value=False
            ),
            dbc.Button("Confirm", id="coll-license-confirm", color="primary", size="sm", className="mt-2"),
        ],
        color="secondary",
        id="coll-license-ask",
    )


def uploads_table(uploads: list[Upload], busy: bool) -> Any:
    if not uploads:
        return html.P("No files uploaded yet.", className="text-muted small", id="coll-no-uploads")
    rows = [
        html.Tr(
            [
                html.Td(u.filename, className="text-break"),
                html.Td(human_bytes(u.size)),
                html.Td(u.created.strftime("%Y-%m-%d %H:%M") if u.created else ""),
                html.Td(
                    dbc.Button(
                        "Remove",
                        id={"type": "upload-remove", "upload": u.id},
                        size="sm",
                        color="link",
                        className="p-0 text-danger",
                        disabled=busy,
                    )
                ),
            ]
        )
        for u in uploads
    ]
    return dbc.Table(
        [html.Thead(html.Tr([html.Th("File"), html.Th("Size"), html.Th("Uploaded"), html.Th("")])), html.Tbody(rows)],
        size="sm",
        className="mb-0",
        id="coll-upload-table",
    )


def components_table(comps: list[tuple]) -> Any:
    """The table of a collection's components (rows of ``store.curation.collection_components``)."""
    if not comps:
        return html.P("No components yet: upload files and process them.", className="text-muted small")
    rows = [
        html.Tr(
            [
                html.Td(html.A(f"{source} #{volume + 1}", href=f"/components/{cuuid}"), className="text-break"),
                html.Td(term or "—"),
                html.Td(f"{r:+.3f}" if r is not None else "—"),
                html.Td([html.Div(w, className="small text-warning-emphasis") for w in (qc or [])]),
            ]
        )
        for cuuid, source, volume, term, r, qc in comps
    ]
    return html.Div(
        [
            html.P(f"{len(comps)} component(s).", className="small text-muted", id="coll-component-count"),
            dbc.Table(
                [
                    html.Thead(html.Tr([html.Th("Map"), html.Th("Best term"), html.Th("r"), html.Th("QC")])),
                    html.Tbody(rows),
                ],
                size="sm",
                striped=True,
                responsive=True,
                id="coll-component-table",
            ),
        ]
    )


def status_panel(collection: Collection, job: Job | None, own_token: str | None, n_uploads: int) -> Any:
    parts: list[Any] = [html.Span("Collection: "), badge(collection.status)]
    if job is None:
        parts.append(
            html.Span(
                " Not processed yet." if n_uploads else " Upload files, then process them.", className="text-muted"
            )
        )
        return html.Div(parts, id="coll-status-line")
    session = object_session(job)
    summary = job_view(session, job) if session is not None else job.summary()
    parts += [html.Span(" · latest job: "), job_line(summary)]
    children: list[Any] = [html.Div(parts, id="coll-status-line")]
    if job.status in ACTIVE_JOB_STATUSES:
        value = round(100 * job.progress_done / job.progress_total) if job.progress_total else 0
        children.append(
            dbc.Progress(
                value=value,
                label=f"{job.progress_done}/{job.progress_total}",
                className="my-2",
                id="coll-job-progress",
                striped=True,
            )
        )
        if job.token != own_token:  # started from another tab or page: this page cannot kill it, it can stop it
            children.append(
                dbc.Button(
                    "Stop processing", id={"type": "job-stop", "job": job.id}, size="sm", color="warning", outline=True
                )
            )
    if job.error and job.status != JobStatus.RUNNING:
        children.append(
            dbc.Alert(
                [html.Strong("Errors"), html.Pre(job.error, className="mb-0 small text-wrap")],
                color="danger" if job.status == JobStatus.FAILED else "warning",
                className="mt-2 mb-0",
                id="coll-job-errors",
            )
        )
    if job.warnings:
        children.append(
            html.Details(
                [
                    html.Summary(f"{len(job.warnings)} warning(s)"),
                    html.Ul([html.Li(w, className="small") for w in job.warnings]),
                ],
                className="mt-2",
                id="coll-job-warnings",
            )
        )
    return html.Div(children)
