"""CSV injection (OWASP): no CSV download holds a cell that a spreadsheet would run as a formula.

A curator's annotation set with formula-like name and labels, and a term with a formula-like name, are put into
the demo data; then every CSV route of the Flask app (found in its url_map, so a new route cannot be missed) is
downloaded and each cell checked. Numbers must stay numbers: negative r values and coordinates are written as
they are. A source check keeps every CSV writer in the one shared module (``web.csvfile``).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from accounts.users import create_user
from pipeline.synchrony.jobs import compute_collection_synchrony
from pipeline.temporal.annotations import add_annotation_set, decode_collection_in_time
from store.db import session_scope
from store.models import Collection, Component, Movie, Term, TermMap
from tests.conftest import ROOT
from web.csvfile import FORMULA_STARTS, safe_cell

HOSTILE_SET = '=HYPERLINK("https://evil.example","set")'
HOSTILE_LABELS = ("=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3+cmd|' /C calc'!A0")
HOSTILE_TERM = "-1+1+cmd|' /C calc'!A0"
DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def hostile_events() -> str:
    rows = [f"{10 + 40 * i + 9 * j}\t6\t{label}" for i in range(12) for j, label in enumerate(HOSTILE_LABELS)]
    return "onset\tduration\ttrial_type\n" + "\n".join(rows) + "\n"


def cells(text: str) -> list[str]:
    """Every cell of a CSV download (the ``#`` comment lines of cluster tables are the server's own text)."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return [cell for row in csv.reader(io.StringIO(body)) for cell in row]


def formula_cells(found: list[str]) -> list[str]:
    return [c for c in found if c.startswith(FORMULA_STARTS) and not DECIMAL.fullmatch(c)]


@pytest.fixture
def hostile(web, demo_dir) -> dict[str, str]:
    """A movie whose annotations, temporal decodings and a term carry formulas; the addresses to fill the routes."""
    with session_scope() as session:
        comp = session.scalar(
            select(Component)
            .join(Collection)
            .where(Collection.visibility == "public", Component.timecourse_id.is_not(None))
            .order_by(Component.id)
        )
        movie = session.get(Movie, comp.collection.movie_id)
        merged = session.scalar(
            select(TermMap).where(TermMap.movie_id == movie.id, TermMap.term_id.is_not(None)).order_by(TermMap.id)
        )
        term = session.get(Term, comp.best_term_id)
        term.name = HOSTILE_TERM
        curator = create_user(session, "mallory@example.org", "a long password 1")
        annotation = add_annotation_set(session, curator, movie, HOSTILE_SET, hostile_events(), "evil.tsv")
        collections = list(session.scalars(select(Collection.id).where(Collection.movie_id == movie.id)))
        found = {
            "uuid": comp.uuid,
            "slug": movie.slug,
            "set_id": str(annotation.id),
            "term": term.slug,
            "merged_term": session.get(Term, merged.term_id).slug,
            "collection": comp.collection.slug,
        }
    for collection_id in collections:
        decode_collection_in_time(collection_id, n_shifts=200)
        compute_collection_synchrony(collection_id, n_resamples=50)  # after the sets: moments carry hostile labels
    client = web.server.test_client()
    map_bytes = client.get(f"/files/components/{found['uuid']}.nii.gz").data
    decoded = client.post(
        "/api/decode?name=map.nii.gz", data=map_bytes, headers={"Content-Type": "application/octet-stream"}
    ).get_json()
    assert decoded["status"] == "done", decoded
    found["token"] = decoded["id"]
    return found


def route_address(rule: str, found: dict[str, str]) -> list[str]:
    """The downloads of one CSV route on the hostile data (a new route must be added here)."""
    addresses = {
        "/components/<uuid>/decodings.csv": [f"/components/{found['uuid']}/decodings.csv"],
        "/components/<uuid>/timecourse.csv": [f"/components/{found['uuid']}/timecourse.csv"],
        "/components/<uuid>/temporal.csv": [f"/components/{found['uuid']}/temporal.csv"],
        "/movies/<slug>/annotations/<int:set_id>.csv": [f"/movies/{found['slug']}/annotations/{found['set_id']}.csv"],
        "/components/<uuid>/clusters.csv": [f"/components/{found['uuid']}/clusters.csv?threshold=1"],
        "/terms/<term>/clusters.csv": [
            f"/terms/{found['term']}/clusters.csv",
            f"/terms/{found['term']}/clusters.csv?map=mean",
        ],
        "/movies/<movie>/<term>/clusters.csv": [f"/movies/{found['slug']}/{found['merged_term']}/clusters.csv"],
        "/decode/<token>/profile.csv": [f"/decode/{found['token']}/profile.csv"],
        "/api/components/<uuid>/isc.csv": [f"/api/components/{found['uuid']}/isc.csv"],
        "/api/collections/<slug>/isfc.csv": [f"/api/collections/{found['collection']}/isfc.csv"],
        "/api/movies/<slug>/synchrony.csv": [f"/api/movies/{found['slug']}/synchrony.csv"],
    }
    assert rule in addresses, f"a new CSV route {rule}: add it to this test with hostile data"
    return addresses[rule]


def test_no_csv_download_holds_a_formula(web, hostile):
    client = web.server.test_client()
    rules = sorted(r.rule for r in web.server.url_map.iter_rules() if r.rule.endswith(".csv"))
    assert len(rules) >= 8
    seen: dict[str, list[str]] = {}
    for rule in rules:
        for address in route_address(rule, hostile):
            response = client.get(address)
            assert response.status_code == 200 and response.mimetype == "text/csv", address
            found = cells(response.get_data(as_text=True))
            assert found, address
            assert formula_cells(found) == [], address
            seen[address] = found
    uuid = hostile["uuid"]
    # The hostile text is there, as text; the numbers are numbers.
    temporal = seen[f"/components/{uuid}/temporal.csv"]
    assert {"'" + HOSTILE_SET} | {"'" + label for label in HOSTILE_LABELS} <= set(temporal)
    events = seen[f"/movies/{hostile['slug']}/annotations/{hostile['set_id']}.csv"]
    assert {"'" + label for label in HOSTILE_LABELS} <= set(events)
    assert "'" + HOSTILE_TERM in seen[f"/components/{uuid}/decodings.csv"]
    assert "'" + HOSTILE_TERM in seen[f"/decode/{hostile['token']}/profile.csv"]
    synchrony = seen[f"/api/movies/{hostile['slug']}/synchrony.csv"]  # by-label rows: the hostile set and labels
    assert {"'" + HOSTILE_SET} | {"'" + label for label in HOSTILE_LABELS} <= set(synchrony)
    negative_r = [c for c in seen[f"/components/{uuid}/decodings.csv"] if c.startswith("-")]
    assert negative_r and all(float(c) < 0 for c in negative_r)
    assert any(c.startswith("-") and float(c) < 0 for c in temporal if DECIMAL.fullmatch(c))


def test_a_cell_is_neutralised_only_when_it_is_text_that_starts_a_formula():
    assert safe_cell("=1+1") == "'=1+1" and safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("+1+cmd") == "'+1+cmd" and safe_cell("-1+cmd") == "'-1+cmd"
    assert safe_cell("\t=1") == "'\t=1" and safe_cell("\r=1") == "'\r=1"
    assert safe_cell("-0.53") == "-0.53" and safe_cell("+1e-06") == "+1e-06" and safe_cell("-42") == "-42"
    assert safe_cell(-0.53) == -0.53 and safe_cell(-3) == -3 and safe_cell(None) == ""
    assert safe_cell("speech") == "speech" and safe_cell("a=b") == "a=b"


def test_every_csv_writer_is_the_shared_one():
    """CSV is written only by web.csvfile (routes and any dcc.Download builder alike)."""
    shared = ROOT / "web" / "csvfile.py"
    pattern = re.compile(r"csv\.writer\(|csv\.DictWriter\(|\.to_csv\(|send_data_frame|send_string\(")
    offenders = []
    for folder in ("web", "dashboard", "pipeline", "store", "accounts"):
        for path in sorted(Path(ROOT / folder).rglob("*.py")):
            if path != shared and pattern.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
