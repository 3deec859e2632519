"""Security headers on every response: a Content-Security-Policy that Dash and the viewer work with, no framing,
no MIME sniffing, and referrers only within the site.

The policy allows scripts from this site only, plus Dash's own inline scripts (the renderer start-up and the
clientside callbacks) by their hashes, which ``Dash.csp_hashes()`` computes from the scripts the app registered, not
from the page. Neither Dash's renderer nor plotly.js nor NiiVue needs ``eval`` (the browser tests would see the
refusal). Styles may be inline: React, Plotly and the Bootstrap components set them at run time. The theme and its
Lato font are served by this site (``dashboard/theme.py``), so no other origin is allowed at all. Images may be
``data:`` URLs, as NiiVue's built-in ones are (without, the viewer never finishes loading); its maps are fetched
from this site and unpacked in the page, without workers or ``blob:`` URLs.
"""

from __future__ import annotations

import gzip

import flask
from dash import hooks

DASH_APP = "incdb_dash_app"  # key in Flask's app.extensions
BASE_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self' data:",
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


# Compression of what the app writes itself (Dash callback answers, JSON, CSV, pages), for clients that accept gzip:
# a timeline's callback answer shrinks several times. Files served from disk or storage (maps, assets, streamed
# downloads) pass as they are: maps are compressed already.
COMPRESS_MIN_BYTES = 1024
COMPRESS_TYPES = frozenset({"application/json", "text/csv", "text/html", "text/plain"})
COMPRESS_LEVEL = 5  # most of level 9's gain at a fraction of its time


def _compress(response: flask.Response) -> flask.Response:
    """gzip the body when the client accepts it (``Accept-Encoding``, a q of 0 refuses), the body is one of
    ``COMPRESS_TYPES``, at least ``COMPRESS_MIN_BYTES`` long, held in memory and not encoded yet."""
    if (
        response.status_code != 200
        or response.direct_passthrough
        or response.is_streamed
        or "Content-Encoding" in response.headers
        or response.mimetype not in COMPRESS_TYPES
    ):
        return response
    response.vary.add("Accept-Encoding")
    if flask.request.accept_encodings.quality("gzip") <= 0:
        return response
    body = response.get_data()
    if len(body) < COMPRESS_MIN_BYTES:
        return response
    packed = gzip.compress(body, compresslevel=COMPRESS_LEVEL, mtime=0)
    if len(packed) >= len(body):
        return response
    response.set_data(packed)
    response.headers["Content-Encoding"] = "gzip"
    if response.headers.get("ETag"):  # other bytes, same content: a weak tag, which If-None-Match still matches
        tag, _ = response.get_etag()
        response.set_etag(tag, weak=True)
    return response


def init_headers(server: flask.Flask) -> None:
    server.after_request(_add_headers)
    server.after_request(_compress)
