"""Change one's password."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.curator import narrow_card, new_password_fields, sign_in_prompt
from web.auth import signed_in_user

dash.register_page(__name__, path="/account/password", title="Change password · INcDb")


def layout(**_query):
    if signed_in_user() is None:
        return sign_in_prompt("/account/password", "this page")
    return narrow_card(
        [
            html.H1("Change password", className="h4"),
            dbc.Form(
                [
                    dbc.Label("Current password", html_for="password-current"),
                    dbc.Input(
                        id="password-current", type="password", autocomplete="current-password", className="mb-3"
                    ),
                    *new_password_fields("password-new", "password-new2"),
                    dbc.Button("Change password", id="password-submit", type="submit", color="primary"),
                ],
                id="password-form",
            ),
            html.Div(id="password-message"),
        ]
    )
