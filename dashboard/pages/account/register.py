"""Register a curator account."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from accounts.passwords import PASSWORD_MIN_LENGTH
from accounts.users import (
    TITLES,
)
from dashboard.components.curator import narrow_card
from web.auth import signed_in_user

dash.register_page(__name__, path="/account/register", title="Register · INcDb")


def layout(**_query):
    if signed_in_user() is not None:
        return dbc.Alert(
            ["You are signed in. ", html.A("Go to my collections", href="/contribute", className="alert-link")],
            color="info",
        )
    return narrow_card(
        [
            html.H1("Register as a curator", className="h4"),
            html.P(
                "Curators upload movie-watching fMRI components and describe how they were recorded. "
                "Browsing needs no account.",
                className="text-muted",
            ),
            dbc.Form(
                [
                    dbc.Row(
                        [
                            dbc.Col(
                                [
                                    dbc.Label("Title", html_for="register-title"),
                                    dbc.Select(
                                        id="register-title",
                                        value="",
                                        options=[{"label": t or "—", "value": t} for t in TITLES],
                                    ),
                                ],
                                md=3,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("First name *", html_for="register-first-name"),
                                    dbc.Input(id="register-first-name", autocomplete="given-name", maxlength=100),
                                ],
                                md=4,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("Last name *", html_for="register-last-name"),
                                    dbc.Input(id="register-last-name", autocomplete="family-name", maxlength=100),
                                ],
                                md=5,
                            ),
                        ],
                        className="mb-3",
                    ),
                    dbc.Label("Affiliation", html_for="register-affiliation"),
                    dbc.Input(
                        id="register-affiliation",
                        autocomplete="organization",
                        maxlength=255,
                        className="mb-3",
                        placeholder="university, institute or company",
                    ),
                    dbc.Label("Email *", html_for="register-email"),
                    dbc.Input(id="register-email", type="email", autocomplete="email", className="mb-3"),
                    dbc.Row(
                        [
                            dbc.Col(
                                [
                                    dbc.Label("Password *", html_for="register-password"),
                                    dbc.Input(id="register-password", type="password", autocomplete="new-password"),
                                    dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters."),
                                ],
                                md=6,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("Password again *", html_for="register-password2"),
                                    dbc.Input(id="register-password2", type="password", autocomplete="new-password"),
                                ],
                                md=6,
                            ),
                        ],
                        className="mb-3",
                    ),
                    dbc.Button("Register", id="register-submit", type="submit", color="primary"),
                ],
                id="register-form",
            ),
            html.Div(id="register-message"),
            html.Hr(),
            html.P(["Have an account? ", html.A("Sign in", href="/account/sign-in")], className="mb-0 small"),
        ],
        max_width=720,
    )
