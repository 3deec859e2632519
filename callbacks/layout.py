"""Callbacks of ``dashboard.layout``: the page shell: a skip link, the navbar (with the sign-in state, filled by its
callback), the page's one <main>."""

from __future__ import annotations

import dash
from dash import Input, Output

from dashboard.layout import account_menu


@dash.callback(Output("nav-account", "children"), Input("url", "pathname"))
def _fill_account(pathname):
    return account_menu(pathname)
