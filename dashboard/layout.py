"""The page shell: navbar (with the sign-in state, filled by its callback), container and footer."""
from __future__ import annotations

from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from web.auth import signed_in_user

NAV_ITEMS = (("Home", "/"), ("Terms", "/terms"), ("Movies", "/movies"), ("Decode a map", "/decode"),
             ("Contribute", "/contribute"))
# The documentation pages are served by web/docs.py (Flask), not by Dash.
FOOTER_LINKS = (("About and how to cite", "/about"), ("User guide", "/docs/user-guide"), ("Methods", "/docs/methods"),
                ("API", "/docs/api"))


def navbar() -> dbc.Navbar:
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand([html.Span("INcDb", className="fw-bold"),
                             html.Small(" Internet Neurocinematics Database", className="ms-2 text-white-50")],
                            href="/"),
            dbc.Nav([dbc.NavItem(dbc.NavLink(label, href=href, active="exact")) for label, href in NAV_ITEMS]
                    + [html.Div(id="nav-account", className="ms-lg-3 d-flex align-items-center")],
                    className="ms-auto", navbar=True),
        ], fluid="lg"),
        color="dark", dark=True, className="mb-4",
    )


def shell() -> html.Div:
    return html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        navbar(),
        dbc.Container(dash.page_container, fluid="lg", className="pb-5"),
        html.Footer(dbc.Container(html.Small([
            "INcDb maps brain activity recorded while people watch movies. Demo data on this site is synthetic. ",
            *[part for label, href in FOOTER_LINKS for part in (" · ", html.A(label, href=href))][1:],
        ], className="text-muted", id="footer")), className="border-top py-3 mt-5"),
    ])


def account_menu(pathname: str | None):
    """The navbar's account slot: sign-in and register links, or the signed-in user's menu."""
    u = signed_in_user()
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
