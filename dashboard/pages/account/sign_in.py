"""Sign in."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.curator import narrow_card
from web.auth import safe_next, signed_in_user

dash.register_page(__name__, path="/account/sign-in", title="Sign in · INcDb")


def layout(next: str | None = None, **_query):
    u = signed_in_user()
    if u is not None:
        return dbc.Alert(
            [
                f"You are signed in as {u.email}. ",
                html.A("Go to my collections", href=safe_next(next), className="alert-link"),
            ],
            color="info",
        )
    return narrow_card(
        [
            html.H1("Sign in", className="h4 mb-3"),
            dcc.Location(id="signin-go", refresh=True),
            dcc.Store(id="signin-next", data=safe_next(next)),
            dbc.Form(
                [
                    dbc.Label("Email", html_for="signin-email"),
                    dbc.Input(
                        id="signin-email", type="email", autocomplete="username", autofocus=True, className="mb-3"
                    ),
                    dbc.Label("Password", html_for="signin-password"),
                    dbc.Input(id="signin-password", type="password", autocomplete="current-password", className="mb-3"),
                    dbc.Button("Sign in", id="signin-submit", type="submit", color="primary"),
                ],
                id="signin-form",
            ),
            html.Div(id="signin-message"),
            html.Hr(),
            html.P(
                [
                    html.A("Forgot your password?", href="/account/forgot-password"),
                    " · ",
                    html.A("Register as a curator", href="/account/register"),
                ],
                className="mb-0 small",
            ),
        ]
    )
