"""Register a curator account."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, html, no_update

from accounts.mail import mail_goes_to_log
from accounts.passwords import PASSWORD_MIN_LENGTH
from accounts.users import (
    TITLES,
    AccountError,
    register,
)
from dashboard.components.curator import alert, narrow_card
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import client_address, signed_in_user

dash.register_page(__name__, path="/account/register", title="Register · INcDb")


def layout(**_query):
    if signed_in_user() is not None:
        return dbc.Alert(["You are signed in. ", html.A("Go to my collections", href="/contribute",
                                                         className="alert-link")], color="info")
    return narrow_card([
        html.H1("Register as a curator", className="h4"),
        html.P("Curators upload movie-watching fMRI components and describe how they were recorded. "
               "Browsing needs no account.", className="text-muted"),
        dbc.Form([
            dbc.Row([
                dbc.Col([dbc.Label("Title", html_for="register-title"),
                         dbc.Select(id="register-title", value="",
                                    options=[{"label": t or "—", "value": t} for t in TITLES])], md=3),
                dbc.Col([dbc.Label("First name *", html_for="register-first-name"),
                         dbc.Input(id="register-first-name", autocomplete="given-name", maxlength=100)], md=4),
                dbc.Col([dbc.Label("Last name *", html_for="register-last-name"),
                         dbc.Input(id="register-last-name", autocomplete="family-name", maxlength=100)], md=5),
            ], className="mb-3"),
            dbc.Label("Affiliation", html_for="register-affiliation"),
            dbc.Input(id="register-affiliation", autocomplete="organization", maxlength=255, className="mb-3",
                      placeholder="university, institute or company"),
            dbc.Label("Email *", html_for="register-email"),
            dbc.Input(id="register-email", type="email", autocomplete="email", className="mb-3"),
            dbc.Row([
                dbc.Col([dbc.Label("Password *", html_for="register-password"),
                         dbc.Input(id="register-password", type="password", autocomplete="new-password"),
                         dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters.")], md=6),
                dbc.Col([dbc.Label("Password again *", html_for="register-password2"),
                         dbc.Input(id="register-password2", type="password", autocomplete="new-password")], md=6),
            ], className="mb-3"),
            dbc.Button("Register", id="register-submit", type="submit", color="primary"),
        ], id="register-form"),
        html.Div(id="register-message"),
        html.Hr(),
        html.P(["Have an account? ", html.A("Sign in", href="/account/sign-in")], className="mb-0 small"),
    ], max_width=720)


@dash.callback(
    Output("register-message", "children"), Output("register-form", "className"),
    Input("register-form", "n_submit"),
    State("register-email", "value"), State("register-title", "value"), State("register-first-name", "value"),
    State("register-last-name", "value"), State("register-affiliation", "value"),
    State("register-password", "value"), State("register-password2", "value"),
    prevent_initial_call=True,
)
def _register(_n, email, title, first, last, affiliation, password, repeat):
    if signed_in_user() is not None:
        return alert("You are signed in already. Sign out to register another account.", "warning"), no_update
    with session_scope() as session:
        try:
            sent_to = register(session, text_value(email), text_value(password), text_value(repeat),
                               address=client_address(), title=text_value(title), first_name=text_value(first),
                               last_name=text_value(last), affiliation=text_value(affiliation))
        except AccountError as exc:
            return alert(exc.messages), no_update
    # The same answer whether or not the address had an account: the form does not tell who is registered.
    text = (f"Check your mail: we sent a message to {sent_to}. Open the link in it within 48 hours to finish "
            "your registration.")
    if mail_goes_to_log():
        text += " (In the embedded mode, without mail, it is written to the server's log.)"
    return alert([text], "info"), "d-none"
