"""Choose a new password from a reset link (``?token=``)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from accounts.reset import user_for_reset_token
from accounts.users import (
    AccountError,
)
from dashboard.components.curator import RESET_IDS as IDS
from dashboard.components.curator import narrow_card, new_password_fields, token_form_parts
from store.db import session_scope

dash.register_page(__name__, path="/account/reset-password", title="Choose a new password · INcDb")


def layout(token: str | None = None, **_query):
    try:
        with session_scope() as session:
            email = user_for_reset_token(session, token or "").email
    except AccountError as exc:
        return dbc.Alert(
            [
                exc.messages[0],
                " ",
                html.A("Ask for a new link", href="/account/forgot-password", className="alert-link"),
            ],
            color="warning",
        )
    return narrow_card(
        [
            html.H1("Choose a new password", className="h4"),
            html.P(f"For {email}.", className="text-muted"),
            *token_form_parts(IDS, token),
            dbc.Form(
                [
                    *new_password_fields(IDS.password, IDS.password2),
                    dbc.Button("Set password", id=IDS.submit, type="submit", color="primary"),
                ],
                id=IDS.form,
            ),
            html.Div(id=IDS.message),
        ]
    )
