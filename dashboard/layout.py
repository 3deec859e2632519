"""The page shell: navbar, container and footer."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.nav  # noqa: F401 - fills the navbar's nav-account slot with the sign-in state

NAV_ITEMS = (("Home", "/"), ("Terms", "/terms"), ("Movies", "/movies"), ("Contribute", "/contribute"))


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
        html.Footer(dbc.Container(html.Small(
            "INcDb maps brain activity recorded while people watch movies. Demo data on this site is synthetic.",
            className="text-muted")), className="border-top py-3 mt-5"),
    ])
