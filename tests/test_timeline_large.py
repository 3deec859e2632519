"""The timeline of a movie with hundreds of labels (``tests.timeline_fixtures``: a 2-hour film, 8 overlapping runs,
540 labels over three sets, thousands of events): the label chooser, its defaults and its place in the address;
what the Timeline tab and the component's Time course panel send; the zoom that fetches finer columns."""

from __future__ import annotations

import gzip
import json
import shutil
from typing import Any

import plotly
import pytest

from store.db import session_scope
from tests.conftest import use_environment
from tests.services import Client
from tests.timeline_fixtures import EARLY_LABEL, LATE_LABEL, SETS, build_study

# The Timeline tab's callback answer at this size (5 components, 12 tracks drawn of 540 labels). Before, it carried
# every heatmap cell's hover text and the events of the first 40 tracks, and grew with the labels.
TAB_BYTES = 400_000
COMPONENT_BYTES = 200_000


@pytest.fixture(scope="module")
def study_path(tmp_path_factory, reference_template):
    path = tmp_path_factory.mktemp("timeline-large") / "data"
    shutil.copytree(reference_template, path)
    use_environment(path)
    study = build_study(tmp_path_factory.mktemp("timeline-large-files"))
    return path, study


@pytest.fixture
def study(study_path):
    path, found = study_path
    use_environment(path)
    return found


@pytest.fixture
def client(study):
    import app as app_module

    return Client(flask_app=app_module.server)


def _plain(node: Any) -> Any:
    return json.loads(json.dumps(node, cls=plotly.utils.PlotlyJSONEncoder))


def _find(node: Any, **props: Any) -> list[dict]:
    found = []
    if isinstance(node, list):
        for item in node:
            found += _find(item, **props)
    elif isinstance(node, dict):
        own = node.get("props", {})
        if "props" in node and all(own.get(k) == v for k, v in props.items()):
            found.append(node)
        for child in own.values() if "props" in node else node.values():
            found += _find(child, **props)
    return found


def _graph(node: Any, name: str) -> dict:
    """The dcc.Graph named ``name`` (``{"type": "incdb-graph", "graph": name}``) inside ``node``."""
    return next(
        g
        for g in _find(node)
        if isinstance(g["props"].get("id"), dict) and g["props"]["id"] == {"type": "incdb-graph", "graph": name}
    )


def _texts(node: Any) -> str:
    return json.dumps(node, ensure_ascii=False)


def _track_names(figure: dict) -> list[str]:
    """The names of a figure's annotation tracks, as drawn on its track axis."""
    return list(figure["layout"]["yaxis2"].get("ticktext") or [])


def _call(client: Client, output: str, inputs: dict[str, Any], state: dict[str, Any], changed: str) -> Any:
    """Run the callback writing ``output`` as the renderer would; ``inputs``/``state`` map "id.prop" (a JSON id for
    a dict id) to values. Returns (answer, bytes of the answer)."""
    dep = next(d for d in client._deps if d["output"].split("@")[0] == output or d["output"] == output)

    def fill(items: list[dict], values: dict[str, Any]) -> list[dict]:
        out = []
        for item in items:
            ident = item["id"]
            key = f"{ident}.{item['property']}"
            out.append({"id": json.loads(ident) if ident.startswith("{") else ident, "property": item["property"]})
            out[-1]["value"] = values.get(key)
        return out

    body = {
        "output": dep["output"],
        "outputs": client._outputs(dep["output"].split("@")[0]) if "@" in dep["output"] else client._outputs(output),
        "inputs": fill(dep["inputs"], inputs),
        "state": fill(dep.get("state", []), state),
        "changedPropIds": [changed],
    }
    r = client.post(client._url(), json_body=body)
    assert r.status_code in (200, 204), r.text[:2000]
    return (r.json() if r.status_code == 200 else None), len(r.content)


def _graph_id(name: str) -> str:
    return json.dumps({"graph": name, "type": "incdb-graph"}, separators=(",", ":"))


def _tab_id() -> str:
    return json.dumps({"name": "movie", "type": "incdb-tabs"}, separators=(",", ":"))


def _open_tab(client: Client, slug: str) -> tuple[dict, int]:
    client.open_page(f"/movies/{slug}")
    out, size = _call(
        client,
        "..movie-timeline-body.children...movie-timeline-body.data-loaded..",
        {f"{_tab_id()}.active_tab": "timeline"},
        {"movie-timeline-slug.data": slug, "movie-timeline-body.data-loaded": "0"},
        f"{_tab_id()}.active_tab",
    )
    return out["response"]["movie-timeline-body"]["children"], size


def _course_panel(uuid: str, chosen=None) -> dict:
    import app as app_module
    from dashboard.components.timeline import course_section
    from web.auth import viewer

    with app_module.server.test_request_context(), session_scope() as session:
        return _plain(course_section(session, viewer(), uuid, chosen))


