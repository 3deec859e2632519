"""Ask for a password reset link."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.components.curator import narrow_card

dash.register_page(__name__, path="/account/forgot-password", title="Reset password · INcDb")


def layout(**_query):
    return narrow_card(
        [
            html.H1("Reset your password", className="h4"),
            html.P("Enter the email address of your account; we send you a link to choose a new password."),
            dbc.Form(
                [
                    dbc.Label("Email", html_for="forgot-email"),
                    dbc.Input(id="forgot-email", type="email", autocomplete="username", className="mb-3"),
                    dbc.Button("Send the link", id="forgot-submit", type="submit", color="primary"),
                ],
                id="forgot-form",
            ),
            html.Div(id="forgot-message"),
        ]
    )
