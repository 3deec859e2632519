"""The API's OpenAPI document (``web.openapi``, ``GET /api/openapi.json``): complete, valid, current in
``docs/api.md``, and true of the running app.

- Every rule under ``/api/`` of the Flask url map, with each of its methods, is an operation of the document whose
  ``operationId`` is the rule's endpoint (and the document has no operation the app lacks), except the rules that
  ``web.openapi.UNDOCUMENTED`` names with a reason: a new route cannot be left out silently.
- ``docs/api.md`` is what ``python scripts/api_docs.py`` writes from the document now.
- schemathesis runs against the embedded app (``python app.py``) on the demo data with the served document, on every
  operation: its boundary and wrong-type values once, and generated values (``MAX_EXAMPLES`` per operation)
  anonymously and signed in as a curator (session cookie and CSRF header). Each answer must be no server error,
  have a status the document lists, and match the schema listed for it. The seed is fixed, so a failure repeats.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import requests

from tests.conftest import CURATOR_PASSWORD, ROOT
from tests.services import BIN, Client, component_maps, running, service_env, start_embedded, write_nifti

METHODS = ("get", "post", "put", "patch", "delete")
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
MAX_EXAMPLES = 20
SEED = 20  # fixed: the same values every run, so a failure in CI repeats on a developer's machine
CURATOR = "openapi-curator@example.org"


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/api/movies/<slug>/annotations/<int:set_id>`` gives
    ``/api/movies/{slug}/annotations/{set_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_api_route_is_an_operation_of_the_valid_document(web):
    from openapi_spec_validator import validate

    from web.openapi import UNDOCUMENTED, openapi_document

    document = openapi_document()
    validate(document)  # OpenAPI 3.1, path parameters declared for every {name} of a path
    rules = [r for r in web.server.url_map.iter_rules() if r.rule.startswith("/api/")]
    served = {
        (openapi_path(r.rule), method.lower()): r.endpoint
        for r in rules
        if r.rule not in UNDOCUMENTED
        for method in r.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method): operation["operationId"]
        for path, spec in document["paths"].items()
        for method, operation in spec.items()
        if method in METHODS
    }
    assert sorted(set(served) - set(documented)) == [], "routes missing from web/openapi.py"
    assert sorted(set(documented) - set(served)) == [], "operations of web/openapi.py the app does not serve"
    assert served == documented, "each operationId must be the endpoint of its rule"
    assert set(UNDOCUMENTED) <= {r.rule for r in rules}, "UNDOCUMENTED names a rule that is gone"
    assert all(len(reason) > 20 for reason in UNDOCUMENTED.values())


def test_the_document_is_served_and_unknown_api_addresses_stay_json_404s(web):
    client = web.server.test_client()
    served = client.get("/api/openapi.json")
    assert served.status_code == 200 and served.is_json
    assert served.json["openapi"] == "3.1.0" and "/api/terms/{slug}" in served.json["paths"]
    for path in ("/api/openapi.yaml", "/api/openapi.json/x", "/api/no/such/route", "/api/terms/visual/nothing"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.is_json, path
        assert answer.json["error"], path
    wrong_method = client.post("/api/openapi.json")
    assert wrong_method.status_code == 405 and wrong_method.is_json and wrong_method.json["error"]


def test_docs_api_md_is_what_the_script_writes_now():
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    api_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api_docs)
    written = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert written == api_docs.current_text(), "docs/api.md is out of date: run python scripts/api_docs.py"
    anchors = set(re.findall(r'^<a id="([a-z0-9-]+)"></a>$', written, re.MULTILINE))
    assert set(re.findall(r"\]\(#([^)]*)\)", written)) <= anchors, "a link of docs/api.md has no anchor"


def _curator_with_a_private_collection() -> None:
    """A curator who owns a private (empty) collection: signed in, the listings show what anonymous visitors
    never see."""
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from store.db import session_scope

    with session_scope() as session:
        owner = create_user(session, CURATOR, CURATOR_PASSWORD, first_name="Open", last_name="Api")
        create_collection(
            session, owner, get_or_create_movie(session, "Forrest Gump"), "OpenAPI private study", visibility="private"
        )


def _operations() -> int:
    from web.openapi import openapi_document

    return sum(method in METHODS for spec in openapi_document()["paths"].values() for method in spec)


def _schemathesis(url: str, workdir: Path, phases: str, headers: dict[str, str] | None = None) -> str:
    """Run ``st run`` on the served document; its output, with the run's failures if any."""
    workdir.mkdir()
    cmd = [
        str(BIN / "st"),
        "run",
        f"{url}/api/openapi.json",
        "--url",
        url,
        "--checks",
        CHECKS,
        "--phases",
        phases,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--no-color",
        "--workers",
        "2",
    ]
    for name, value in (headers or {}).items():
        cmd += ["--header", f"{name}: {value}"]
    # In its own folder: schemathesis keeps state in the working directory.
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-4000:]
    return done.stdout


