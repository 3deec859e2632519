"""Finish a registration from the mailed link (``?token=``)."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.accounts  # noqa: F401 - registers this page's callbacks
from accounts.users import AccountError, user_for_confirm_token
from store.db import session_scope

dash.register_page(__name__, path="/account/confirm-email", title="Confirm your email address · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            email = user_for_confirm_token(session, token if isinstance(token, str) else "").email
    except AccountError as exc:
        return dbc.Alert([exc.messages[0], " ", html.A("Sign in", href="/account/sign-in", className="alert-link"),
                          " · ", html.A("Register", href="/account/register", className="alert-link")],
                         color="warning", id="confirm-invalid")
    return dbc.Card(dbc.CardBody([
        html.H1("Confirm your email address", className="h4"),
        html.P(f"Finish creating the curator account for {email}.", className="text-muted"),
        dcc.Location(id="confirm-go", refresh=True),
        dcc.Store(id="confirm-token", data=token),
        dbc.Button("Confirm and sign in", id="confirm-submit", color="primary"),
        html.Div(id="confirm-message"),
    ]), className="mx-auto", style={"maxWidth": "460px"})
