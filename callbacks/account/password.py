"""Callbacks of ``dashboard.pages.account.password``: change one's password."""

from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.users import (
    AccountError,
    change_password,
)
from dashboard.components.curator import alert
from dashboard.components.data import text_value
from store.db import session_scope
from store.models import User
from web.auth import sign_in, signed_in_user


@dash.callback(
    Output("password-message", "children"),
    Output("password-form", "className"),
    Input("password-form", "n_submit"),
    State("password-current", "value"),
    State("password-new", "value"),
    State("password-new2", "value"),
    prevent_initial_call=True,
)
def _change_password(_n, current, new, repeat):
    u = signed_in_user()
    if u is None:
        return alert("Your session has ended; sign in again."), no_update
    with session_scope() as session:
        try:
            change_password(session, u.id, text_value(current), text_value(new), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        account = session.get(User, u.id)
        session.expunge(account)
    sign_in(account)  # the change ended every session; this one goes on with the new session version
    return alert("Password changed. Your other sessions are signed out.", "success"), "d-none"
