"""The Bootstrap theme (Bootswatch Flatly) and its Lato font, both served by this site rather than by a CDN.

The site then looks the same on a machine without internet access (and in CI), and no page asks a third-party
host for anything. The theme CSS comes from the pinned Bootstrap-Flask wheel; as shipped it begins with an
``@import`` of Lato from Google Fonts, which this module replaces by ``@font-face`` rules for the copies in
``assets/fonts/`` (Lato 400, 700 and 400 italic, the weights the theme asks for, in the Latin and Latin Extended
subsets, woff2 files from the ``@fontsource/lato`` package under the SIL Open Font License, whose text is
``assets/fonts/OFL.txt``).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib.metadata import version
from pathlib import Path

import flask
import flask_bootstrap

THEME_ROUTE = "/vendor/flatly/bootstrap.min.css"
FONT_ROUTE = "/vendor/lato/<name>"
FONT_DIR = Path(__file__).resolve().parent.parent / "assets" / "fonts"
MAX_AGE = 30 * 24 * 3600
# Unicode ranges of the two subsets, as Google Fonts and Fontsource split Lato.
LATIN = (
    "U+0000-00FF,U+0131,U+0152-0153,U+02BB-02BC,U+02C6,U+02DA,U+02DC,U+0304,U+0308,U+0329,U+2000-206F,U+20AC,"
    "U+2122,U+2191,U+2193,U+2212,U+2215,U+FEFF,U+FFFD"
)
LATIN_EXT = (
    "U+0100-02BA,U+02BD-02C5,U+02C7-02CC,U+02CE-02D7,U+02DD-02FF,U+0304,U+0308,U+0329,U+1D00-1DBF,U+1E00-1E9F,"
    "U+1EF2-1EFF,U+2020,U+20A0-20AB,U+20AD-20C0,U+2113,U+2C60-2C7F,U+A720-A7FF"
)
FACES = (("normal", 400), ("normal", 700), ("italic", 400))
_IMPORT = re.compile(r"@import\s+url\(\s*['\"]?https?://[^)]*\)\s*;")
_REMOTE_URL = re.compile(r"url\(\s*['\"]?(https?:)?//", re.IGNORECASE)


def theme_path() -> Path:
    path = Path(flask_bootstrap.__file__).parent / "static/bootstrap5/css/bootswatch/flatly/bootstrap.min.css"
    if not path.is_file():
        raise RuntimeError(
            f"Bootswatch Flatly not found at {path}; is Bootstrap-Flask installed at the pinned "
            "version (requirements.txt)?"
        )
    return path


def font_files() -> list[str]:
    return [f"lato-{subset}-{weight}-{style}.woff2" for style, weight in FACES for subset in ("latin-ext", "latin")]


def font_faces() -> str:
    """``@font-face`` rules for the local Lato files (Latin Extended first, as the browser picks by range)."""
    rules = []
    for style, weight in FACES:
        for subset, ranges in (("latin-ext", LATIN_EXT), ("latin", LATIN)):
            name = f"lato-{subset}-{weight}-{style}.woff2"
            rules.append(
                f"@font-face{{font-family:'Lato';font-style:{style};font-weight:{weight};font-display:swap;"
                f"src:url({FONT_ROUTE.replace('<name>', name)}?v={_digest(FONT_DIR / name)}) format('woff2');"
                f"unicode-range:{ranges}}}"
            )
    return "\n".join(rules)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@cache
def theme_css() -> str:
    """The theme with its remote font import replaced by the local faces; refuses a theme that would still load
    anything from another host (a new Bootswatch version would then fail at start-up, not silently in browsers)."""
    missing = [name for name in font_files() if not (FONT_DIR / name).is_file()]
    if missing:
        raise RuntimeError(f"Lato font files missing from {FONT_DIR}: {', '.join(missing)}")
    css = theme_path().read_text(encoding="utf-8")
    css, n = _IMPORT.subn("", css)
    if n != 1 or _REMOTE_URL.search(css):
        raise RuntimeError(
            f"{theme_path()} no longer matches the expected Bootswatch Flatly (one remote font @import, no other "
            "remote URL); check the pinned Bootstrap-Flask version"
        )
    charset = '@charset "UTF-8";'
    body = css.removeprefix(charset)
    return f"{charset}\n{font_faces()}\n{body}"


def register_theme_route(server: flask.Flask) -> str:
    """Serve the theme CSS and its fonts; returns the URL for ``external_stylesheets``."""
    css = theme_css()
    if "incdb_theme" not in server.view_functions:

        def send_theme():
            response = flask.Response(css, mimetype="text/css")
            response.cache_control.public = True
            response.cache_control.max_age = MAX_AGE
            response.set_etag(hashlib.sha256(css.encode()).hexdigest()[:16])
            return response.make_conditional(flask.request)

        def send_font(name: str):
            if name not in font_files():
                flask.abort(404)
            return flask.send_file(FONT_DIR / name, mimetype="font/woff2", max_age=MAX_AGE, conditional=True, etag=True)

        server.add_url_rule(THEME_ROUTE, endpoint="incdb_theme", view_func=send_theme)
        server.add_url_rule(FONT_ROUTE, endpoint="incdb_font", view_func=send_font)
    return f"{THEME_ROUTE}?v={version('Bootstrap-Flask')}-{hashlib.sha256(css.encode()).hexdigest()[:8]}"
