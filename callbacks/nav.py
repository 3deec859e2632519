"""The sign-in state in the navbar (``nav-account``)."""
from __future__ import annotations

from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, html

from callbacks.common import user


def account_menu(pathname: str | None):
    u = user()
    if u is None:
        nxt = quote(pathname or "/", safe="/")
        return [dbc.NavLink("Sign in", href=f"/account/sign-in?next={nxt}", id="nav-sign-in"),
                dbc.NavLink("Register", href="/account/register", id="nav-register")]
    items = [dbc.DropdownMenuItem("My collections", href="/contribute"),
             dbc.DropdownMenuItem("Profile", href="/account/profile"),
             dbc.DropdownMenuItem("Change password", href="/account/password")]
    if u.is_admin:
        items.append(dbc.DropdownMenuItem("Administration", href="/admin"))
    items += [dbc.DropdownMenuItem(divider=True),
              dbc.DropdownMenuItem("Sign out", href="/account/sign-out", id="nav-sign-out")]
    name = " ".join(p for p in (u.first_name, u.last_name) if p) or u.email
    return dbc.DropdownMenu(items, label=html.Span(name, id="nav-user-name"), nav=True, in_navbar=True,
                            align_end=True, id="nav-account-menu")


@dash.callback(Output("nav-account", "children"), Input("url", "pathname"))
def _fill_account(pathname):
    return account_menu(pathname)
