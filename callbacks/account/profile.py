"""Callbacks of ``dashboard.pages.account.profile``: edit one's own profile."""

from __future__ import annotations

import dash
from dash import Input, Output, State

from accounts.users import (
    AccountError,
    update_profile,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_out_elsewhere, signed_in_user


@dash.callback(
    Output("signout-everywhere-message", "children"),
    Input("signout-everywhere", "n_clicks"),
    prevent_initial_call=True,
)
def _sign_out_elsewhere(_n):
    if signed_in_user() is None:
        return alert("Your session has ended; sign in again.")
    sign_out_elsewhere()
    return alert(
        "Every other session of your account is signed out. This one stays signed in.", "success", duration=6000
    )


@dash.callback(
    Output("profile-message", "children"),
    Input("profile-form", "n_submit"),
    State("profile-title", "value"),
    State("profile-first-name", "value"),
    State("profile-last-name", "value"),
    State("profile-affiliation", "value"),
    prevent_initial_call=True,
)
def _save_profile(_n, title, first, last, affiliation):
    u = signed_in_user()
    if u is None:
        return alert("Your session has ended; sign in again.")
    with session_scope() as session:
        try:
            update_profile(
                session,
                u.id,
                title=text_value(title),
                first_name=text_value(first),
                last_name=text_value(last),
                affiliation=text_value(affiliation),
            )
        except AccountError as exc:
            return alert(exc.messages)
    return alert("Profile saved.", "success", duration=4000)