def test_the_component_panel_draws_its_best_labels_even_late_in_the_alphabet(study):
    panel = _course_panel(study.uuids[0])
    graph = _graph(panel, "course-graph")
    names = _track_names(graph["props"]["figure"])
    assert f"{SETS[-1]}: {LATE_LABEL}" == names[0], names[:5]  # its best label (lowest q) comes first
    other = _course_panel(study.uuids[1])
    graph = _graph(other, "course-graph")
    assert _track_names(graph["props"]["figure"])[0] == f"{SETS[0]}: {EARLY_LABEL}"


def test_the_chooser_says_how_many_labels_are_shown_and_hidden(study, client):
    panel = _course_panel(study.uuids[0])
    [note] = _find(panel, id="course-tracks-note")
    assert note["props"]["children"].startswith("12 of 540 labels shown; 528 hidden"), note
    [chooser] = _find(panel, id="course-tracks")
    assert "540 labels" in chooser["props"]["placeholder"]
    options = chooser["props"]["options"]
    # The chosen labels and a hundred others are listed; a search on the server finds any of the 540.
    assert len({o["value"] for o in options}) == len(options) == 12 + 100
    assert set(chooser["props"]["value"]) <= {o["value"] for o in options}
    sets = [o["label"].split(" › ")[0] for o in options]
    assert set(sets) <= set(SETS) and sets == sorted(sets)  # grouped by annotation set, each named
    found = _search(
        client, f"/components/{study.uuids[0]}", "course", {"course-data.data": {"uuid": study.uuids[0]}}, "東京"
    )
    labels = [o["label"] for o in found]
    expected = [label for _, label in study.annotations.labels() if "東京" in label]
    assert len(expected) > 50 and all(any(f"› {e} (" in x for x in labels) for e in expected)
    punctuation = _search(
        client, f"/movies/{study.slug}", "timeline", {"timeline-state.data": {"slug": study.slug}}, "100% & more+"
    )
    assert punctuation and all("100% & more+" in o["label"] or o["value"] in [] for o in punctuation[:1])


def _search(client: Client, page: str, panel: str, state: dict[str, Any], text: str) -> list[dict]:
    """The options a chooser lists for a search typed into it."""
    client.open_page(page)
    ident = "course-tracks" if panel == "course" else "timeline-labels"
    out, _ = _call(
        client,
        f"{ident}.options",
        {f"{ident}.search_value": text},
        {f"{ident}.value": [], **state},
        f"{ident}.search_value",
    )
    return out["response"][ident]["options"]


def test_a_chosen_label_is_drawn_and_the_address_restores_it(study, client):
    from dashboard.components.timeline import choices_from_query

    found = _search(
        client, f"/components/{study.uuids[2]}", "course", {"course-data.data": {"uuid": study.uuids[2]}}, "東京"
    )
    wanted = next(o["value"] for o in found if " › 東京" in o["label"])
    client.open_page(f"/components/{study.uuids[2]}")
    out, _ = _call(
        client,
        "..{}.figure...course-tracks-note.children...course-tracks.options..".format(_graph_id("course-graph")),
        {"course-label.value": None, "course-tracks.value": [wanted]},
        {"course-data.data": {"uuid": study.uuids[2]}},
        "course-tracks.value",
    )
    figure = out["response"][_graph_id("course-graph")]["figure"]
    assert len(_track_names(figure)) == 1 and "東京" in _track_names(figure)[0]
    assert out["response"]["course-tracks-note"]["children"].startswith("1 of 540 labels shown")
    # The address keeps the choice as a JSON list; the movie page draws it from there.
    query = {"tab": "timeline", "labels": json.dumps([wanted])}
    assert choices_from_query(query) == [(int(wanted.split("|")[0]), wanted.split("|", 1)[1])]
    layout = client.page_layout(f"/movies/{study.slug}", "?tab=timeline&labels=" + json.dumps([wanted]))
    assert "1 of 540 labels shown" in layout


def test_the_movie_timeline_defaults_to_the_labels_components_follow_then_the_busiest(study):
    from dashboard.components.timeline import movie_timeline
    from store.models import Component, TemporalDecoding

    with session_scope() as session:  # make the designed links significant, as a full null would
        for uuid, label in ((study.uuids[0], LATE_LABEL), (study.uuids[1], EARLY_LABEL)):
            row = (
                session.query(TemporalDecoding)
                .join(Component)
                .filter(Component.uuid == uuid, TemporalDecoding.label == label)
                .one()
            )
            row.q = 0.001
        found = movie_timeline(session, None, study.slug)
    names = _track_names(_plain(found["figure"]))
    assert set(names[:2]) == {f"{SETS[-1]}: {LATE_LABEL}", f"{SETS[0]}: {EARLY_LABEL}"}, names
    assert len(names) == 12 and found["note"].startswith("12 of 540 labels shown; 528 hidden")


