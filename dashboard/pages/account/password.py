"""Change one's password."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update

from accounts.users import (
    AccountError,
    change_password,
)
from dashboard.components.curator import alert, narrow_card, new_password_fields, sign_in_prompt
from dashboard.components.data import text_value
from store.db import session_scope
from store.models import User
from web.auth import sign_in, signed_in_user

dash.register_page(__name__, path="/account/password", title="Change password · INcDb")


def layout(**_query):
    if signed_in_user() is None:
        return sign_in_prompt("/account/password", "this page")
    return narrow_card([
        html.H1("Change password", className="h4"),
        dbc.Form([
            dbc.Label("Current password", html_for="password-current"),
            dbc.Input(id="password-current", type="password", autocomplete="current-password", className="mb-3"),
            *new_password_fields("password-new", "password-new2"),
            dbc.Button("Change password", id="password-submit", type="submit", color="primary"),
        ], id="password-form"),
        html.Div(id="password-message"),
    ])


@dash.callback(
    Output("password-message", "children"), Output("password-form", "className"),
    Input("password-form", "n_submit"),
    State("password-current", "value"), State("password-new", "value"), State("password-new2", "value"),
    prevent_initial_call=True,
)
def _change_password(_n, current, new, repeat):
    u = signed_in_user()
    if u is None:
        return alert("Your session has ended; sign in again."), no_update
    with session_scope() as session:
        try:
            change_password(session, u.id, text_value(current), text_value(new), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        account = session.get(User, u.id)
        session.expunge(account)
    sign_in(account)  # the change ended every session; this one goes on with the new session version
    return alert("Password changed. Your other sessions are signed out.", "success"), "d-none"
