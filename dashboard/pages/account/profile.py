"""Edit one's own profile."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from accounts.users import (
    TITLES,
)
from dashboard.components.curator import narrow_card, sign_in_prompt
from web.auth import signed_in_user

dash.register_page(__name__, path="/account/profile", title="Profile · INcDb")


def layout(**_query):
    u = signed_in_user()
    if u is None:
        return sign_in_prompt("/account/profile", "your profile")
    titles = TITLES if u.title in TITLES else TITLES + (u.title,)
    return narrow_card(
        [
            html.H1("Your profile", className="h4"),
            html.P(
                [f"Signed in as {u.email} ({u.role}). ", html.A("Change password", href="/account/password")],
                className="text-muted",
            ),
            dbc.Form(
                [
                    dbc.Row(
                        [
                            dbc.Col(
                                [
                                    dbc.Label("Title", html_for="profile-title"),
                                    dbc.Select(
                                        id="profile-title",
                                        value=u.title,
                                        options=[{"label": t or "—", "value": t} for t in titles],
                                    ),
                                ],
                                md=3,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("First name *", html_for="profile-first-name"),
                                    dbc.Input(id="profile-first-name", value=u.first_name, maxlength=100),
                                ],
                                md=4,
                            ),
                            dbc.Col(
                                [
                                    dbc.Label("Last name *", html_for="profile-last-name"),
                                    dbc.Input(id="profile-last-name", value=u.last_name, maxlength=100),
                                ],
                                md=5,
                            ),
                        ],
                        className="mb-3",
                    ),
                    dbc.Label("Affiliation", html_for="profile-affiliation"),
                    dbc.Input(id="profile-affiliation", value=u.affiliation, maxlength=255, className="mb-3"),
                    dbc.Button("Save", id="profile-submit", type="submit", color="primary"),
                ],
                id="profile-form",
            ),
            html.Div(id="profile-message"),
            html.Hr(),
            html.H2("Sessions", className="h5"),
            html.P(
                "Signed in on a computer you no longer use, or worried that someone copied your session? This "
                "signs out every other browser; this one stays signed in.",
                className="text-muted",
            ),
            dbc.Button("Sign out everywhere else", id="signout-everywhere", color="secondary", outline=True),
            html.Div(id="signout-everywhere-message"),
        ],
        max_width=720,
    )
