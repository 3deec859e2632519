"""Request body limits: a body above its limit is refused (413, JSON) before anything reads or parses it.

The routes that take files, those of the upload blueprint (``/upload/...``, ``web.upload``) and ``POST /api/decode``
(``web.decode``), stream their bodies to disk under caps of their own and are left alone here. Any other body is
read into memory whole, and Dash's callback endpoint parses it as JSON, which costs several times its size in
Python objects (a hostile 100 MB list of small numbers took 0.7 GB, and Dash echoed it back). So:

- ``INCDB_MAX_REQUEST_BYTES`` (default 4 MiB) bounds every other body. A body that declares its length is refused
  from its Content-Length, without reading any of it; a body without one (``Transfer-Encoding: chunked``) is read
  up to one byte past the limit, never further.
- ``INCDB_MAX_CALLBACK_BYTES`` is the exception for the callback endpoint, for a body with a Content-Length: the
  annotation page's drop zone (``dcc.Upload``) sends its events file, up to twice ``INCDB_ANNOTATION_MAX_BYTES``
  (so that the server, not the browser, explains the cap), as one base64 data URL inside a callback: 21.3 MiB for
  the default 8 MiB. The default is room for that and 1 MiB more, and at least 24 MiB. Such a body is accepted
  only if what is left of it without letters, digits and ``+/=`` (base64's alphabet) is within
  ``INCDB_MAX_REQUEST_BYTES``. What is left is JSON's punctuation, at least one byte for every value, and it is the
  count of values, not the length of a text, that multiplies the memory once parsed: a data URL costs about its
  own size once parsed, as many bytes of ``[{},{},...]`` twenty times that. Counting is one pass in C (a
  regular expression over the JSON strings took seconds on 20 MB of short strings). The renderer always sends a
  Content-Length, so a chunked callback body gets the smaller limit.

0 turns a limit off. nginx refuses larger bodies before they reach the app (``deploy/nginx-incdb.conf``, one
``client_max_body_size`` per location, with these values).
"""

from __future__ import annotations

import string

import flask

from store.config import get_settings
from store.units import human_bytes

DEFAULT_MAX_CALLBACK_BYTES = 24 * 1024**2  # the least; see default_callback_bytes
CALLBACK_PATH = "/_dash-update-component"
# The views that stream their bodies to disk under their own caps: a whole blueprint, and single views.
STREAMED_BLUEPRINTS = frozenset({"upload"})
STREAMED_ENDPOINTS = frozenset({"decode.create"})
REQUEST_KEY, CALLBACK_KEY = "INCDB_MAX_REQUEST_BYTES", "INCDB_MAX_CALLBACK_BYTES"
TEXT_BYTES = (string.ascii_letters + string.digits + "+/=").encode()


def init_limits(server: flask.Flask) -> None:
    """Read the two limits into ``server.config`` (unless already set there) and refuse larger bodies.

    Register this before any other ``before_request`` function, so that none reads a body first.
    """
    settings = get_settings()
    callback = settings.max_callback_bytes
    server.config.setdefault(REQUEST_KEY, settings.max_request_bytes)
    server.config.setdefault(CALLBACK_KEY, default_callback_bytes() if callback is None else callback)
    server.before_request(_limit_body)


def default_callback_bytes() -> int:
    """Room for the largest events file the annotation page's drop zone sends (twice the annotation cap, as base64:
    4 bytes for every 3) and 1 MiB for the rest of the request; at least ``DEFAULT_MAX_CALLBACK_BYTES``."""
    dropped = 2 * get_settings().annotation_max_bytes
    return max(DEFAULT_MAX_CALLBACK_BYTES, -(-dropped // 3) * 4 + 1024**2)


def punctuation_bytes(body: bytes) -> int:
    """The size of a JSON body without its letters, digits and ``+/=``: at least one byte for each of its values
    (the ``,`` or ``:`` before it), while a base64 text counts only for its quotes."""
    return len(body.translate(None, TEXT_BYTES))


def too_large(limit: int | None, what: str = "The request") -> flask.Response:
    shown = human_bytes(limit) if limit else "the limit"
    response = flask.jsonify({"error": f"{what} is larger than the {shown} this address accepts."})
    response.status_code = 413
    response.headers["Cache-Control"] = "no-store"
    return response


def _limits() -> tuple[int | None, int | None]:
    """(any body, a callback body with a Content-Length); None where the limit is off."""
    config = flask.current_app.config
    return config[REQUEST_KEY] or None, config[CALLBACK_KEY] or None


def _limit_body() -> flask.Response | None:
    request = flask.request
    if request.blueprint in STREAMED_BLUEPRINTS or request.endpoint in STREAMED_ENDPOINTS:
        return None
    small, large = _limits()
    callback = request.path == CALLBACK_PATH and request.method == "POST"
    declared = request.content_length
    if declared is None:
        # Chunked (or no body): read one byte past the limit at most, which Werkzeug's max_content_length does
        # without an error (so the length tells), and keep what was read for the view.
        limit = small or (large if callback else None)
        if limit is not None:
            request.max_content_length = limit + 1
            if len(request.get_data(cache=True)) > limit:
                return too_large(limit)
        return None
    limit = large if callback else small
    if limit is not None and declared > limit:
        return too_large(limit)
    if (
        callback and small is not None and declared > small and punctuation_bytes(request.get_data(cache=True)) > small
    ):  # no more than the Content-Length is read
        return too_large(small, "The callback request, without its text,")
    return None
