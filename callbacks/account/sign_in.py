"""Callbacks of ``dashboard.pages.account.sign_in``: sign in."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.users import (
    AccountError,
    authenticate,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import client_address, safe_next, sign_in


@dash.callback(
    Output("signin-message", "children"),
    Output("signin-go", "href"),
    Input("signin-form", "n_submit"),
    State("signin-email", "value"),
    State("signin-password", "value"),
    State("signin-next", "data"),
    prevent_initial_call=True,
)
def _sign_in(_n, email, password, nxt):
    with session_scope() as session:
        try:
            account = authenticate(session, text_value(email), text_value(password), client_address())
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.expunge(account)
    sign_in(account)
    return alert("Signed in.", "success"), safe_next(nxt)
