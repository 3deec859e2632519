"""Finish a registration from the mailed link (``?token=``)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from accounts.users import (
    AccountError,
    confirm_email,
    user_for_confirm_token,
)
from dashboard.components.curator import alert, narrow_card
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_in

dash.register_page(__name__, path="/account/confirm-email", title="Confirm your email address · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            email = user_for_confirm_token(session, token if isinstance(token, str) else "").email
    except AccountError as exc:
        return dbc.Alert([exc.messages[0], " ", html.A("Sign in", href="/account/sign-in", className="alert-link"),
                          " · ", html.A("Register", href="/account/register", className="alert-link")],
                         color="warning", id="confirm-invalid")
    return narrow_card([
        html.H1("Confirm your email address", className="h4"),
        html.P(f"Finish creating the curator account for {email}.", className="text-muted"),
        dcc.Location(id="confirm-go", refresh=True),
        dcc.Store(id="confirm-token", data=token),
        dbc.Button("Confirm and sign in", id="confirm-submit", color="primary"),
        html.Div(id="confirm-message"),
    ])


@dash.callback(
    Output("confirm-message", "children"), Output("confirm-go", "href"),
    Input("confirm-submit", "n_clicks"), State("confirm-token", "data"),
    prevent_initial_call=True,
)
def _confirm(_n, token):
    # A button, not the page load: mail scanners that open links must not finish anybody's registration.
    with session_scope() as session:
        try:
            account = confirm_email(session, text_value(token))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Welcome to INcDb. Your account is ready.", "success"), "/contribute"
