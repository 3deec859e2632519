"""Callbacks of ``dashboard.components.job_runner``: running jobs from a page: one background callback per page that
runs jobs (DESIGN section 8)."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from dashboard.components.data import as_dict
from dashboard.components.job_runner import HIDDEN, SHOWN, _registered, cancel_from_page, job_status, run_in_background


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
        running=[
            (Output(f"{prefix}-cancel", "disabled"), False, True),
            (Output(f"{prefix}-live", "style"), SHOWN, HIDDEN),
        ],
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

    @dash.callback(
        Output(f"{prefix}-status", "children"),
        Output(f"{prefix}-poll", "disabled"),
        Input(f"{prefix}-poll", "n_intervals"),
        Input(f"{prefix}-request", "data"),
        State(f"{prefix}-watch", "data"),
        prevent_initial_call=True,
    )
    def status(_n, request, watch):
        return job_status(as_dict(request).get("token"), watch)
