"""Security headers on every response: a Content-Security-Policy that Dash and the viewer work with, no framing,
no MIME sniffing, and referrers only within the site.

The policy allows scripts from this site only, plus Dash's own inline scripts (the renderer start-up and the
clientside callbacks) by their hashes, which ``Dash.csp_hashes()`` computes from the scripts the app registered, not
from the page. Neither Dash's renderer nor plotly.js nor NiiVue needs ``eval`` (the browser tests would see the
refusal). Styles may be inline: React, Plotly and the Bootstrap components set them at run time. The Bootswatch theme
imports its Lato font from Google Fonts, which is therefore the one other origin allowed (for styles and fonts
only). Images may be ``data:`` URLs, as NiiVue's built-in ones are (without, the viewer never finishes loading);
its maps are fetched from this site and unpacked in the page, without workers or ``blob:`` URLs.
"""

from __future__ import annotations

import flask
from dash import hooks

DASH_APP = "incdb_dash_app"  # key in Flask's app.extensions
BASE_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline' https://fonts.googleapis.com",
    "img-src": "'self' data:",
    "font-src": "'self' data: https://fonts.gstatic.com",
    "connect-src": "'self'",
    "worker-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def content_security_policy(script_hashes: list[str] | tuple[str, ...] = ()) -> str:
    policy = dict(BASE_POLICY)
    if script_hashes:
        policy["script-src"] += " " + " ".join(script_hashes)
    return "; ".join(f"{name} {value}" for name, value in policy.items())


@hooks.setup()
def _remember_dash_app(app) -> None:
    """Runs for every Dash app as it is made: the Flask app under it learns which one it is (``dash.get_app()``
    answers with the newest app of the process, which in tests need not be the one serving)."""
    server = getattr(app, "server", None)
    if isinstance(server, flask.Flask):
        server.extensions[DASH_APP] = app


def _dash_script_hashes() -> list[str]:
    """Hashes of the inline scripts of the Dash app on this Flask app (none without one)."""
    app = flask.current_app.extensions.get(DASH_APP)
    return list(app.csp_hashes()) if app is not None else []


def _add_headers(response: flask.Response) -> flask.Response:
    # Only HTML pages run inline scripts; every other response gets the policy without any.
    hashes = _dash_script_hashes() if response.mimetype == "text/html" else []
    response.headers.setdefault("Content-Security-Policy", content_security_policy(hashes))
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_headers(server: flask.Flask) -> None:
    server.after_request(_add_headers)
