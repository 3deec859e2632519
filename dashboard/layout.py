"""The page shell: a skip link, the navbar (with the sign-in state, filled by its callback), the page's one <main>
and the footer.

The skip link is the first focusable element of every page and moves the focus to <main> (``tabIndex=-1`` so it can
take the focus without joining the tab order); the pages themselves bring no landmarks of their own.
"""

from __future__ import annotations

from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
import flask
from dash import dcc, html
from sqlalchemy.exc import SQLAlchemyError

from dashboard.components.data import read
from store import queries
from web.auth import signed_in_user

NAV_ITEMS = (
    ("Home", "/"),
    ("Terms", "/terms"),
    ("Movies", "/movies"),
    ("Decode a map", "/decode"),
    ("Contribute", "/contribute"),
)
MAIN_ID = "main-content"
# The documentation pages are served by web/docs.py (Flask), not by Dash.
FOOTER_LINKS = (
    ("About and how to cite", "/about"),
    ("User guide", "/docs/user-guide"),
    ("Methods", "/docs/methods"),
    ("API", "/docs/api"),
)


def navbar() -> html.Nav:
    # What dbc.Navbar(color="dark", dark=True) renders, as a plain <nav> that can take its name (a page may hold
    # other navigation, e.g. breadcrumbs, and landmarks need names that tell them apart).
    return html.Nav(
        dbc.Container(
            [
                dbc.NavbarBrand(
                    [
                        html.Span("INcDb", className="fw-bold"),
                        html.Small(" Internet Neurocinematics Database", className="ms-2 incdb-brand-sub"),
                    ],
                    href="/",
                ),
                dbc.Nav(
                    [dbc.NavItem(dbc.NavLink(label, href=href, active="exact")) for label, href in NAV_ITEMS]
                    + [html.Div(id="nav-account", className="ms-lg-3 d-flex align-items-center")],
                    className="ms-auto navbar-nav",
                    navbar=True,
                ),  # navbar-nav: dbc adds it only inside dbc.Navbar
            ],
            fluid="lg",
        ),
        className="navbar navbar-expand-md navbar-dark bg-dark mb-4",
        **{"aria-label": "Site"},
    )


def footer_note() -> str:
    """The footer's first sentence, with the warning about synthetic data only while demo collections are shown."""
    note = "INcDb maps brain activity recorded while people watch movies. "
    # Dash also calls the layout once at start-up, outside any request, and on the first request, which may come
    # before the database exists (a process that serves only the API or files): no tables, no sentence.
    if not flask.has_request_context():
        return note
    try:
        demo = read(queries.demo_collection_count)
    except SQLAlchemyError:
        return note
    return note + "Demo data on this site is synthetic. " if demo else note


def shell() -> html.Div:
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            html.A("Skip to content", href=f"#{MAIN_ID}", className="incdb-skip-link", id="skip-link"),
            html.Header(navbar()),
            html.Main(dbc.Container(dash.page_container, fluid="lg", className="pb-5"), id=MAIN_ID, tabIndex="-1"),
            html.Footer(
                dbc.Container(
                    html.Small(
                        [
                            footer_note(),
                            *[part for label, href in FOOTER_LINKS for part in (" · ", html.A(label, href=href))][1:],
                        ],
                        className="text-muted",
                        id="footer",
                    )
                ),
                className="border-top py-3 mt-5",
            ),
        ]
    )


def account_menu(pathname: str | None):
    """The navbar's account slot: sign-in and register links, or the signed-in user's menu."""
    u = signed_in_user()
    if u is None:
        nxt = quote(pathname or "/", safe="/")
        return [
            dbc.NavLink("Sign in", href=f"/account/sign-in?next={nxt}", id="nav-sign-in"),
            dbc.NavLink("Register", href="/account/register", id="nav-register"),
        ]
    items = [
        dbc.DropdownMenuItem("My collections", href="/contribute"),
        dbc.DropdownMenuItem("Profile", href="/account/profile"),
        dbc.DropdownMenuItem("Change password", href="/account/password"),
    ]
    if u.is_admin:
        items.append(dbc.DropdownMenuItem("Administration", href="/admin"))
    items += [
        dbc.DropdownMenuItem(divider=True),
        dbc.DropdownMenuItem("Sign out", href="/account/sign-out", id="nav-sign-out"),
    ]
    name = " ".join(p for p in (u.first_name, u.last_name) if p) or u.email
    return dbc.DropdownMenu(
        items,
        label=html.Span(name, id="nav-user-name"),
        nav=True,
        in_navbar=True,
        align_end=True,
        id="nav-account-menu",
    )
