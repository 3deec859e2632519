"""Ask for a password reset link."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update

from accounts.mail import mail_goes_to_log
from accounts.reset import request_password_reset
from accounts.users import (
    AccountError,
)
from dashboard.components.curator import alert, narrow_card
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import client_address

dash.register_page(__name__, path="/account/forgot-password", title="Reset password · INcDb")


def layout(**_query):
    return narrow_card([
        html.H1("Reset your password", className="h4"),
        html.P("Enter the email address of your account; we send you a link to choose a new password."),
        dbc.Form([
            dbc.Label("Email", html_for="forgot-email"),
            dbc.Input(id="forgot-email", type="email", autocomplete="username", className="mb-3"),
            dbc.Button("Send the link", id="forgot-submit", type="submit", color="primary"),
        ], id="forgot-form"),
        html.Div(id="forgot-message"),
    ])


@dash.callback(
    Output("forgot-message", "children"), Output("forgot-form", "className"),
    Input("forgot-form", "n_submit"),
    State("forgot-email", "value"),
    prevent_initial_call=True,
)
def _forgot(_n, email):
    with session_scope() as session:
        try:
            request_password_reset(session, text_value(email), client_address())
        except AccountError as exc:
            return alert(exc.messages), no_update
    text = "If an account exists for this address, a link to reset its password is on its way. It works for one hour."
    if mail_goes_to_log():
        text += " (In the embedded mode, without mail, the link is written to the server's log.)"
    return alert(text, "info"), "d-none"
