"""Flask side of the web app: request size limits, sign-in state, file routes, uploads, the JSON API, the response
headers, and what Dash's own routes accept.

Dash answers a callback request that does not fit the callback it names, and a script address it does not know,
with an exception (a 500 and a traceback in the log). ``register_dash`` puts checks in front of both. A callback
request is refused (400, JSON, "Reload the page") unless its output names a callback of the app and its outputs,
inputs and states are that callback's, in its order: as many, each with the callback's property and id (for a
pattern, the pattern's keys, and its values where it has no wildcard), and a list exactly where the callback has
an ``ALL`` or ``ALLSMALLER`` wildcard. An address under ``/_dash-component-suites/`` that Dash does not serve is a
404 (JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import dash
import flask
from dash.exceptions import DependencyException

from web import anatomy, api, auth, decode, docs, files, headers, limits, openapi, timeline, upload

CALLBACK_PATH = limits.CALLBACK_PATH
SUITES_RULE = "_dash-component-suites/<string:package_name>/<path:fingerprinted_path>"
# Properties of dcc.Location, which the renderer always sends as text: Dash's pages router (and the navbar's
# callback) read them as text without checking, so a forged number or list would end in a server error there.
LOCATION_PROPERTIES = frozenset({"pathname", "search", "hash"})
PAGES_LOCATION = "_pages_location"


def register(server: flask.Flask) -> None:
    limits.init_limits(server)  # first: no other hook may read a body before its size is checked
    auth.init_login(server)
    headers.init_headers(server)
    server.register_blueprint(files.blueprint)
    server.register_blueprint(api.blueprint)
    server.register_blueprint(upload.blueprint)
    server.register_blueprint(timeline.blueprint)
    server.register_blueprint(anatomy.blueprint)
    server.register_blueprint(decode.blueprint)
    server.register_blueprint(docs.blueprint)
    server.register_blueprint(openapi.blueprint)


def register_dash(app: dash.Dash) -> None:
    """The checks in front of Dash's routes, which exist once the Dash app on the server is made (call it then).

    The callback check runs after Dash's own first-request set-up, which adds the callbacks of the pages
    (``dash.callback``) to the app's callback map."""
    server = app.server
    server.before_request(lambda: _refuse_malformed_callback(app.callback_map))
    endpoint = app.config.routes_pathname_prefix + SUITES_RULE
    server.view_functions[endpoint] = _missing_as_404(server.view_functions[endpoint])


def _missing_as_404(serve: Callable[..., Any]) -> Callable[..., Any]:
    """Dash's script route, answering 404 for a package or path it does not serve (Dash raises), or a file of a
    registered path that is not there."""

    def serve_or_404(package_name: str, fingerprinted_path: str):
        try:
            return serve(package_name, fingerprinted_path)
        except (DependencyException, OSError):
            response = flask.jsonify({"error": "no such script or style sheet"})
            response.status_code = 404
            return response

    return serve_or_404


def _items(body: dict[str, Any]) -> Iterator[Any]:
    for key in ("inputs", "state"):
        for item in body.get(key) or []:
            yield from item if isinstance(item, list) else [item]


def _callback_problem(body: Any) -> str | None:
    """Why a callback request cannot be a renderer's (None when it could be). Only what Dash itself would fail on
    is checked here; the values a callback reads are checked by the callback."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return "the request names no output"
    if (
        not isinstance(body.get("outputs"), dict | list)
        or not isinstance(body.get("inputs"), list)
        or not isinstance(body.get("state", []), list)
        or not isinstance(body.get("changedPropIds", []), list)
    ):
        return "outputs, inputs, state or changedPropIds have the wrong form"
    for item in _items(body):
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("property"), str):
            return "an input or state has no id or property"
        value = item.get("value")
        if item["property"] in LOCATION_PROPERTIES and value is not None and not isinstance(value, str):
            return f"{item['property']} must be text"
        if (
            item["id"] == PAGES_LOCATION
            and item["property"] == "pathname"
            and not (isinstance(value, str) and value.startswith("/"))
        ):
            return "the page address must start with /"
    return None


@lru_cache(maxsize=1024)
def _pattern(ident: str) -> dict[str, Any] | None:
    """A pattern-matching id of the callback map (JSON text) as a dict, None for a plain id."""
    return json.loads(ident) if ident.startswith("{") else None


def _takes_a_list(ident: str) -> bool:
    """Whether the renderer sends a list for this id: a pattern with an ALL or ALLSMALLER wildcard."""
    pattern = _pattern(ident)
    return pattern is not None and any(value in (["ALL"], ["ALLSMALLER"]) for value in pattern.values())


def _names(ident: str, prop: str, item: Any) -> bool:
    """Whether ``item`` (one entry, or the list of an ALL wildcard) names the component property ``ident.prop`` of
    the callback map: the same plain id, or an id with the pattern's keys and its values where it has no wildcard.
    An output's property may carry Dash's ``@<hash>`` of a duplicate output."""
    if isinstance(item, list) != _takes_a_list(ident):
        return False
    pattern = _pattern(ident)
    for one in item if isinstance(item, list) else [item]:
        if (
            not isinstance(one, dict)
            or not isinstance(one.get("property"), str)
            or one["property"].split("@")[0] != prop
        ):
            return False
        sent = one.get("id")
        if pattern is None and sent != ident:
            return False
        if pattern is not None and not (
            isinstance(sent, dict)
            and sent.keys() == pattern.keys()
            and all(isinstance(value, list) or sent[key] == value for key, value in pattern.items())
        ):
            return False
    return True


def _mismatch(callback: dict[str, Any] | None, body: dict[str, Any]) -> str | None:
    """How a well-formed request does not fit the callback its output names (None when it does): its outputs,
    inputs and states must be the callback's own, in its order."""
    if callback is None:
        return "no callback has these outputs"
    if not callback.get("no_output"):  # (without outputs, Dash ignores what the request names)
        spec = callback["output"]
        outputs = [o.to_dict() for o in (spec if isinstance(spec, list | tuple) else [spec])]
        sent = body["outputs"] if isinstance(spec, list | tuple) else [body["outputs"]]
        if len(sent) != len(outputs) or not all(_names(o["id"], o["property"], item) for o, item in zip(outputs, sent)):
            return "the outputs are not the callback's"
    for key, what in (("inputs", "inputs"), ("state", "states")):
        expected, sent = callback.get(key) or [], body.get(key) or []
        if len(sent) != len(expected) or not all(
            _names(i["id"], i["property"], item) for i, item in zip(expected, sent)
        ):
            return f"the {what} are not the callback's"
    return None


def _refuse_malformed_callback(callback_map: dict[str, Any]) -> flask.Response | None:
    if flask.request.path != CALLBACK_PATH or flask.request.method != "POST":
        return None
    body = flask.request.get_json(silent=True)
    problem = _callback_problem(body) or _mismatch(callback_map.get(body["output"]), body)
    if problem is None:
        return None
    return flask.make_response(
        flask.jsonify({"error": f"Malformed callback request: {problem}. Reload the page."}), 400
    )
