"""Running jobs from a page: one background callback per page that runs jobs (DESIGN section 8).

A page's own (normal) callback checks the permission in the web process, creates the Job row and writes
``{"token", "nonce"}`` into ``<prefix>-request``. That change starts the background callback, on Celery when a
broker is configured and in a forked process (diskcache) otherwise, with the same code. The job gets

- the Job's unguessable token (from the request Store; a browser that edits it gains nothing: the job checks the
  token, the user and the permission again in the database),
- the user id from ``hooks.custom_data`` (taken from the signed session in the web request),
- the page's nonce (a Store filled per page load) as State, so that Dash, which keys background results by the
  callback and its inputs only, never hands one page's result to another.

Progress goes to the page through ``progress=`` and to the Job row (which pages poll, so a curator who closed
the tab still sees it). Errors are caught into the Job row and shown. Cancel kills the task (Dash's ``cancel=``)
and marks the Job cancelled; a run that cannot be killed stops at its next progress report.

The background callback only hears from a worker that took the job. So that a job no worker takes does not look
like "starting…" forever, a normal callback polls the Job row (every ``POLL_MS``) while the job is active and
shows "Waiting for a background worker …" (``pipeline.jobs.system.waiting_note``). A page may also pass the job it
found active when it was loaded (``watch``): after a reload the runner has no token, and it shows that job's
status from its row instead of nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import dash_bootstrap_components as dbc
from dash import callback_context, dcc, html
from dash.exceptions import PreventUpdate
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.components.curation import job_line, waiting_line
from dashboard.components.curator import alert
from dashboard.components.data import as_dict, row_id
from pipeline.jobs.lifecycle import JobRefused, cancel_job
from pipeline.jobs.system import job_view
from pipeline.jobs.tasks import run_authorized_job
from store.access import can_edit, visible_collections
from store.db import session_scope
from store.models import ACTIVE_JOB_STATUSES, Collection, Job
from web.auth import signed_in_user as user

_registered: set[str] = set()
# Inline styles rather than Bootstrap classes: the live area must hide even where the theme's CSS did not load.
SHOWN = {"display": "flex"}
HIDDEN = {"display": "none"}
POLL_MS = 3000  # how often an active job's row is read for its status (one small query)
KIND_LABELS = {
    "ingest": "Processing",
    "redecode": "Re-decoding",
    "merge": "Merging",
    "temporal": "Decoding in time",
    "decode": "Decoding",
    "synchrony": "Inter-subject correlation",
}


def job_runner(prefix: str, watch: dict | None = None) -> html.Div:
    """The runner's components: request and nonce Stores, the live progress bar with its Cancel button, the
    job's status from its row, and the outcome of the last run from this page.

    Parameters
    ----------
    prefix : str
        The page's runner prefix (as given to :func:`register_runner`).
    watch : dict or None
        The job the page found active when loaded (``pipeline.jobs.system.job_view``), shown and followed until it
        ends; None when there is none (or the viewer may not see it).
    """
    active = watch is not None and watch.get("status") in ACTIVE_JOB_STATUSES
    return html.Div(
        [
            dcc.Store(id=f"{prefix}-nonce", data=uuid.uuid4().hex),
            dcc.Store(id=f"{prefix}-request"),
            dcc.Store(id=f"{prefix}-watch", data=watch["id"] if active else None),
            dcc.Interval(id=f"{prefix}-poll", interval=POLL_MS, disabled=not active),
            html.Div(watched_status(watch) if active else None, id=f"{prefix}-status"),
            html.Div(
                [
                    dbc.Progress(
                        id=f"{prefix}-bar",
                        value=0,
                        label="",
                        striped=True,
                        animated=True,
                        style={"height": "1.4rem", "flexGrow": 1},
                        className="me-3",
                    ),
                    dbc.Button(
                        "Cancel", id=f"{prefix}-cancel", color="warning", outline=True, size="sm", disabled=True
                    ),
                ],
                id=f"{prefix}-live",
                className="align-items-center my-2",
                style=HIDDEN,
            ),
            html.Div(id=f"{prefix}-cancel-message"),
            html.Div(id=f"{prefix}-result"),
        ],
        id=f"{prefix}-runner",
    )


def outcome(summary: dict) -> dbc.Alert:
    status = summary.get("status")
    color = {"succeeded": "success", "failed": "danger", "cancelled": "warning"}.get(status, "info")
    text = {"succeeded": "Processing finished", "failed": "Processing failed", "cancelled": "Processing cancelled"}.get(
        status, f"Job {status}"
    )
    if summary.get("kind") == "redecode":
        text = text.replace("Processing", "Re-decoding")
    parts = [
        html.Strong(text + (f": {summary['message']}" if summary.get("message") else ".")),
        html.Span(f" job #{summary['id']}", className="text-muted small"),
    ]
    if summary.get("error"):
        parts.append(html.Pre(summary["error"], className="mb-0 mt-2 small text-wrap job-error"))
    return dbc.Alert(parts, color=color, className="mt-2", id={"type": "job-outcome", "job": summary["id"]})


def watched_status(view: dict) -> html.Div:
    """A job the page did not start (or started before a reload): what it is, its status line."""
    label = KIND_LABELS.get(view.get("kind"), "Job")
    return html.Div(
        [html.Span(f"{label} job #{view['id']}: ", className="small"), job_line(view)],
        className="my-2",
        id={"type": "job-watched", "job": view["id"]},
    )


def may_watch(session: Session, viewer: Any, job: Job) -> bool:
    """Whether ``viewer`` may see the status of ``job``: administrators, whoever started it, the curators who may
    edit its collection, and for a movie's temporal decoding anyone signed in who can see the movie."""
    if not getattr(viewer, "is_authenticated", False):
        return False
    if getattr(viewer, "is_admin", False) or job.created_by_id == viewer.id:
        return True
    if job.collection_id is not None:
        return can_edit(viewer, session.get(Collection, job.collection_id))
    if job.kind == "temporal" and job.movie_id is not None:
        return (
            session.scalar(
                select(Collection.id).where(Collection.movie_id == job.movie_id, visible_collections(viewer)).limit(1)
            )
            is not None
        )
    return False


