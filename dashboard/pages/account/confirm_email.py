"""Finish a registration from the mailed link (``?token=``).

Usually one click: the password was chosen on the registration form. An address registered more than once before
it was confirmed has no password (``accounts.users.register`` explains why), and this page asks for one.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from accounts.users import (
    AccountError,
    password_chosen_on_confirmation,
    user_for_confirm_token,
)
from dashboard.components.curator import CONFIRM_IDS as IDS
from dashboard.components.curator import narrow_card, new_password_fields, token_form_parts
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
            id=IDS.invalid,
        )
    # The password fields are always there (the callback reads them), shown only when the password is chosen here.
    password_fields = html.Div(
        [
            html.P(
                "This address was registered more than once, so choose the password of your account here.",
                className="small",
            ),
            *new_password_fields(IDS.password, IDS.password2, label="Password"),
        ],
        className="" if choose else "d-none",
    )
    return narrow_card(
        [
            html.H1("Confirm your email address", className="h4"),
            html.P(f"Finish creating the curator account for {email}.", className="text-muted"),
            *token_form_parts(IDS, token),
            password_fields,
            dbc.Button(
                "Choose the password and sign in" if choose else "Confirm and sign in",
                id=IDS.submit,
                color="primary",
            ),
            html.Div(id=IDS.message),
        ]
    )
