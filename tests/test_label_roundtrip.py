"""Every annotation label's text survives the trip through the app's links (issue 22, item 1): the label page,
opened at the path the app's own links give (Dash pages hand it over still percent-encoded), shows the label and
its components; the page's title, its JSON and map links and the API give the same label back."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from sqlalchemy import select

from store.db import session_scope
from store.models import AnnotationSet, Component, TemporalDecoding
from tests.services import Client, component_maps, write_nifti

LABELS = (
    "FORREST (V.O.)",
    "LT. DAN",
    "embattled jungle",
    "Bubba's mother's dining room",
    "AC/DC",
    "#1 fan",
    "why?",
    "100% cotton",
    "50%25 off",
    "Q&A",
    "C++",
    "a+b=c",
    "Лейтенант Дэн",
    "フォレスト",
    "1994",
    "trailing/",
    "x?y=1&z=2#top",
)


def _texts(node: Any) -> list[str]:
    """Every string of a Dash layout (as JSON), in order."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    if isinstance(node, dict):
        if "props" in node:
            return _texts(node["props"].get("children"))
        return [t for value in node.values() for t in _texts(value)]
    return []


def _find(node: Any, key: str, value: Any) -> list[dict]:
    """The components of a layout whose props have ``key == value``."""
    found = []
    if isinstance(node, list):
        for item in node:
            found += _find(item, key, value)
    elif isinstance(node, dict):
        props = node.get("props", {})
        if props.get(key) == value:
            found.append(node)
        for child in props.values() if "props" in node else node.values():
            found += _find(child, key, value)
    return found


def _hrefs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [h for item in node for h in _hrefs(item)]
    if isinstance(node, dict):
        props = node.get("props", {})
        own = [props["href"]] if isinstance(props.get("href"), str) else []
        return own + [h for child in (props.values() if "props" in node else node.values()) for h in _hrefs(child)]
    if hasattr(node, "to_plotly_json"):
        return _hrefs(json.loads(json.dumps(node, cls=__import__("plotly").utils.PlotlyJSONEncoder)))
    return []


@pytest.fixture
def labelled(web, tmp_path) -> str:
    """A component that follows every label of :data:`LABELS` (q < 0.05) in an annotation set of its movie;
    returns its uuid."""
    from tests.test_timeline import new_collection

    maps = write_nifti(tmp_path / "maps.nii.gz", component_maps(1, seed=2))
    events = "onset\tduration\ttrial_type\n" + "".join(f"{10 * i}\t5\t{label}\n" for i, label in enumerate(LABELS))
    collection_id, job_id = new_collection([maps], timing=None, annotations=events, movie="Label Movie")
    from pipeline.curation.ingest import ingest

    assert ingest(job_id).components == 1
    with session_scope() as session:
        comp = session.scalar(select(Component).where(Component.collection_id == collection_id))
        set_id = session.scalar(select(AnnotationSet.id))
        for rank, label in enumerate(LABELS, start=1):
            session.add(
                TemporalDecoding(component_id=comp.id, set_id=set_id, label=label, r=0.5, p=0.001, q=0.01, rank=rank)
            )
        return comp.uuid


def _label_page_links(web, uuid: str) -> dict[str, str]:
    """label -> the /labels/ link of each place of the app that builds one (component page, annotations page)."""
    from dashboard.components.timeline import temporal_table
    from dashboard.pages.movie_annotations import set_cards
    from store import timeline

    with web.server.test_request_context():
        with session_scope() as session:
            rows = timeline.component_temporal(session, None, uuid)
        cards = set_cards("label-movie")
    links: dict[str, set[str]] = {}
    for place in (temporal_table(rows, limit=len(LABELS)), cards):
        for href in (h for h in _hrefs(place) if h.startswith("/labels/")):
            links.setdefault(unquote(href[len("/labels/") :]), set()).add(href)
    assert set(links) == set(LABELS) and all(len(v) == 1 for v in links.values()), links
    return {label: v.pop() for label, v in links.items()}


def test_every_label_round_trips_through_its_links_the_page_and_the_api(web, labelled):
    from dashboard.pages.label import label_url, title

    client = Client(flask_app=web.server)
    links = _label_page_links(web, labelled)
    for label, href in links.items():
        assert urlsplit(href).path == href, href  # nothing of the label leaks into a query or fragment
        layout = json.loads(client.page_layout(href))
        texts = _texts(layout)
        heading = "".join(texts[texts.index("Label ") : texts.index("Label ") + 2])
        assert heading == f"Label {label}", (href, heading)
        rows = _find(layout, "id", "label-components")
        assert rows and f"/components/{labelled}" in _hrefs(rows), (label, "no component listed")
        api = next(h for h in _hrefs(layout) if h.startswith("/api/labels/"))
        body = client.get(api).json()
        assert "label" in body, (label, api, body)
        assert body["label"] == label and [r["uuid"] for r in body["items"]] == [labelled], (label, api)
        if label in ("FORREST (V.O.)", "AC/DC", "フォレスト", "50%25 off"):  # the mean map of the page's viewer
            assert client.get(label_url(label)).status_code == 200, label
    typed = json.loads(client.page_layout("/labels/AC/DC"))  # a "/" typed as it is
    assert f"/components/{labelled}" in _hrefs(_find(typed, "id", "label-components"))
    assert title(label=quote("FORREST (V.O.)", safe="")) == "FORREST (V.O.) · Labels · INcDb"


def test_a_label_typed_into_the_address_bar_opens_its_page(web, labelled):
    """Browsers encode a typed path less than the app's links do: spaces and non-Latin letters, not () or /."""
    client = Client(flask_app=web.server)
    for label in ("FORREST (V.O.)", "Лейтенант Дэн"):
        typed = "/labels/" + quote(label, safe="()/'")
        layout = json.loads(client.page_layout(typed))
        assert f"/components/{labelled}" in _hrefs(_find(layout, "id", "label-components")), typed
