"""Hostile input everywhere a browser can send it: no request may end in a server error (status 500).

Four kinds of probes, on SQLite and on PostgreSQL:

- every GET route of the Flask url map (the JSON API, the file routes, downloads), with hostile path variables
  and hostile values for every query parameter (the common ones and every ``.get("...")`` in the view's
  module), one at a time and as repeated parameters (a list);
- every page of the Dash page registry, with hostile path variables and query strings, both as the HTML shell
  and through the pages router callback that draws the content;
- every server-side Dash callback of ``/_dash-dependencies`` (the callback map the browser gets), with a hostile
  value in each Input and State in turn (the others filled in plausibly), anonymously and signed in as a
  curator (with the CSRF header); background callbacks are polled until their run ends;
- every server-side callback again with requests of a forged shape (an unknown output, Inputs and States missing,
  extra, of another id or property, outputs of the wrong number), which must be refused (400) with a message,
  and Dash's own script and asset routes with addresses they do not serve (404).

Routes, parameters, pages and callbacks are read from the app, so new ones are probed without changing this file.
A failure lists each probe that got a 500 with the last line of its traceback.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, need_service, port_open, use_environment
from tests.services import Client

PASSWORD = "fuzz-password-1"
CURATOR = "fuzz-curator@example.org"
MAX_BIGINT = 2**63 - 1

# Text as it arrives in a URL (path segment or query value).
HOSTILE_TEXT = [str(MAX_BIGINT), "-1", "abc", "\x00", "x" * 10_000, "ü☃\u202e\U0001f600", "' OR 1=1 --"]
# JSON values a forged callback request can carry in place of any property: wrong types, huge numbers, NUL, and
# text of the right shape but too long for its column (an email of 306 characters, a 2,000-character URL).
HOSTILE_JSON: list[Any] = [
    None,
    "abc",
    MAX_BIGINT,
    "x" * 10_000,
    {"a": 1},
    ["a", 1],
    True,
    "a" * 294 + "@example.org",
    "fuzz\x00@example.org",
    "https://example.org/" + "a" * 2000,
]
# Fewer for background callbacks: each start forks a job (refused at once, but still a process).
HOSTILE_BACKGROUND: list[Any] = [None, "abc", {"token": "x", "nonce": ["a"]}, ["a", 1]]
# Query parameters every route gets, besides those its module reads (``.get("name")`` in its source).
QUERY_NAMES = ("page", "per_page", "q", "sort")
DASH_INTERNAL = ("/_dash-", "/_reload-hash", "/_favicon", "/assets/", "/_alive_")
BACKGROUND_TIMEOUT_S = 20
# Values that get a probe past a form's first check, so that the hostile value in one field reaches the code
# behind it, the database included ("component id.property" -> value; "coll-id.data" is the curator's own
# collection, filled in per site).
FORM_DEFAULTS: dict[str, Any] = {
    **{
        f"{form}-{field}.value": value
        for form in ("new", "edit")
        for field, value in (
            ("name", "Fuzz study"),
            ("movie", "Fuzz film"),
            ("license", "CC0-1.0"),
            ("visibility", "private"),
        )
    },
    "register-first-name.value": "Fuzz",
    "register-last-name.value": "Tester",
    "register-password.value": "fuzz-register-password-1",
    "register-password2.value": "fuzz-register-password-1",
    "profile-first-name.value": "Fuzz",
    "profile-last-name.value": "Tester",
}


# ----------------------------------------------------------------------------------------------- sites


@dataclass
class Site:
    backend: str
    path: Path
    database_url: str | None
    failures: list[str] = field(default_factory=list)


def _sqlite_site(base: Path) -> Site:
    path = base / "data"
    path.mkdir()
    use_environment(path)
    _rows()
    return Site("sqlite", path, None)


def _postgres_site(base: Path) -> Iterator[Site]:
    import sqlalchemy as sa

    need_service(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"incdb_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    path = base / "data"
    path.mkdir()
    use_environment(path, database_url=url)
    try:
        _rows()
        yield Site("postgresql", path, url)
    finally:
        from store.db import dispose_engine

        dispose_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _rows() -> None:
    """Schema, a small active reference set (three built-in terms: enough rows for every query), a public and a
    private collection, and the curator."""
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from pipeline.decoding.reference import builtin_term_maps, create_reference_set, set_active
    from store.db import session_scope, upgrade_database

    upgrade_database()
    with session_scope() as session:
        reference = create_reference_set(session, "fuzz terms", "builtin", itertools.islice(builtin_term_maps(), 3))
        set_active(session, reference)
        owner = create_user(session, "owner@example.org", PASSWORD)
        create_collection(session, owner, get_or_create_movie(session, "Open Film"), "Open collection")
        create_collection(
            session, owner, get_or_create_movie(session, "Closed Film"), "Closed collection", visibility="private"
        )
        create_user(session, CURATOR, PASSWORD)


def curator_collection() -> int:
    """The id of a collection of the curator (made anew when a probe deleted it)."""
    from sqlalchemy import select

    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from store.db import session_scope
    from store.models import Collection, User

    with session_scope() as session:
        owner = session.scalar(select(User).where(User.email == CURATOR))
        found = session.scalar(select(Collection.id).where(Collection.owner_id == owner.id).limit(1))
        if found is not None:
            return found
        return create_collection(
            session, owner, get_or_create_movie(session, "Fuzz film"), "Fuzz study", visibility="private"
        ).id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        yield _sqlite_site(base)
    else:
        yield from _postgres_site(base)


@pytest.fixture(autouse=True)
def _use_site(site):
    use_environment(site.path, database_url=site.database_url)


@pytest.fixture(scope="module")
def server(site):
    import flask

    use_environment(site.path, database_url=site.database_url)
    from app import server

    # Unhandled exceptions must become the 500 a browser would get (other tests may have set TESTING, which
    # re-raises them); their tracebacks are recorded through Flask's signal.
    saved = server.config.get("PROPAGATE_EXCEPTIONS")
    server.config["PROPAGATE_EXCEPTIONS"] = False

    def record(_sender, exception, **_extra):
        site.failures.append(
            "".join(traceback.format_exception(exception)[-1:]).strip() + " at " + _last_frame(exception)
        )

    flask.got_request_exception.connect(record, server)
    yield server
    flask.got_request_exception.disconnect(record, server)
    server.config["PROPAGATE_EXCEPTIONS"] = saved


def _last_frame(exception: BaseException) -> str:
    """The innermost frame of the project (not of a library) where the exception passed."""
    frames = traceback.extract_tb(exception.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename] or frames
    f = ours[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.line})"


@pytest.fixture(scope="module")
def clients(server) -> dict[str, Client]:
    anonymous, curator = Client(flask_app=server), Client(flask_app=server)
    anonymous.open_page("/")
    _sign_in(curator)
    return {"anonymous": anonymous, "curator": curator}


def _sign_in(client: Client) -> None:
    client.sign_in(CURATOR, PASSWORD)
    assert _signed_in(client), "the curator could not sign in"
    client.open_page("/")


def _signed_in(client: Client) -> bool:
    with client._flask.session_transaction() as session:
        return "_user_id" in session


class Probe:
    """Sends requests, counts them, and records each answer of 500 or more with what was sent."""

    def __init__(self, site: Site):
        self.site, self.errors, self.count = site, [], 0

    def check(self, what: str, send: Callable[[], Any]) -> Any:
        """``send()`` makes one request and returns its response."""
        self.count += 1
        before = len(self.site.failures)
        response = send()
        if response.status_code >= 500:
            causes = self.site.failures[before:] or ["no traceback recorded"]
            self.errors.append(f"{what} -> {response.status_code}: {causes[-1]}")
        return response

    def assert_clean(self, at_least: int) -> None:
        """No 5xx; and at least ``at_least`` probes were sent (none of the app's routes or callbacks went
        missing from the enumeration)."""
        print(f"\n{self.site.backend}: {self.count} probes")
        assert self.count >= at_least, f"only {self.count} probes"
        assert not self.errors, f"{len(self.errors)} probe(s) answered 5xx:\n" + "\n".join(
            _short(e) for e in self.errors
        )


def _short(text: str, limit: int = 400) -> str:
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} chars)"


# ----------------------------------------------------------------------------------------------- routes


def get_routes(server) -> list[tuple[str, list[str]]]:
    """(rule, its variables) of every GET route of the project itself (Dash's own routes left out)."""
    out = []
    for rule in server.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(DASH_INTERNAL) or rule.endpoint == "static":
            continue
        if rule.rule in ("/", "/<path:path>"):  # the Dash pages: probed below with the page registry
            continue
        out.append((rule.rule, sorted(rule.arguments)))
    return sorted(out)


def query_names(server, endpoint_rule: str) -> list[str]:
    """The common query parameters plus each ``.get("name")`` in the source of the view's module (views read
    parameters through small helpers of their module, such as the API's paging)."""
    names = set(QUERY_NAMES)
    for rule in server.url_map.iter_rules():
        if rule.rule == endpoint_rule:
            module = inspect.getmodule(server.view_functions[rule.endpoint])
            try:
                source = inspect.getsource(module) if module else ""
            except (OSError, TypeError):
                continue
            names.update(re.findall(r"""\.get\(\s*["'](\w+)["']""", source))
    return sorted(names)


def fill_rule(rule: str, value: str) -> str:
    """The rule with every variable set to ``value`` (percent-encoded; ``path`` converters keep slashes)."""
    return re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", lambda _m: quote(value, safe=""), rule)


def _plain(rule: str) -> str:
    return fill_rule(rule, "abc")


def test_get_routes_survive_hostile_values(site, server, clients) -> None:
    probe = Probe(site)
    routes = get_routes(server)
    assert any(rule.startswith("/api/") for rule, _ in routes) and any(r.startswith("/files/") for r, _ in routes)
    for who, client in clients.items():
        for rule, variables in routes:
            for value in HOSTILE_TEXT:
                if variables:
                    url = fill_rule(rule, value)
                    probe.check(f"{who} GET {_short(url, 120)}", lambda: client.get(url))
            base, names = _plain(rule), query_names(server, rule)
            if who == "anonymous":  # one parameter at a time
                for name in names:
                    for value in HOSTILE_TEXT:
                        url = f"{base}?{urlencode({name: value})}"
                        probe.check(f"{who} GET {base}?{name}={_shown(value)}", lambda: client.get(url))
                    url = f"{base}?{urlencode([(name, '1'), (name, 'abc')])}"
                    probe.check(f"{who} GET {base}?{name}=1&{name}=abc", lambda: client.get(url))
            else:  # signed in, the queries differ only in what is visible: all parameters at once
                for value in HOSTILE_TEXT:
                    url = f"{base}?{urlencode({name: value for name in names})}"
                    probe.check(f"{who} GET {base}?(all)={_shown(value)}", lambda: client.get(url))
    probe.assert_clean(at_least=1500)


# ----------------------------------------------------------------------------------------------- pages


def page_paths() -> list[tuple[str, list[str], list[str]]]:
    """(path or template, template variables, layout keyword names) of every registered page."""
    import dash

    out = []
    for page in dash.page_registry.values():
        template = page.get("path_template") or page["path"]
        variables = re.findall(r"<(\w+)>", template)
        layout = page["layout"]
        names = (
            [
                p
                for p in inspect.signature(layout).parameters
                if p not in variables
                and inspect.signature(layout).parameters[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            ]
            if callable(layout)
            else []
        )
        out.append((template, variables, names))
    return out


def _fill_page(template: str, value: str) -> str:
    return re.sub(r"<\w+>", lambda _m: quote(value, safe=""), template)


def _router(client: Client, pathname: Any, search: Any):
    body = {
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [
            {"id": "_pages_location", "property": "pathname", "value": pathname},
            {"id": "_pages_location", "property": "search", "value": search},
        ],
        "state": [],
        "changedPropIds": ["_pages_location.pathname"],
    }
    return client.post(client._url(), json_body=body)


def test_pages_survive_hostile_paths_and_query_strings(site, server, clients) -> None:
    from urllib.parse import unquote

    probe = Probe(site)
    for who, client in clients.items():
        for template, variables, names in page_paths():
            if variables:
                for value in HOSTILE_TEXT:
                    url = _fill_page(template, value)
                    probe.check(f"{who} GET {_short(url, 120)}", lambda: client.get(url))
                    probe.check(f"{who} router {_short(url, 120)}", lambda: _router(client, unquote(url), ""))
            path = _fill_page(template, "abc")
            params = sorted(set(names) | {"page", "q", "sort", "tab", "per_page"})
            for value in HOSTILE_TEXT:
                search = "?" + urlencode({name: value for name in params})
                probe.check(f"{who} GET {path}?(all)={_shown(value)}", lambda: client.get(path + search))
                probe.check(f"{who} router {path}?(all)={_shown(value)}", lambda: _router(client, path, search))
            search = "?" + urlencode([(name, v) for name in params for v in ("1", "2")])
            probe.check(f"{who} GET {path}{search}", lambda: client.get(path + search))
            probe.check(f"{who} router {path}{search}", lambda: _router(client, path, search))
        for value in HOSTILE_JSON:  # what the router itself is given
            probe.check(f"{who} router pathname={_shown(value)}", lambda: _router(client, value, ""))
            probe.check(f"{who} router search={_shown(value)}", lambda: _router(client, "/terms", value))
    probe.assert_clean(at_least=400)


# ----------------------------------------------------------------------------------------------- callbacks


def _is_pattern(ident: str) -> bool:
    return ident.startswith("{")


def concrete_id(ident: str, fill: Any) -> str | dict[str, Any]:
    """A component id the renderer could send for ``ident``: wildcards (MATCH, ALL, ...) replaced by ``fill``."""
    if not _is_pattern(ident):
        return ident
    pattern = json.loads(ident)
    return {k: (fill if isinstance(v, list) else v) for k, v in pattern.items()}


def _wildcard(value: Any) -> Any:
    """A wildcard's value in a forged id: the hostile value when an id could hold it, else a plain word."""
    return value if isinstance(value, str | int | float) else "fuzz"


def _all_pattern(ident: str) -> bool:
    return _is_pattern(ident) and any(v in (["ALL"], ["ALLSMALLER"]) for v in json.loads(ident).values())


def _prop_id(ident: str | dict[str, Any], prop: str) -> str:
    if isinstance(ident, dict):
        return json.dumps(ident, sort_keys=True, separators=(",", ":")) + "." + prop
    return f"{ident}.{prop}"


def _outputs(spec: str, fill: Any) -> list[dict[str, Any]] | dict[str, Any]:
    def one(text: str) -> dict[str, Any] | list[dict[str, Any]]:
        ident, prop = (
            text.rsplit(".", 1)
            if not _is_pattern(text)
            else (text[: text.rindex("}") + 1], text[text.rindex("}") + 2 :])
        )
        item = {"id": concrete_id(ident, fill), "property": prop}
        return [item] if _all_pattern(ident) else item

    if spec.startswith(".."):
        return [one(part) for part in spec[2:-2].split("...")]
    return one(spec)


def _default(ident: str | dict[str, Any], prop: str, collection_id: int) -> Any:
    """A plausible value for the properties not under test: clicks and submits happened, an ``id`` is the
    component's own, forms are filled in (FORM_DEFAULTS), the rest is empty."""
    if prop == "id":
        return ident
    if prop in ("n_clicks", "n_submit", "n_intervals"):
        return 1
    if isinstance(ident, str):
        return collection_id if f"{ident}.{prop}" == "coll-id.data" else FORM_DEFAULTS.get(f"{ident}.{prop}")
    return None


def callback_body(dep: dict[str, Any], position: int, value: Any, collection_id: int = 0) -> dict[str, Any]:
    """A request for ``dep`` whose Input or State number ``position`` (inputs first) carries ``value``."""
    fill = _wildcard(value)
    items = dep["inputs"] + dep.get("state", [])
    filled = []
    for i, item in enumerate(items):
        ident = concrete_id(item["id"], fill if i == position else "fuzz")
        v = value if i == position else _default(ident, item["property"], collection_id)
        entry = {"id": ident, "property": item["property"], "value": v}
        filled.append([entry] if _all_pattern(item["id"]) else entry)
    trigger = position if position < len(dep["inputs"]) else 0
    trigger_item = filled[trigger][0] if isinstance(filled[trigger], list) else filled[trigger]
    return {
        "output": dep["output"],
        "outputs": _outputs(dep["output"], "fuzz"),
        "inputs": filled[: len(dep["inputs"])],
        "state": filled[len(dep["inputs"]) :],
        "changedPropIds": [_prop_id(trigger_item["id"], trigger_item["property"])],
    }


def server_callbacks(client: Client) -> list[dict[str, Any]]:
    client.open_page("/")
    return [d for d in client._deps if d.get("clientside_function") is None]


def _run(client: Client, dep: dict[str, Any], body: dict[str, Any], probe: Probe, what: str) -> None:
    response = probe.check(what, lambda: client.post(client._url(), json_body=body))
    if not dep.get("background") or response.status_code != 200:
        return
    handles = response.json()
    if "cacheKey" not in handles:
        return
    polled = json.loads(json.dumps(body))
    for item in polled["inputs"] + polled["state"]:
        for entry in item if isinstance(item, list) else [item]:
            entry["value"] = None
    deadline = time.monotonic() + BACKGROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        r = probe.check(
            what + " (result)",
            lambda: client.post(client._url(cacheKey=handles["cacheKey"], job=handles["job"]), json_body=polled),
        )
        if r.status_code != 200 or "response" in r.json() or r.json().get("done"):
            return
        time.sleep(0.2)
    probe.errors.append(f"{what}: the background run did not end within {BACKGROUND_TIMEOUT_S} s")


def _restore(server, clients: dict[str, Client], who: str) -> None:
    """After a callback's probes: the anonymous visitor signed out again (a probe may have registered or signed
    in), the curator signed in again (a probe may have signed out)."""
    if who == "anonymous" and _signed_in(clients[who]):
        clients[who] = Client(flask_app=server)
        clients[who].open_page("/")
    elif who == "curator" and not _signed_in(clients[who]):
        _sign_in(clients[who])


def test_callbacks_survive_forged_values(site, server, clients) -> None:
    probe = Probe(site)
    deps = server_callbacks(clients["anonymous"])
    assert len(deps) >= 20 and any(d.get("background") for d in deps)
    for who in list(clients):
        for dep in deps:
            items = dep["inputs"] + dep.get("state", [])
            values = HOSTILE_BACKGROUND if dep.get("background") else HOSTILE_JSON
            collection_id = curator_collection()  # again for every callback: a probe may have deleted it
            for position, item in enumerate(items):
                for value in values:
                    what = f"{who} callback {dep['output'][:70]} {item['id'][:50]}.{item['property']}={_shown(value)}"
                    _run(clients[who], dep, callback_body(dep, position, value, collection_id), probe, what)
            _restore(server, clients, who)
    probe.assert_clean(at_least=1500)


# ----------------------------------------------------------------------------------------------- answers


def test_page_numbers_beyond_any_listing_give_an_empty_last_page(site, server, clients) -> None:
    from store.queries import MAX_PAGE, MAX_PER_PAGE

    for route in ("/api/terms", "/api/movies", "/api/components", "/api/collections"):
        response = clients["anonymous"].get(f"{route}?page={MAX_BIGINT}&per_page={MAX_BIGINT}")
        assert response.status_code == 200, route
        body = response.json()
        assert (body["page"], body["per_page"], body["items"]) == (MAX_PAGE, MAX_PER_PAGE, []), route
        assert body["total"] == clients["anonymous"].get(route).json()["total"]


def test_forged_table_state_draws_a_plain_first_page(site, server, clients) -> None:
    client = clients["anonymous"]
    dep = next(d for d in server_callbacks(client) if "incdb-table-body" in d["output"])
    body = callback_body(dep, 2, "abc")  # the pagination's active_page
    context = {
        "id": {"table": "terms", "type": "incdb-table-context"},
        "property": "data",
        "value": {"source": "terms", "per_page": MAX_BIGINT, "hide": "all", "term": ["x"]},
    }
    body["state"] = [context]
    for item in body["inputs"]:
        item["id"]["table"] = "terms"
    body["outputs"] = [{**o, "id": {**o["id"], "table": "terms"}} for o in body["outputs"]]
    response = client.post(client._url(), json_body=body)
    assert response.status_code == 200, response.text[:500]
    out = {json.loads(k)["type"].removeprefix("incdb-table-"): v for k, v in response.json()["response"].items()}
    assert out["pagination"]["active_page"] == 1
    assert out["summary"]["children"] == "3 terms"  # the three of this site, on one page of at most 100


def test_forged_page_address_is_refused_with_a_message(site, server, clients) -> None:
    client = clients["anonymous"]
    for pathname in (5, ["/"], "terms", None):
        response = _router(client, pathname, "")
        assert response.status_code == 400, pathname
        assert "Reload the page" in response.json()["error"]


def test_malformed_callback_requests_are_refused(site, server, clients) -> None:
    """Bodies no renderer sends (Dash itself would fail on them) get a 400 with a message."""
    nav = {
        "output": "nav-account.children",
        "outputs": {"id": "nav-account", "property": "children"},
        "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
        "changedPropIds": ["url.pathname"],
    }
    for who, client in clients.items():
        for body in (
            {},
            [],
            "x",
            {**nav, "output": 5},
            {**nav, "outputs": "x"},
            {**nav, "inputs": "x"},
            {**nav, "inputs": [5]},
            {**nav, "state": {}},
            {**nav, "changedPropIds": "url.pathname"},
            {**nav, "inputs": [{"id": "url", "property": "pathname", "value": ["/"]}]},
        ):
            response = client.post(client._url(), json_body=body)
            assert response.status_code == 400, (who, body)
            assert "Reload the page" in response.json()["error"]
        assert client.post(client._url(), json_body=nav).status_code == 200


# ----------------------------------------------------------------------------------------------- forged shapes


def forged_shapes(dep: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Requests for ``dep`` that no renderer sends: an output no callback has, an Input or State missing, one too
    many, a wildcard's list where one value belongs (or the reverse), and outputs of the wrong number."""
    body = callback_body(dep, 0, None)
    extra = {"id": "fuzz-extra", "property": "value", "value": 1}
    yield (
        "unknown output",
        {**body, "output": "fuzz-nothere.children", "outputs": {"id": "fuzz-nothere", "property": "children"}},
    )
    yield "renamed output", {**body, "output": body["output"] + "x"}
    yield "no inputs", {**body, "inputs": []}
    yield "an input missing", {**body, "inputs": body["inputs"][:-1]}
    yield "an extra input", {**body, "inputs": body["inputs"] + [extra]}
    yield "an extra state", {**body, "state": body["state"] + [extra]}
    if body["state"]:
        yield "no states", {**body, "state": []}
        yield "a state missing", {**body, "state": body["state"][:-1]}
    first = body["inputs"][0]
    yield (
        "first input reshaped",
        {**body, "inputs": [first[0] if isinstance(first, list) and first else [first]] + body["inputs"][1:]},
    )
    if dep.get("no_output"):
        return  # Dash ignores the outputs such a request names
    outputs = body["outputs"]
    yield "outputs doubled", {**body, "outputs": (outputs * 2) if isinstance(outputs, list) else [outputs, outputs]}
    yield "outputs empty", {**body, "outputs": []}
    yield (
        "an output without an id",
        {**body, "outputs": [{"property": "children"}] if isinstance(outputs, list) else {"property": "children"}},
    )
    yield (
        "inputs of another id",
        {
            **body,
            "inputs": [
                {**(i[0] if isinstance(i, list) and i else i), "id": [1, 2]} if i else i for i in body["inputs"]
            ],
        },
    )
    yield (
        "inputs of another property",
        {
            **body,
            "inputs": [
                {**(i[0] if isinstance(i, list) and i else i), "property": "fuzz"} if i else i for i in body["inputs"]
            ],
        },
    )


def test_callbacks_of_a_forged_shape_are_refused(site, server, clients) -> None:
    """Each shape Dash itself fails on (a KeyError, "Inputs do not match", an IndexError) is a 400 with a message;
    no other forgery of the request's shape may end in a server error."""
    probe = Probe(site)
    client = clients["anonymous"]
    refused = []
    for dep in server_callbacks(client):
        if not dep.get("background"):  # the request as the renderer would send it is not one of them
            response = client.post(client._url(), json_body=callback_body(dep, 0, None))
            assert "not the callback's" not in response.text and "no callback has" not in response.text, dep
        for name, body in forged_shapes(dep):
            what = f"{name}: {dep['output'][:70]}"
            response = probe.check(what, lambda: client.post(client._url(), json_body=body))
            if response.status_code != 400 or "Reload the page" not in response.json().get("error", ""):
                refused.append(f"{what} -> {response.status_code} {response.text[:100]}")
    probe.assert_clean(at_least=500)
    assert not refused, "not refused with a message:\n" + "\n".join(refused[:20])


def test_dash_script_routes_answer_404_for_what_they_do_not_serve(site, server, clients) -> None:
    probe = Probe(site)
    client = clients["anonymous"]
    unknown = [
        "/_dash-component-suites/dash/nothere.js",
        "/_dash-component-suites/nopkg/x.js",
        "/_dash-component-suites/dash/..%2F..%2Fsecret_key",
        "/_dash-component-suites/dash/dcc/nothere.js",
        *(f"/_dash-component-suites/{quote(v, safe='')}/x.js" for v in HOSTILE_TEXT),
        *(f"/_dash-component-suites/dash/{quote(v, safe='')}" for v in HOSTILE_TEXT),
    ]
    for url in unknown:
        response = probe.check(f"GET {_short(url, 120)}", lambda: client.get(url))
        assert response.status_code == 404, (url, response.status_code)
        assert response.json()["error"] == "no such script or style sheet"
    for value in HOSTILE_TEXT:  # Dash's other own routes
        for url in (
            f"/assets/{quote(value, safe='')}",
            f"/_favicon.ico?v={quote(value)}",
            f"/_dash-layout?x={quote(value)}",
            f"/_dash-dependencies?x={quote(value)}",
            f"/_reload-hash?x={quote(value)}",
        ):
            probe.check(f"GET {_short(url, 120)}", lambda: client.get(url))
    probe.assert_clean(at_least=len(unknown) + 5 * len(HOSTILE_TEXT))
    served = re.search(r'src="(/_dash-component-suites/dash/[^"]+\.js)"', client.get("/").text).group(1)
    assert client.get(served).status_code == 200  # and what Dash serves, it still serves
