"""What the two pages that finish an account action from a mailed link share: run the action with the token and
the password typed twice, then sign the account in and send the browser on."""

from __future__ import annotations

from collections.abc import Callable

from dash import Input, Output, State, no_update

from accounts.users import AccountError
from dashboard.components.curator import TokenFormIds, alert
from dashboard.components.data import text_value
from store.db import session_scope
from web.auth import sign_in

NEXT_PAGE = "/contribute"


def token_callback_args(ids: TokenFormIds, trigger: Input) -> list:
    """The outputs, trigger and states of such a page's callback."""
    return [
        Output(ids.message, "children"),
        Output(ids.go, "href"),
        trigger,
        State(ids.token, "data"),
        State(ids.password, "value"),
        State(ids.password2, "value"),
    ]


def finish_with_token(action: Callable, token, password, repeat, welcome: str):
    """``action(session, token, password, repeat)`` returns the account; its errors are shown, nothing else moves."""
    with session_scope() as session:
        try:
            account = action(session, text_value(token), text_value(password), text_value(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert(welcome, "success"), NEXT_PAGE
