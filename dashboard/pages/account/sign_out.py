"""Sign out: a button, because signing out changes state and so must be a request with the CSRF token (a link
from another site to this page shows the button and does nothing else)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.curator import narrow_card
from web.auth import signed_in_user

dash.register_page(__name__, path="/account/sign-out", title="Sign out · INcDb")


def layout(**_query):
    if signed_in_user() is None:
        return html.P(["You are signed out. ", html.A("Home", href="/")], id="signout-message", className="text-muted")
    return narrow_card(
        [
            html.H1("Sign out", className="h4"),
            html.P("Signing out ends your sessions in every browser.", className="text-muted"),
            dcc.Location(id="signout-go", refresh=True),
            dbc.Button("Sign out", id="signout-submit", color="primary"),
            html.Div(id="signout-message", className="mt-3"),
        ]
    )
