"""Callbacks of ``dashboard.pages.account.forgot_password``: ask for a password reset link."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.mail import mail_goes_to_log
from accounts.reset import request_password_reset
from accounts.users import (
    AccountError,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import client_address


@dash.callback(
    Output("forgot-message", "children"),
    Output("forgot-form", "className"),
    Input("forgot-form", "n_submit"),
    State("forgot-email", "value"),
    prevent_initial_call=True,
)
def _forgot(_n, email):
    with session_scope() as session:
        try:
            request_password_reset(session, text_value(email), client_address())
        except AccountError as exc:
            return alert(exc.messages), no_update
    text = "If an account exists for this address, a link to reset its password is on its way. It works for one hour."
    if mail_goes_to_log():
        text += " (In the embedded mode, without mail, the link is written to the server's log.)"
    return alert(text, "info"), "d-none"
