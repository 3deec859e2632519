"""Choose a new password from a reset link (``?token=``)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.accounts  # noqa: F401 - registers this page's callbacks
from accounts.passwords import PASSWORD_MIN_LENGTH
from accounts.reset import user_for_reset_token
from accounts.users import AccountError
from store.db import session_scope

dash.register_page(__name__, path="/account/reset-password", title="Choose a new password · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            email = user_for_reset_token(session, token or "").email
    except AccountError as exc:
        return dbc.Alert([exc.messages[0], " ", html.A("Ask for a new link", href="/account/forgot-password",
                                                       className="alert-link")], color="warning")
    return dbc.Card(dbc.CardBody([
        html.H1("Choose a new password", className="h4"),
        html.P(f"For {email}.", className="text-muted"),
        dcc.Location(id="reset-go", refresh=True),
        dcc.Store(id="reset-token", data=token),
        dbc.Form([
            dbc.Label("New password", html_for="reset-password"),
            dbc.Input(id="reset-password", type="password", autocomplete="new-password"),
            dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters."),
            html.Div(dbc.Label("New password again", html_for="reset-password2"), className="mt-3"),
            dbc.Input(id="reset-password2", type="password", autocomplete="new-password", className="mb-3"),
            dbc.Button("Set password", id="reset-submit", type="submit", color="primary"),
        ], id="reset-form"),
        html.Div(id="reset-message"),
    ]), className="mx-auto", style={"maxWidth": "460px"})