def _examples_answer_200(url: str) -> None:
    """The examples of the document name demo data (``web.openapi.DEMO_*``): each GET with them is a 200, so
    schemathesis checks answers with a body, not only 404s. A decoding's example only shows the form (results
    expire), and the System report is for administrators."""
    from web.openapi import openapi_document

    for path, spec in openapi_document()["paths"].items():
        if "get" not in spec or path in ("/api/decode/{token}", "/api/system"):
            continue
        params = spec["get"]["parameters"]
        address = path.format(**{p["name"]: p["example"] for p in params if p["in"] == "path"})
        query = {p["name"]: p["example"] for p in params if p["in"] == "query" and p["required"]}
        assert requests.get(url + address, params=query, timeout=120).status_code == 200, address


def _decode_round_trip(url: str, tmp_path: Path) -> None:
    """The decoder's answers with a real result, which no generated token names: a map sent (200), its result
    (200) and an anonymous delete (403), each checked against the document by schemathesis's own checks."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
    body = write_nifti(tmp_path / "map.nii.gz", component_maps(1)[0]).read_bytes()
    sent = schema["/api/decode"]["POST"].Case(
        query={"name": "map.nii.gz"}, body=body, media_type="application/octet-stream"
    )
    answer = sent.call_and_validate(base_url=url, checks=checks)
    assert answer.status_code == 200, answer.text
    token = answer.json()["id"]
    result = schema["/api/decode/{token}"]["GET"].Case(path_parameters={"token": token})
    shown = result.call_and_validate(base_url=url, checks=checks).json()
    assert shown["status"] == "done" and shown["volumes"][0]["terms"], shown
    delete = schema["/api/decode/{token}"]["DELETE"].Case(path_parameters={"token": token})
    assert delete.call_and_validate(base_url=url, checks=checks).status_code == 403


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(demo_dir, tmp_path):
    _curator_with_a_private_collection()
    web = start_embedded(service_env(demo_dir), tmp_path / "app.log")
    with running(web):
        _examples_answer_200(web.url)  # also loads the atlases (seconds), which is then not a request of the run
        _decode_round_trip(web.url, tmp_path)
        out = _schemathesis(web.url, tmp_path / "anonymous", "examples,coverage,fuzzing")
        # Every operation but the one that serves the document, which schemathesis leaves out.
        assert f"Tested: {_operations() - 1}" in out, out
        curator = Client(web.url)
        curator.sign_in(CURATOR, CURATOR_PASSWORD)
        assert curator.get("/api/system").status_code == 403, "the curator is not signed in"
        cookies = "; ".join(f"{name}={curator.cookie(name)}" for name in ("session", "_csrf_token"))
        _schemathesis(web.url, tmp_path / "curator", "examples,fuzzing", {"Cookie": cookies, **curator.csrf_headers()})
    assert "Traceback" not in web.text(), web.text()[-4000:]
