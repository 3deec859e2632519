"""Edit one's own profile."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, html

from accounts.users import (
    TITLES,
    AccountError,
    update_profile,
)
from dashboard.components.curator import alert, narrow_card, sign_in_prompt
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_out_elsewhere, signed_in_user

dash.register_page(__name__, path="/account/profile", title="Profile · INcDb")


def layout(**_query):
    u = signed_in_user()
    if u is None:
        return sign_in_prompt("/account/profile", "your profile")
    titles = TITLES if u.title in TITLES else TITLES + (u.title,)
    return narrow_card([
        html.H1("Your profile", className="h4"),
        html.P([f"Signed in as {u.email} ({u.role}). ", html.A("Change password", href="/account/password")],
               className="text-muted"),
        dbc.Form([
            dbc.Row([
                dbc.Col([dbc.Label("Title", html_for="profile-title"),
                         dbc.Select(id="profile-title", value=u.title,
                                    options=[{"label": t or "—", "value": t} for t in titles])], md=3),
                dbc.Col([dbc.Label("First name *", html_for="profile-first-name"),
                         dbc.Input(id="profile-first-name", value=u.first_name, maxlength=100)], md=4),
                dbc.Col([dbc.Label("Last name *", html_for="profile-last-name"),
                         dbc.Input(id="profile-last-name", value=u.last_name, maxlength=100)], md=5),
            ], className="mb-3"),
            dbc.Label("Affiliation", html_for="profile-affiliation"),
            dbc.Input(id="profile-affiliation", value=u.affiliation, maxlength=255, className="mb-3"),
            dbc.Button("Save", id="profile-submit", type="submit", color="primary"),
        ], id="profile-form"),
        html.Div(id="profile-message"),
        html.Hr(),
        html.H2("Sessions", className="h5"),
        html.P("Signed in on a computer you no longer use, or worried that someone copied your session? This "
               "signs out every other browser; this one stays signed in.", className="text-muted"),
        dbc.Button("Sign out everywhere else", id="signout-everywhere", color="secondary", outline=True),
        html.Div(id="signout-everywhere-message"),
    ], max_width=720)


@dash.callback(
    Output("signout-everywhere-message", "children"),
    Input("signout-everywhere", "n_clicks"),
    prevent_initial_call=True,
)
def _sign_out_elsewhere(_n):
    if signed_in_user() is None:
        return alert("Your session has ended; sign in again.")
    sign_out_elsewhere()
    return alert("Every other session of your account is signed out. This one stays signed in.", "success",
                 duration=6000)


@dash.callback(
    Output("profile-message", "children"),
    Input("profile-form", "n_submit"),
    State("profile-title", "value"), State("profile-first-name", "value"), State("profile-last-name", "value"),
    State("profile-affiliation", "value"),
    prevent_initial_call=True,
)
def _save_profile(_n, title, first, last, affiliation):
    u = signed_in_user()
    if u is None:
        return alert("Your session has ended; sign in again.")
    with session_scope() as session:
        try:
            update_profile(session, u.id, title=text_value(title), first_name=text_value(first),
                           last_name=text_value(last), affiliation=text_value(affiliation))
        except AccountError as exc:
            return alert(exc.messages)
    return alert("Profile saved.", "success", duration=4000)
