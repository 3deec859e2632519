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
"""
from __future__ import annotations

import uuid
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback_context, dcc, html
from dash.exceptions import PreventUpdate

from dashboard.components.curator import alert
from dashboard.components.data import as_dict
from pipeline.jobs import JobRefused, cancel_job
from pipeline.tasks import run_authorized_job
from store.db import session_scope
from web.auth import signed_in_user as user

_registered: set[str] = set()
# Inline styles rather than Bootstrap classes: the live area must hide even where the theme's CSS did not load.
SHOWN = {"display": "flex"}
HIDDEN = {"display": "none"}


def job_runner(prefix: str) -> html.Div:
    """The runner's components: request and nonce Stores, the live progress bar with its Cancel button, and the
    outcome of the last run from this page."""
    return html.Div([
        dcc.Store(id=f"{prefix}-nonce", data=uuid.uuid4().hex),
        dcc.Store(id=f"{prefix}-request"),
        html.Div([
            dbc.Progress(id=f"{prefix}-bar", value=0, label="", striped=True, animated=True,
                         style={"height": "1.4rem", "flexGrow": 1}, className="me-3"),
            dbc.Button("Cancel", id=f"{prefix}-cancel", color="warning", outline=True, size="sm", disabled=True),
        ], id=f"{prefix}-live", className="align-items-center my-2", style=HIDDEN),
        html.Div(id=f"{prefix}-cancel-message"),
        html.Div(id=f"{prefix}-result"),
    ], id=f"{prefix}-runner")


def outcome(summary: dict) -> dbc.Alert:
    status = summary.get("status")
    color = {"succeeded": "success", "failed": "danger", "cancelled": "warning"}.get(status, "info")
    text = {"succeeded": "Processing finished", "failed": "Processing failed", "cancelled": "Processing cancelled"
            }.get(status, f"Job {status}")
    if summary.get("kind") == "redecode":
        text = text.replace("Processing", "Re-decoding")
    parts = [html.Strong(text + (f": {summary['message']}" if summary.get("message") else ".")),
             html.Span(f" job #{summary['id']}", className="text-muted small")]
    if summary.get("error"):
        parts.append(html.Pre(summary["error"], className="mb-0 mt-2 small text-wrap job-error"))
    return dbc.Alert(parts, color=color, className="mt-2", id={"type": "job-outcome", "job": summary["id"]})


def register_runner(prefix: str) -> None:
    """Register the background callback and the cancel callback of a runner (once per prefix)."""
    if prefix in _registered:
        return
    _registered.add(prefix)

    @dash.callback(
        Output(f"{prefix}-result", "children"),
        Input(f"{prefix}-request", "data"),
        State(f"{prefix}-nonce", "data"),
        background=True,
        progress=[Output(f"{prefix}-bar", "value"), Output(f"{prefix}-bar", "label")],
        progress_default=[0, "starting…"],
        running=[(Output(f"{prefix}-cancel", "disabled"), False, True),
                 (Output(f"{prefix}-live", "style"), SHOWN, HIDDEN)],
        cancel=[Input(f"{prefix}-cancel", "n_clicks")],
        # Poll for progress every 0.4 s (Dash's default is 1 s): a job of a dozen maps takes only a few seconds,
        # and a bar that jumps from 0 to done tells the curator nothing.
        interval=400,
        prevent_initial_call=True,
    )
    def run(set_progress, request, nonce):
        return run_in_background(set_progress, request, nonce)

    @dash.callback(
        Output(f"{prefix}-cancel-message", "children"),
        Input(f"{prefix}-cancel", "n_clicks"),
        State(f"{prefix}-request", "data"),
        prevent_initial_call=True,
    )
    def cancel(_n, request):
        return cancel_from_page(as_dict(request).get("token"))


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
    return alert("Cancelled." if status == "cancelled" else f"The job had {status} already.", "warning",
                 duration=5000)
