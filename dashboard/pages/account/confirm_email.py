"""Finish a registration from the mailed link (``?token=``).

Usually one click: the password was chosen on the registration form. An address registered more than once before
it was confirmed has no password (``accounts.users.register`` explains why), and this page asks for one.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from accounts.passwords import PASSWORD_MIN_LENGTH
from accounts.users import (
    AccountError,
    password_chosen_on_confirmation,
    user_for_confirm_token,
)
from dashboard.components.curator import narrow_card
from store.db import session_scope

dash.register_page(__name__, path="/account/confirm-email", title="Confirm your email address · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            user = user_for_confirm_token(session, token if isinstance(token, str) else "")
            email, choose = user.email, password_chosen_on_confirmation(user)
    except AccountError as exc:
        return dbc.Alert(
            [
                exc.messages[0],
                " ",
                html.A("Sign in", href="/account/sign-in", className="alert-link"),
                " · ",
                html.A("Register", href="/account/register", className="alert-link"),
            ],
            color="warning",
            id="confirm-invalid",
        )
    # The password fields are always there (the callback reads them), shown only when the password is chosen here.
    password_fields = html.Div(
        [
            html.P(
                "This address was registered more than once, so choose the password of your account here.",
                className="small",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Password", html_for="confirm-password"),
                            dbc.Input(id="confirm-password", type="password", autocomplete="new-password"),
                            dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters."),
                        ],
                        md=6,
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Password again", html_for="confirm-password2"),
                            dbc.Input(id="confirm-password2", type="password", autocomplete="new-password"),
                        ],
                        md=6,
                    ),
                ],
                className="mb-3",
            ),
        ],
        className="" if choose else "d-none",
    )
    return narrow_card(
        [
            html.H1("Confirm your email address", className="h4"),
            html.P(f"Finish creating the curator account for {email}.", className="text-muted"),
            dcc.Location(id="confirm-go", refresh=True),
            dcc.Store(id="confirm-token", data=token),
            password_fields,
            dbc.Button(
                "Choose the password and sign in" if choose else "Confirm and sign in",
                id="confirm-submit",
                color="primary",
            ),
            html.Div(id="confirm-message"),
        ]
    )
