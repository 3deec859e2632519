"""Change one's password."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

import callbacks.accounts  # noqa: F401 - registers this page's callbacks
from accounts.passwords import PASSWORD_MIN_LENGTH
from callbacks.common import sign_in_prompt, user

dash.register_page(__name__, path="/account/password", title="Change password · INcDb")


def layout(**_query):
    if user() is None:
        return sign_in_prompt("/account/password", "this page")
    return dbc.Card(dbc.CardBody([
        html.H1("Change password", className="h4"),
        dbc.Form([
            dbc.Label("Current password", html_for="password-current"),
            dbc.Input(id="password-current", type="password", autocomplete="current-password", className="mb-3"),
            dbc.Label("New password", html_for="password-new"),
            dbc.Input(id="password-new", type="password", autocomplete="new-password"),
            dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters."),
            html.Div(dbc.Label("New password again", html_for="password-new2"), className="mt-3"),
            dbc.Input(id="password-new2", type="password", autocomplete="new-password", className="mb-3"),
            dbc.Button("Change password", id="password-submit", type="submit", color="primary"),
        ], id="password-form"),
        html.Div(id="password-message"),
    ]), className="mx-auto", style={"maxWidth": "460px"})
