"""Callbacks of ``dashboard.pages.admin``: administration (``/admin``): every collection and user, reference sets,
recent jobs; the callbacks change."""

from __future__ import annotations

import time

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback_context, no_update
from dash.exceptions import PreventUpdate

from accounts.users import AccountError, set_role, set_user_active
from callbacks.components.job_runner import register_runner
from dashboard.components.curator import alert
from dashboard.components.data import clicked, trigger_id
from dashboard.pages.admin import RUNNER, _admin, content
from pipeline.decoding.reference import set_active
from pipeline.jobs.lifecycle import JobRefused, start_redecode_job
from store.db import session_scope
from store.models import ReferenceSet, User
from web.auth import signed_in_user as user

register_runner(RUNNER)


@dash.callback(Output("admin-content", "children"), Input("admin-refresh", "data"), prevent_initial_call=True)
def _refresh(_data):
    u = user()
    if u is None or not u.is_admin:
        return dbc.Alert("Only administrators can see this page.", color="warning")
    return content()


@dash.callback(
    Output("admin-users-message", "children"),
    Output("admin-refresh", "data", allow_duplicate=True),
    Input({"type": "admin-user", "uid": ALL, "action": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def _user_action(clicks):
    trigger = callback_context.triggered_id
    uid = trigger_id("uid")
    if uid is None or not clicked(clicks):
        raise PreventUpdate
    try:
        actor = _admin()
        with session_scope() as session:
            me = session.get(User, actor.id)
            action = trigger.get("action")
            if action in ("admin", "curator"):
                target = set_role(session, me, uid, action)
                done = f"{target.email} is now {action}."
            elif action in ("activate", "deactivate"):
                target = set_user_active(session, me, uid, action == "activate")
                done = f"{target.email} is {'active' if target.active else 'deactivated'}."
            else:
                raise PreventUpdate
    except (PermissionError, AccountError) as exc:
        return alert(str(exc)), no_update
    return alert(done, "success", duration=5000), time.time()


@dash.callback(
    Output(f"{RUNNER}-request", "data"),
    Output("admin-ref-message", "children"),
    Output("admin-refresh", "data", allow_duplicate=True),
    Input({"type": "admin-ref", "rid": ALL}, "n_clicks"),
    State(f"{RUNNER}-nonce", "data"),
    prevent_initial_call=True,
)
def _activate_reference(clicks, nonce):
    reference_id = trigger_id("rid")
    if reference_id is None or not clicked(clicks):
        raise PreventUpdate
    try:
        actor = _admin()
        with session_scope() as session:
            reference = session.get(ReferenceSet, reference_id)
            if reference is None:
                return no_update, alert("No such reference set."), no_update
            set_active(session, reference)
            job = start_redecode_job(session, session.get(User, actor.id))
            token, name = job.token, reference.name
    except (PermissionError, JobRefused) as exc:
        return no_update, alert(str(exc)), no_update
    return (
        {"token": token, "nonce": nonce},
        alert(f"{name} is active; re-decoding every component…", "info"),
        time.time(),
    )
