"""Callbacks of ``dashboard.pages.account.reset_password``: choose a new password from a reset link (``?token=``)."""

from __future__ import annotations

import dash
from dash import Input

from accounts.reset import reset_password
from callbacks.account.tokens import finish_with_token, token_callback_args
from dashboard.components.curator import RESET_IDS as IDS


@dash.callback(*token_callback_args(IDS, Input(IDS.form, "n_submit")), prevent_initial_call=True)
def _reset(_n, token, new, repeat):
    return finish_with_token(reset_password, token, new, repeat, "Your password is changed and you are signed in.")