def test_the_timeline_tab_answer_is_bounded_and_the_heatmap_has_at_most_2000_columns(study, client):
    body, size = _open_tab(client, study.slug)
    assert size < TAB_BYTES, size
    graph = _graph(body, "timeline")
    heatmaps = [t for t in graph["props"]["figure"]["data"] if t["type"] == "heatmap"]
    assert heatmaps and all(len(t["x"]) <= 2000 for t in heatmaps)
    assert len(heatmaps[0]["x"]) >= 1000  # 2,365 distinct times at TR 3 s: the bins are means, not a subsample
    bars = [t for t in graph["props"]["figure"]["data"] if t["type"] == "bar"]
    assert len(bars) == 12
    # Merged intervals: the overlapping runs of EARLY_LABEL's events make fewer bars than events.
    early = next(t for t in bars if EARLY_LABEL in t["name"])
    assert len(early["base"]) < 240
    assert "12 of 540 labels shown" in _texts(body)


def test_the_component_panel_is_bounded(study, client):
    from dashboard.components.timeline import course_section  # noqa: F401 (the loader draws it)

    panel = _course_panel(study.uuids[0])
    assert len(json.dumps(panel, ensure_ascii=False).encode()) < COMPONENT_BYTES
    [store] = _find(panel, id="course-data")
    assert "events" not in json.dumps(store["props"]["data"])  # the page holds no events
    graph = _graph(panel, "course-graph")
    points = sum(len(t.get("x") or []) for t in graph["props"]["figure"]["data"] if t["type"] == "scatter")
    assert points <= 2 * 2000 + 64  # the course and its band, each decimated


def test_zooming_fetches_finer_columns_for_the_range_in_view(study, client, monkeypatch):
    from store import timeline as store_timeline

    monkeypatch.setattr(store_timeline, "MAX_COLUMNS", 200)
    import dashboard.components.timeline as component

    monkeypatch.setattr(component, "MAX_COLUMNS", 200)
    body, _ = _open_tab(client, study.slug)
    graph = _graph(body, "timeline")
    coarse = graph["props"]["figure"]["data"][0]
    [state] = _find(body, id="timeline-state")
    in_range = [x for x in coarse["x"] if 600 <= x <= 900]
    out, size = _call(
        client,
        f"{_graph_id('timeline')}.figure",
        {f"{_graph_id('timeline')}.relayoutData": {"xaxis.range[0]": 600, "xaxis.range[1]": 900}},
        {"timeline-state.data": state["props"]["data"]},
        f"{_graph_id('timeline')}.relayoutData",
    )
    patch = json.dumps(out)
    fine = [op for op in out["response"][_graph_id("timeline")]["figure"]["operations"] if op["location"][-1] == 1]
    assert fine, patch[:500]
    update = fine[0]["params"]["value"]
    assert update["visible"] is True
    assert len(update["x"]) > 3 * len(in_range) and all(600 <= x <= 900 for x in update["x"])
    assert len(update["z"]) == len(coarse["z"])
    assert size < 100_000  # only the range's columns travel, not the figure
    # A reset hides the finer layer again.
    out, _ = _call(
        client,
        f"{_graph_id('timeline')}.figure",
        {f"{_graph_id('timeline')}.relayoutData": {"xaxis.autorange": True}},
        {"timeline-state.data": state["props"]["data"]},
        f"{_graph_id('timeline')}.relayoutData",
    )
    assert "false" in json.dumps(out).lower()


def test_the_timeline_tab_answer_is_gzipped_for_browsers(study, client):
    client.open_page(f"/movies/{study.slug}")
    dep = next(
        d for d in client._deps if d["output"] == "..movie-timeline-body.children...movie-timeline-body.data-loaded.."
    )
    body = {
        "output": dep["output"],
        "outputs": client._outputs(dep["output"]),
        "inputs": [{"id": json.loads(_tab_id()), "property": "active_tab", "value": "timeline"}],
        "state": [
            {"id": "movie-timeline-slug", "property": "data", "value": study.slug},
            {"id": "movie-timeline-body", "property": "data-loaded", "value": "0"},
        ],
        "changedPropIds": [f"{_tab_id()}.active_tab"],
    }
    plain = client.post(client._url(), json_body=body)
    packed = client.post(client._url(), json_body=body, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed.headers.get("Content-Encoding") == "gzip" and "Content-Encoding" not in plain.headers
    assert json.loads(gzip.decompress(packed.content)) == plain.json()
    assert len(packed.content) * 3 < len(plain.content)
