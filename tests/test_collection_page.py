"""The public collection page ``/collections/<slug>``: its facts, its components sorted by ISC, the ISFC section
loaded through the lazy-section callback, the visibility rule (a private collection is not found for strangers),
escaping of hostile names, and the ISC column of a movie's Components tab."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from store.db import session_scope
from store.models import Collection, Component, Term, User
from tests.services import Client
from tests.test_synchrony_pages import computed, rendered

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def app_module(data_dir):
    import app

    return app


def _owner(collection_id: int) -> User:
    with session_scope() as session:
        owner = session.get(User, session.get(Collection, collection_id).owner_id)
        session.expunge(owner)
        return owner


def _layout(app_module, slug: str, user: User | None = None, **query) -> str:
    from flask_login import login_user

    from dashboard.pages import collection as page

    with app_module.server.test_request_context("/"):
        if user is not None:
            login_user(user)
        return rendered(page.layout(slug=slug, **query))


def _component_links(text: str) -> list[str]:
    """The component uuids linked from the page (the components table), in the order shown."""
    found: list[str] = []
    for uuid in re.findall(r'"href": "/components/([0-9a-f-]+)"', text):
        if uuid not in found:
            found.append(uuid)
    return found


def test_a_public_collection_page_shows_its_facts_components_and_isfc_section(app_module, tmp_path):
    c = computed(tmp_path)
    with session_scope() as session:
        collection = session.get(Collection, c["id"])
        collection.license = "CC-BY-4.0"
        collection.doi = "10.1234/abc"
        collection.dataset_url = "https://example.org/data"
        collection.description = "Three viewers of a film."
        name = collection.name
    text = _layout(app_module, c["slug"])
    assert name in text and "Sync Movie" in text and "/movies/sync-movie" in text
    assert "Three viewers of a film." in text and "https://doi.org/10.1234/abc" in text
    assert "https://example.org/data" in text and "CC-BY-4.0" in text
    assert "Subjects" in text and "TR" in text and "2 s" in text and "Runs" in text
    assert json.dumps("melodic_IC.nii.gz · IC 1")[1:-1] in text and "ISC" in text
    assert '"collection-isfc"' in text and "Networks that move together (ISFC)" in text
    assert "collection-isc-note" not in text  # ISC was computed: nothing to explain
    assert set(_component_links(text)) == set(c["uuids"])


def test_the_components_table_sorts_by_isc_highest_first(app_module, tmp_path):
    c = computed(tmp_path)
    # Shared signal per component is 1.5, 0.0, 0.6, 1.0 (tests.test_synchrony_jobs.SHARED)
    expected = [c["uuids"][i] for i in (0, 3, 2, 1)]
    text = _layout(app_module, c["slug"], sort="isc")
    assert _component_links(text) == expected

    from store import queries

    with session_scope() as session:
        page = queries.list_components(session, None, collection_slug=c["slug"], sort="isc")
        assert [row["uuid"] for row in page.items] == expected
        iscs = [row["isc"] for row in page.items]
        assert iscs == sorted(iscs, reverse=True) and all(row["isc_q"] is not None for row in page.items)
        # keyset paging along the ISC order gives the same rows
        first = queries.list_components(session, None, collection_slug=c["slug"], sort="isc", per_page=2)
        rest = queries.list_components(session, None, collection_slug=c["slug"], sort="isc", cursor=first.next_cursor)
        assert [r["uuid"] for r in first.items + rest.items] == expected


def test_the_movie_components_tab_has_a_sortable_isc_column(app_module, tmp_path):
    from dashboard.pages import movie as page

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        text = rendered(page.layout(movie="sync-movie", tab="components", sort="isc"))
        collections = rendered(page.layout(movie="sync-movie", tab="collections"))
    assert "Highest ISC" in text and "leave-one-out inter-subject correlation" in text
    assert _component_links(text) == [c["uuids"][i] for i in (0, 3, 2, 1)]
    assert f"/collections/{c['slug']}" in collections


def test_a_private_collection_is_not_found_for_strangers_and_shown_to_its_owner(app_module, tmp_path):
    from dashboard.components.lazy import load

    c = computed(tmp_path, private=True)
    stranger = _layout(app_module, c["slug"])
    assert "not found" in stranger.lower() and c["uuids"][0] not in stranger
    assert "collection-isfc" not in stranger
    owner = _layout(app_module, c["slug"], _owner(c["id"]))
    assert "not found" not in owner.lower() and set(_component_links(owner)) == set(c["uuids"])
    with app_module.server.test_request_context("/"):
        assert "cannot be shown" in rendered(load("collection-isfc", {"slug": c["slug"]}))


def test_the_component_page_links_to_its_collection_page(app_module, tmp_path):
    from dashboard.pages import component as page

    c = computed(tmp_path)
    with app_module.server.test_request_context("/"):
        text = rendered(page.layout(uuid=c["uuids"][0]))
    assert f"/collections/{c['slug']}" in text


def test_a_collection_of_one_subject_says_why_it_has_no_isc(app_module, tmp_path):
    from pipeline.curation.ingest import ingest
    from tests.test_synchrony_jobs import ONE_TIMING, make_collection, shared_mix

    collection_id, job_id = make_collection(tmp_path, ONE_TIMING, shared_mix(ONE_TIMING))
    ingest(job_id)
    with session_scope() as session:
        slug = session.get(Collection, collection_id).slug
    text = _layout(app_module, slug)
    assert "collection-isc-note" in text and "one subject" in text


def test_the_isfc_section_loads_through_the_lazy_callback_with_hostile_names_escaped(app_module, tmp_path):
    c = computed(tmp_path)
    with session_scope() as session:
        collection = session.get(Collection, c["id"])
        collection.name = HOSTILE
        term_id = session.scalar(
            select(Component.best_term_id).where(Component.uuid == c["uuids"][0], Component.best_term_id.is_not(None))
        )
        assert term_id is not None
        session.get(Term, term_id).name = HOSTILE

    client = Client(flask_app=app_module.server)
    page = client.get(f"/collections/{c['slug']}")
    assert page.status_code == 200 and HOSTILE not in page.text
    content = client.page_layout(f"/collections/{c['slug']}")
    assert json.dumps(HOSTILE)[1:-1] in content  # shown as text (Dash renders strings as text nodes)

    dep = next(d for d in client._deps if "incdb-lazy-body" in d["output"])
    key = {"section": "collection-isfc"}
    body = {
        "output": dep["output"],
        "outputs": {"id": {"type": "incdb-lazy-body", **key}, "property": "children"},
        "inputs": [{"id": {"type": "incdb-lazy-load", **key}, "property": "data", "value": True}],
        "state": [{"id": {"type": "incdb-lazy-args", **key}, "property": "data", "value": {"slug": c["slug"]}}],
        "changedPropIds": [client.pattern_prop({"type": "incdb-lazy-load", **key}, "data")],
    }
    answer = client.post(client._url(), json_body=body)
    assert answer.status_code == 200, answer.text[:500]
    drawn = json.dumps(answer.json())
    assert '"heatmap"' in drawn and f"/api/collections/{c['slug']}/isfc.csv" in drawn
    assert "&lt;img src=x" in drawn and "<img" not in drawn
