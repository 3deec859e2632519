"""Choose a new password from a reset link (``?token=``)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from accounts.reset import reset_password, user_for_reset_token
from accounts.users import (
    AccountError,
)
from dashboard.components.curator import alert, narrow_card, new_password_fields
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_in

dash.register_page(__name__, path="/account/reset-password", title="Choose a new password · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            email = user_for_reset_token(session, token or "").email
    except AccountError as exc:
        return dbc.Alert([exc.messages[0], " ", html.A("Ask for a new link", href="/account/forgot-password",
                                                       className="alert-link")], color="warning")
    return narrow_card([
        html.H1("Choose a new password", className="h4"),
        html.P(f"For {email}.", className="text-muted"),
        dcc.Location(id="reset-go", refresh=True),
        dcc.Store(id="reset-token", data=token),
        dbc.Form([
            *new_password_fields("reset-password", "reset-password2"),
            dbc.Button("Set password", id="reset-submit", type="submit", color="primary"),
        ], id="reset-form"),
        html.Div(id="reset-message"),
    ])


@dash.callback(
    Output("reset-message", "children"), Output("reset-go", "href"),
    Input("reset-form", "n_submit"),
    State("reset-token", "data"), State("reset-password", "value"), State("reset-password2", "value"),
    prevent_initial_call=True,
)
def _reset(_n, token, new, repeat):
    with session_scope() as session:
        try:
            account = reset_password(session, text_value(token), text_value(new), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Your password is changed and you are signed in.", "success"), "/contribute"
