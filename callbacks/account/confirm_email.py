"""Callbacks of ``dashboard.pages.account.confirm_email``: finish a registration from the mailed link (``?token=``)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.users import (
    AccountError,
    confirm_email,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_in


@dash.callback(
    Output("confirm-message", "children"),
    Output("confirm-go", "href"),
    Input("confirm-submit", "n_clicks"),
    State("confirm-token", "data"),
    State("confirm-password", "value"),
    State("confirm-password2", "value"),
    prevent_initial_call=True,
)
def _confirm(_n, token, password, repeat):
    # A button, not the page load: mail scanners that open links must not finish anybody's registration.
    with session_scope() as session:
        try:
            account = confirm_email(session, text_value(token), text_value(password), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Welcome to INcDb. Your account is ready.", "success"), "/contribute"
