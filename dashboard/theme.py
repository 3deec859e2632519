"""The Bootstrap theme (Bootswatch Flatly), served from an installed, pinned package rather than a CDN.

The site then looks the same on a machine without internet access (and in CI), and nothing third-party is copied
into this repository: the file comes from the Bootstrap-Flask wheel.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import flask
import flask_bootstrap

THEME_ROUTE = "/vendor/flatly/bootstrap.min.css"


def theme_path() -> Path:
    path = Path(flask_bootstrap.__file__).parent / "static/bootstrap5/css/bootswatch/flatly/bootstrap.min.css"
    if not path.is_file():
        raise RuntimeError(
            f"Bootswatch Flatly not found at {path}; is Bootstrap-Flask installed at the pinned "
            "version (requirements.txt)?"
        )
    return path


def register_theme_route(server: flask.Flask) -> str:
    """Serve the theme CSS; returns the URL for ``external_stylesheets``."""
    path = theme_path()
    if "incdb_theme" not in server.view_functions:

        def send_theme():
            return flask.send_file(path, mimetype="text/css", max_age=30 * 24 * 3600, conditional=True, etag=True)

        server.add_url_rule(THEME_ROUTE, endpoint="incdb_theme", view_func=send_theme)
    return f"{THEME_ROUTE}?v={version('Bootstrap-Flask')}"