def watchable(session: Session, viewer: Any, job: Job | None) -> dict | None:
    """``job``'s view for :func:`job_runner`'s ``watch`` when it is active and ``viewer`` may see it, else None."""
    if job is None or job.status not in ACTIVE_JOB_STATUSES or not may_watch(session, viewer, job):
        return None
    return job_view(session, job)


def job_status(token: Any, watch: Any) -> tuple[Any, bool]:
    """The status area's content and whether to stop polling: for the page's own job (``token``) only the waiting
    message (the progress bar shows the rest); for a watched job (by id) its status line."""
    token, watched = job_token(token), row_id(watch)
    if token is None and watched is None:
        return None, True
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.token == token)) if token is not None else session.get(Job, watched)
        if job is None or not may_watch(session, user(), job):
            return None, True
        view = job_view(session, job)
    active = view["status"] in ACTIVE_JOB_STATUSES
    if token is not None:
        waiting = (
            dbc.Alert(
                waiting_line(view["waiting"]), color="warning", className="mt-2 py-2", id=f"job-waiting-{view['id']}"
            )
            if view["waiting"]
            else None
        )
        return waiting, not active
    return watched_status(view), not active


MAX_TOKEN_LENGTH = 128  # job tokens are 43 characters (secrets.token_urlsafe(32))


def job_token(value: Any) -> str | None:
    """A job token as the page's own callback wrote it; None for anything a forged request could put there (text
    that long, or with a NUL character, which PostgreSQL refuses in a query)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_TOKEN_LENGTH and "\x00" not in value:
        return value
    return None


def run_in_background(set_progress, request, nonce):
    """The body of every runner's background callback (in a Celery worker or a forked process)."""
    # Refused before any work: the request Store is written by the page's own callback, so anything else is forged.
    request = as_dict(request)
    token = job_token(request.get("token"))
    if token is None or not isinstance(nonce, str) or request.get("nonce") != nonce:
        raise PreventUpdate
    identity = (callback_context.custom_data or {}).get("incdb") or {}

    def progress(done: int, total: int) -> None:
        percent = round(100 * done / total) if total else 0
        set_progress((percent, f"{done} / {total} maps" if total else "reading files…"))

    try:
        summary = run_authorized_job(token, identity.get("user_id"), progress)
    except JobRefused as exc:
        return alert(str(exc))
    return outcome(summary)


def cancel_from_page(token: Any):
    token = job_token(token)
    if token is None:
        raise PreventUpdate
    u = user()
    with session_scope() as session:
        try:
            job = cancel_job(session, u, token)
        except JobRefused as exc:
            return alert(str(exc))
        status = job.status
    return alert("Cancelled." if status == "cancelled" else f"The job had {status} already.", "warning", duration=5000)
