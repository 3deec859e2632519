"""Callbacks of ``dashboard.pages.account.sign_out``: sign out: a button, because signing out changes state and so
must be a request with the CSRF token (a link."""

from __future__ import annotations

import dash
from dash import Input, Output

from web.auth import sign_out, signed_in_user


@dash.callback(
    Output("signout-go", "href"),
    Output("signout-message", "children"),
    Input("signout-submit", "n_clicks"),
    prevent_initial_call=True,
)
def _sign_out(_n):
    # A click on the page's button: a Dash callback is a POST carrying the CSRF header, which a cross-site page
    # cannot send, so a link or redirect to /account/sign-out signs nobody out.
    if signed_in_user() is None:
        return "/", "You are signed out."
    sign_out()
    return "/", "Signed out."
