"""Callbacks of ``dashboard.pages.account.reset_password``: choose a new password from a reset link (``?token=``)."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.reset import reset_password
from accounts.users import (
    AccountError,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_in


@dash.callback(
    Output("reset-message", "children"),
    Output("reset-go", "href"),
    Input("reset-form", "n_submit"),
    State("reset-token", "data"),
    State("reset-password", "value"),
    State("reset-password2", "value"),
    prevent_initial_call=True,
)
def _reset(_n, token, new, repeat):
    with session_scope() as session:
        try:
            account = reset_password(session, text_value(token), text_value(new), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Your password is changed and you are signed in.", "success"), "/contribute"
