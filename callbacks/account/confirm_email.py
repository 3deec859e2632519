"""Callbacks of ``dashboard.pages.account.confirm_email``: finish a registration from the mailed link (``?token=``)."""

from __future__ import annotations

import dash
from dash import Input

from accounts.users import confirm_email
from callbacks.account.tokens import finish_with_token, token_callback_args
from dashboard.components.curator import CONFIRM_IDS as IDS


@dash.callback(*token_callback_args(IDS, Input(IDS.submit, "n_clicks")), prevent_initial_call=True)
def _confirm(_n, token, password, repeat):
    # A button, not the page load: mail scanners that open links must not finish anybody's registration.
    return finish_with_token(confirm_email, token, password, repeat, "Welcome to INcDb. Your account is ready.")
