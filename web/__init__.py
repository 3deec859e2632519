"""Flask side of the web app: sign-in state, file routes, uploads, the JSON API and the response headers."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask

from web import anatomy, api, auth, decode, docs, files, headers, timeline, upload

CALLBACK_PATH = "/_dash-update-component"
# Properties of dcc.Location, which the renderer always sends as text: Dash's pages router (and the navbar's
# callback) read them as text without checking, so a forged number or list would end in a server error there.
LOCATION_PROPERTIES = frozenset({"pathname", "search", "hash"})
PAGES_LOCATION = "_pages_location"


def register(server: flask.Flask) -> None:
    auth.init_login(server)
    server.before_request(_refuse_malformed_callback)
    headers.init_headers(server)
    server.register_blueprint(files.blueprint)
    server.register_blueprint(api.blueprint)
    server.register_blueprint(upload.blueprint)
    server.register_blueprint(timeline.blueprint)
    server.register_blueprint(anatomy.blueprint)
    server.register_blueprint(decode.blueprint)
    server.register_blueprint(docs.blueprint)


def _items(body: dict[str, Any]) -> Iterator[Any]:
    for key in ("inputs", "state"):
        for item in body.get(key) or []:
            yield from item if isinstance(item, list) else [item]


def _callback_problem(body: Any) -> str | None:
    """Why a callback request cannot be a renderer's (None when it could be). Only what Dash itself would fail on
    is checked here; the values a callback reads are checked by the callback."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return "the request names no output"
    if not isinstance(body.get("outputs"), dict | list) or not isinstance(body.get("inputs"), list) \
            or not isinstance(body.get("state", []), list) or not isinstance(body.get("changedPropIds", []), list):
        return "outputs, inputs, state or changedPropIds have the wrong form"
    for item in _items(body):
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("property"), str):
            return "an input or state has no id or property"
        value = item.get("value")
        if item["property"] in LOCATION_PROPERTIES and value is not None and not isinstance(value, str):
            return f"{item['property']} must be text"
        if item["id"] == PAGES_LOCATION and item["property"] == "pathname" \
                and not (isinstance(value, str) and value.startswith("/")):
            return "the page address must start with /"
    return None


def _refuse_malformed_callback() -> flask.Response | None:
    if flask.request.path != CALLBACK_PATH or flask.request.method != "POST":
        return None
    body = flask.request.get_json(silent=True)
    problem = _callback_problem(body)
    if problem is None:
        return None
    return flask.make_response(flask.jsonify({"error": f"Malformed callback request: {problem}. Reload the page."}),
                               400)
