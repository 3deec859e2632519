"""What a timeline sends, part by part: traces decimated with every minimum and maximum kept, heatmap columns as
means per bin, annotation tracks as merged intervals, the zoom's range read from Plotly's events, and gzip on the
app's own answers when (and only when) the client accepts it."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from store.timeline import MAX_TRACKS, decimate, envelope, heatmap_columns


def test_decimation_keeps_every_extreme_and_the_order():
    rng = np.random.default_rng(0)
    x = np.arange(53_985, dtype=float)
    y = rng.standard_normal(len(x))
    y[12_345], y[40_000] = 25.0, -30.0  # one-sample spikes, which a mean per bin would flatten
    t, v = decimate(x, y, 2000)
    assert len(t) <= 2000 and np.all(np.diff(t) > 0)
    assert v.max() == 25.0 and v.min() == -30.0 and 12_345.0 in t and 40_000.0 in t
    # Each bin of consecutive points keeps its own minimum and maximum.
    edges = np.linspace(0, len(x), 1001).astype(int)
    for lo, hi in zip(edges[:-1:97], edges[1::97]):
        inside = v[(t >= lo) & (t < hi)]
        assert inside.max() == y[lo:hi].max() and inside.min() == y[lo:hi].min()
    short_t, short_v = decimate(x[:100], y[:100], 2000)
    assert np.array_equal(short_v, y[:100])  # nothing to decimate


def test_the_band_covers_every_point():
    x = np.arange(10_000, dtype=float)
    low, high = -np.abs(np.sin(x / 7)) - 1, np.abs(np.cos(x / 3)) + 1
    bx, blow, bhigh = envelope(x, low, high, 500)
    assert len(bx) == 500 and blow.min() == low.min() and bhigh.max() == high.max()


def test_heatmap_columns_are_bin_means_with_finer_columns_for_a_range():
    times = np.arange(0, 7200, 2.0)  # 3,600 samples
    course = {"movie_time_s": times, "z": np.sin(times / 300)}
    other = {"movie_time_s": times[1000:], "z": np.ones(len(times) - 1000)}  # starts later
    grid, z = heatmap_columns([course, other], 0, 7200, 2000)
    assert len(grid) == 2000 and z.shape == (2, 2000)
    edges = np.linspace(0, 7200, 2001)
    inside = (times >= edges[10]) & (times < edges[11])
    assert z[0, 10] == pytest.approx(course["z"][inside].mean())
    assert np.isnan(z[1, :500]).all() and np.allclose(z[1, 600:], 1.0)  # nothing before its first sample
    fine_grid, fine = heatmap_columns([course, other], 600, 900, 2000)
    assert len(fine_grid) == 151 and fine_grid.min() >= 600 and fine_grid.max() <= 900  # one column per sample
    assert np.allclose(fine[0], np.sin(fine_grid / 300), atol=0.02)


def test_the_zoom_range_is_read_from_every_form_of_relayout_data():
    from dashboard.components.timeline import zoom_range

    span = [0.0, 7200.0]
    assert zoom_range({"xaxis.range[0]": 600, "xaxis.range[1]": 900.5}, span) == (600.0, 900.5)
    assert zoom_range({"xaxis.range": [900, 600]}, span) == (600.0, 900.0)  # the range slider's form
    assert zoom_range({"xaxis.autorange": True}, span) == (0.0, 7200.0)
    assert zoom_range({"xaxis.range": [-50, 99_999]}, span) == (0.0, 7200.0)
    for junk in ({"yaxis.range[0]": 1}, {"xaxis.range": ["a", "b"]}, {"xaxis.range": [float("nan"), 3]}, None, []):
        assert zoom_range(junk, span) is None
    assert zoom_range({"xaxis.range": [10, 20]}, "nope") is None


def test_choices_from_the_address_are_checked():
    from dashboard.components.timeline import choices_from_query, parse_choices

    assert choices_from_query({"labels": json.dumps(["3|FORREST (V.O.)", "3|a|b", "x|y", 5, "4|東京"])}) == [
        (3, "FORREST (V.O.)"),
        (3, "a|b"),
        (4, "東京"),
    ]
    assert choices_from_query({"labels": "not json"}) is None
    assert choices_from_query({"labels": json.dumps({"a": 1})}) is None
    assert choices_from_query({}) is None
    assert len(parse_choices([f"1|label {i}" for i in range(500)])) == MAX_TRACKS


def test_a_long_track_is_sent_as_merged_intervals(data_dir):
    from accounts.users import create_user
    from pipeline.curation.catalog import get_or_create_movie
    from pipeline.temporal.annotations import add_annotation_set
    from store import timeline
    from store.db import session_scope

    rows = [(10.0 * i, 12.0, "speech") for i in range(2000)]  # each event overlaps the next: one interval
    rows += [(30_000.0 + 100 * i, 1.0, "speech") for i in range(3)]
    rows += [(5.0 * i, 1.0, "Зебра") for i in range(1000)]
    tsv = "onset\tduration\ttrial_type\n" + "".join(f"{o}\t{d}\t{label}\n" for o, d, label in rows)
    with session_scope() as session:
        user = create_user(session, "merge@example.org", "a long password 1")
        movie = get_or_create_movie(session, "Merge Movie")
        set_id = add_annotation_set(session, user, movie, "Set", tsv, "events.tsv").id
        tracks = timeline.track_intervals(session, movie, [(set_id, "speech"), (set_id, "Зебра"), (999, "x")])
        coarse = timeline.track_intervals(session, movie, [(set_id, "Зебра")], gap=5.0)
    speech, zebra = tracks
    assert speech["events"] == 2003 and speech["intervals"][0] == [0.0, 19_990.0 + 12.0]
    assert len(speech["intervals"]) == 4
    assert zebra["events"] == 1000 and len(zebra["intervals"]) == 1000  # 4 s gaps are kept without a gap allowance
    assert coarse[0]["intervals"] == [[0.0, 4996.0]]


@pytest.fixture
def server(data_dir):
    import app as app_module

    return app_module.server


def test_gzip_when_accepted_and_only_then(server):
    client = server.test_client()
    client.get("/")
    big = client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
    if big.status_code == 404:
        big = client.get("/api/terms?per_page=100", headers={"Accept-Encoding": "gzip"})
    assert big.status_code == 200 and big.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in big.headers["Vary"]
    data = json.loads(gzip.decompress(big.data))
    path = big.request.path + ("?" + big.request.query_string.decode() if big.request.query_string else "")
    plain = client.get(path)
    assert "Content-Encoding" not in plain.headers and plain.get_json() == data
    assert int(big.headers["Content-Length"]) == len(big.data) < len(plain.data)
    refused = client.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers
    star = client.get(path, headers={"Accept-Encoding": "*"})
    assert star.headers.get("Content-Encoding") == "gzip"
    small = client.get("/api/nothing-here", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers  # under the threshold: not worth it


def test_csv_downloads_are_gzipped_when_accepted(server):
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from pipeline.temporal.annotations import add_annotation_set
    from store.db import session_scope

    tsv = "onset\tduration\ttrial_type\n" + "".join(f"{i}\t1\tlabel {i % 7}\n" for i in range(3000))
    with session_scope() as session:
        user = create_user(session, "csv@example.org", "a long password 1")
        movie = get_or_create_movie(session, "Csv Movie")
        create_collection(session, user, movie, "Csv collection")  # a movie is shown with a public collection
        set_id = add_annotation_set(session, user, movie, "Set", tsv, "events.tsv").id
        slug = movie.slug
    client = server.test_client()
    packed = client.get(f"/movies/{slug}/annotations/{set_id}.csv", headers={"Accept-Encoding": "gzip, br"})
    plain = client.get(f"/movies/{slug}/annotations/{set_id}.csv")
    assert packed.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert gzip.decompress(packed.data) == plain.data and len(plain.data.splitlines()) == 3001
