"""Callbacks of ``dashboard.pages.account.register``: register a curator account."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.mail import mail_goes_to_log
from accounts.users import (
    AccountError,
    register,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import client_address, signed_in_user


@dash.callback(
    Output("register-message", "children"),
    Output("register-form", "className"),
    Input("register-form", "n_submit"),
    State("register-email", "value"),
    State("register-title", "value"),
    State("register-first-name", "value"),
    State("register-last-name", "value"),
    State("register-affiliation", "value"),
    State("register-password", "value"),
    State("register-password2", "value"),
    prevent_initial_call=True,
)
def _register(_n, email, title, first, last, affiliation, password, repeat):
    if signed_in_user() is not None:
        return alert("You are signed in already. Sign out to register another account.", "warning"), no_update
    with session_scope() as session:
        try:
            sent_to = register(
                session,
                text_value(email),
                text_value(password),
                text_value(repeat),
                address=client_address(),
                title=text_value(title),
                first_name=text_value(first),
                last_name=text_value(last),
                affiliation=text_value(affiliation),
            )
        except AccountError as exc:
            return alert(exc.messages), no_update
    # The same answer whether or not the address had an account: the form does not tell who is registered.
    text = (
        f"Check your mail: we sent a message to {sent_to}. Open the link in it within 48 hours to finish "
        "your registration."
    )
    if mail_goes_to_log():
        text += " (In the embedded mode, without mail, it is written to the server's log.)"
    return alert([text], "info"), "d-none"
