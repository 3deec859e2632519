"""The viewer in headless Chromium: NiiVue draws, and thresholds, clicks, go-to, visibility and downloads work.

A small Dash app is built here from ``dashboard.viewer`` with two synthetic maps on the MNI grid (the second is
4D) and the real underlay, served by a Flask route of the test.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator

import numpy as np
import pytest

from tests.browser import (
    REPO_ROOT,
    Pixels,
    decode_png,
    launch_browser,
    require_chromium,
    save_artifact,
    serve_wsgi_in_thread,
)

ROOT = "viewer"
LOAD_TIMEOUT_MS = 60_000


def blob(center_mm, sigma_mm: float) -> np.ndarray:
    from pipeline.maps.grid import voxel_coordinates_mm

    d2 = ((voxel_coordinates_mm() - np.asarray(center_mm, np.float32)) ** 2).sum(axis=-1)
    return np.exp(-d2 / (2 * sigma_mm**2)).astype(np.float32)


def synthetic_maps() -> dict[str, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    from pipeline.maps.grid import brain_mask

    mask = brain_mask()
    # Blobs through the volume centre, where the crosshair starts, so all three slices show colour; plus the weak
    # smooth noise of a real component, which makes its display copy a predicted one (pipeline/maps/display.py).
    noise = gaussian_filter(np.random.default_rng(0).standard_normal(mask.shape), 2.0)
    positive = 6.0 * blob((0, -18, 18), 14) - 4.0 * blob((30, -60, 0), 10) + 0.4 * noise / noise.std()
    second = np.stack(
        [5.0 * blob((-30, 10, 30), 12), 5.0 * blob((30, 10, 30), 12) + 0.4 * noise / noise.std()], axis=-1
    )
    return {
        "positive": np.where(mask, positive, 0).astype(np.float32),
        "second": np.where(mask[..., None], second, 0).astype(np.float32),
    }


def build_files() -> dict[str, bytes]:
    """Display copies and full-precision files of the synthetic maps, and the underlay's display copy."""
    from pipeline.maps.display import encode_for_display
    from pipeline.maps.grid import GRID_AFFINE, to_image, underlay

    files = {"underlay.nii.gz": encode_for_display(underlay(), GRID_AFFINE)}
    for name, data in synthetic_maps().items():
        files[f"{name}-display.nii.gz"] = encode_for_display(data, GRID_AFFINE)
        files[f"{name}.nii.gz"] = gzip.compress(to_image(data).to_bytes(), compresslevel=1)
    return files


def build_app():
    """Dash app with the viewer, its NiiVue route, and the map files (display and full precision)."""
    import flask
    from dash import Dash, Input, Output, html

    from callbacks.viewer import register_viewer_callbacks
    from dashboard.viewer import LayerSpec, register_viewer_routes, viewer

    files = build_files()
    server = flask.Flask(__name__)

    @server.route("/files/<name>")
    def send_map(name: str):
        if name not in files:
            flask.abort(404)
        return flask.Response(files[name], mimetype="application/gzip")

    app = Dash(
        __name__,
        server=server,
        assets_folder=str(REPO_ROOT / "assets"),
        assets_ignore=r"^(?!incdb-viewer\.)",  # the viewer's own assets only, not the rest of the app's
        external_scripts=[register_viewer_routes(server)],
        title="viewer test",
    )
    register_viewer_callbacks(app)

    def layout_viewer():
        layers = [
            LayerSpec(
                url="/files/positive-display.nii.gz", name="Map A", download_url="/files/positive.nii.gz", key="map-a"
            ),
            LayerSpec(
                url="/files/second-display.nii.gz",
                name="Map B",
                download_url="/files/second.nii.gz",
                colormap="viridis",
                colormap_negative="",
                key="map-b",
            ),
        ]
        return viewer(layers, id=ROOT, height=420)

    app.layout = html.Div(
        [
            html.Button("Reload viewer", id="reload-viewer", n_clicks=0),
            html.Div(layout_viewer(), id="page"),
        ],
        style={"padding": "8px", "width": "1200px"},
    )

    # What Dash pages do on navigation: the server replaces the page subtree, canvas included.
    @app.callback(Output("page", "children"), Input("reload-viewer", "n_clicks"), prevent_initial_call=True)
    def reload_viewer(_: int):
        return layout_viewer()

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    require_chromium()
    with serve_wsgi_in_thread(build_app().server) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        yield browser
        browser.close()


def open_viewer_page(browser, base_url):
    context = browser.new_context(viewport={"width": 1240, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    wait_loaded(page, 3)
    return context, page, errors


@pytest.fixture(scope="module")
def shared_page(browser, base_url):
    context, page, errors = open_viewer_page(browser, base_url)
    yield page, errors
    context.close()


@pytest.fixture()
def page(shared_page):
    """One page for the tests that leave the viewer as they found it (a page load costs seconds here)."""
    page, errors = shared_page
    seen = len(errors)
    yield page
    assert not errors[seen:], f"JavaScript errors: {errors[seen:]}"


@pytest.fixture()
def fresh_page(browser, base_url):
    """A page of its own, for tests that remove layers or viewers."""
    context, page, errors = open_viewer_page(browser, base_url)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def wait_loaded(page, nvols: int) -> None:
    page.wait_for_selector(f'#{ROOT}[data-loaded="true"][data-nvols="{nvols}"]', timeout=LOAD_TIMEOUT_MS)
    # Let NiiVue finish the frame it is drawing and Dash settle its callbacks.
    page.wait_for_function("() => !document.querySelector('._dash-loading')", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(300)


def canvas_png(page) -> bytes:
    return page.locator(f"#{ROOT}-canvas").screenshot()


def canvas_pixels(page) -> Pixels:
    return decode_png(canvas_png(page))


def is_warm(r: int, g: int, b: int) -> bool:
    """Colours of the "warm" colormap (Map A): not the gray underlay, black background or green crosshair."""
    return r > 180 and b < 90 and r - b > 120


def readout_mm(page) -> list[float]:
    text = page.locator(f"#{ROOT} .incdb-readout-coords").inner_text()
    match = re.search(r"x = (-?[\d.]+), y = (-?[\d.]+), z = (-?[\d.]+)", text)
    assert match, f"no coordinates in readout {text!r}"
    return [float(v) for v in match.groups()]


def layer_row(page, name: str):
    return page.locator(f"#{ROOT} .incdb-layer", has=page.get_by_role("button", name=f"Select layer {name}"))


def wait_for_change(page, before: Pixels, min_pixels: int = 200) -> Pixels:
    """Pixels once they differ from ``before`` (rendering follows callbacks asynchronously)."""
    after, last_png = before, None
    for _ in range(40):
        page.wait_for_timeout(150)
        png = canvas_png(page)
        if png == last_png:  # same bytes, same pixels: skip decoding
            continue
        last_png, after = png, decode_png(png)
        if after.differing_pixels(before) >= min_pixels:
            return after
    return after


def test_niivue_bundle_is_where_nilearn_ships_it() -> None:
    from dashboard.viewer import niivue_path

    path = niivue_path()
    assert path.parts[-4:] == ("nilearn", "_assets", "js", "niivue.umd.js")
    assert b"Niivue" in path.read_bytes()[-20000:]  # the UMD export list ends the file


def test_missing_bundle_is_a_clear_error(monkeypatch) -> None:
    import flask

    import dashboard.viewer as viewer_module

    monkeypatch.setattr(viewer_module, "NIIVUE_PACKAGE_PATH", ("_assets", "js", "moved.js"))
    with pytest.raises(RuntimeError, match=r"nilearn.*_assets/js/moved\.js"):
        viewer_module.register_viewer_routes(flask.Flask(__name__))


def test_niivue_route_serves_the_bundle_with_cache_headers() -> None:
    import flask

    from dashboard.viewer import niivue_path, register_viewer_routes

    server = flask.Flask(__name__)
    url = register_viewer_routes(server)
    assert register_viewer_routes(server) == url  # idempotent: one route however many pages ask
    assert url.startswith("/vendor/niivue.umd.js")
    response = server.test_client().get(url)
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert "max-age" in response.headers.get("Cache-Control", "")
    assert response.get_data() == niivue_path().read_bytes()


def test_layout_holds_layers_with_the_underlay_first() -> None:
    from dashboard.viewer import LayerSpec, component_id, layer_dicts, viewer

    layers = layer_dicts([LayerSpec(url="/m/a.nii.gz"), {"url": "/m/b.nii.gz", "name": "B", "key": "b"}])
    assert [layer["key"] for layer in layers] == ["underlay", "layer-1", "b"]
    assert layers[0]["underlay"] and layers[0]["url"] == "/files/underlay.nii.gz"
    assert layers[1]["name"] == "a" and layers[1]["colormap"] == "warm" and layers[1]["threshold"] is None
    layout = viewer(layers[1:], id="v1", height=300)
    found = {}

    def walk(node) -> None:
        if isinstance(getattr(node, "id", None), (str, dict)):
            found[str(node.id)] = node
        children = getattr(node, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)

    walk(layout)
    assert found[str(component_id("layers", "v1"))].data == layer_dicts(layers[1:])
    assert "v1-canvas" in found
    with pytest.raises(TypeError, match="unknown layer field"):
        viewer([{"url": "/m/a.nii.gz", "colour": "red"}])


def test_viewer_draws_maps(page) -> None:
    nvols = page.evaluate(f"() => window.incdbViewer.get('{ROOT}').volumes.length")
    assert nvols == 3
    pixels = canvas_pixels(page)
    save_artifact("viewer.png", page.locator(f"#{ROOT}").screenshot())
    total = pixels.width * pixels.height
    lit = pixels.count(lambda r, g, b: r + g + b > 60)
    warm = pixels.count(is_warm)
    assert lit > 0.15 * total, f"only {lit} of {total} canvas pixels are not background"
    assert warm > 2000, f"only {warm} pixels in Map A's colours: overlay not drawn"
    # Values read back through NiiVue are the map values (8-bit display copy: within 0.5% of the range).
    from pipeline.maps.grid import mni_to_voxel

    data = synthetic_maps()["positive"]
    expected = float(data[tuple(mni_to_voxel((0, -18, 18)))])
    value = page.evaluate(
        f"""() => {{ const vol = window.incdbViewer.volume('{ROOT}', 'map-a');
            const vox = vol.mm2vox([0, -18, 18]); return vol.getValue(vox[0], vox[1], vox[2]); }}"""
    )
    assert abs(value - expected) <= 0.005 * float(data.max() - data.min())


def test_viewer_holds_exactly_the_display_codes(page) -> None:
    """Every voxel NiiVue holds equals the 8-bit code the server encoded: the viewer undid the Lorenzo prediction
    of the display copies (pipeline/maps/display.py) bit for bit, for 3D and 4D maps, and left plain copies alone."""
    import base64

    from pipeline.maps.display import PREDICTED_INTENT, decode_display

    files = build_files()
    # The maps (with noise) must be predicted or the test would prove nothing; the underlay compresses better plain.
    for key, name, predicted in (
        ("underlay", "underlay.nii.gz", False),
        ("map-a", "positive-display.nii.gz", True),
        ("map-b", "second-display.nii.gz", True),
    ):
        raw = gzip.decompress(files[name])
        assert (raw[328:344].rstrip(b"\0") == PREDICTED_INTENT) == predicted, name
        expected = np.asarray(decode_display(files[name]).dataobj.get_unscaled()).ravel(order="F")
        held = page.evaluate(
            f"""() => {{ const vol = window.incdbViewer.volume('{ROOT}', '{key}');
                const bytes = new Uint8Array(vol.img.buffer, vol.img.byteOffset, vol.img.byteLength);
                let s = ""; for (let i = 0; i < bytes.length; i += 8192)
                  s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
                return [vol.img.constructor.name, btoa(s)]; }}"""
        )
        assert held[0] == "Uint8Array", f"{key}: NiiVue holds {held[0]}"
        codes = np.frombuffer(base64.b64decode(held[1]), dtype=np.uint8)
        assert codes.shape == expected.shape, key
        assert np.array_equal(codes, expected), f"{key}: {np.count_nonzero(codes != expected)} voxels differ"


def test_threshold_slider_changes_pixels(page) -> None:
    layer_row(page, "Map A").get_by_role("button", name="Select layer Map A").click()
    page.wait_for_function(f"() => document.querySelector('#{ROOT} .incdb-layer.active')?.dataset.layer === 'map-a'")
    before = canvas_pixels(page)
    handle = page.locator(f"#{ROOT} .incdb-viewer-settings [role=slider]").first
    handle.focus()
    handle.press("End")
    after = wait_for_change(page, before)
    assert after.differing_pixels(before) >= 200, "moving the threshold did not change the picture"
    cal_min = page.evaluate(f"() => window.incdbViewer.volume('{ROOT}', 'map-a').cal_min")
    assert cal_min > 5.0
    # Fewer pixels in the colormap above the higher threshold.
    assert after.count(is_warm) < before.count(is_warm)
    handle.press("Home")
    restored = wait_for_change(page, after)
    assert restored.differing_pixels(before) < 50


def test_click_updates_readout(page) -> None:
    canvas = page.locator(f"#{ROOT}-canvas")
    box = canvas.bounding_box()
    first = readout_mm(page)
    canvas.click(position={"x": box["width"] * 0.12, "y": box["height"] * 0.35})
    page.wait_for_function(
        f"""(first) => {{ const el = document.querySelector('#{ROOT} .incdb-readout-coords');
            return el && el.dataset.mm !== first; }}""",
        arg=",".join(str(int(v)) if v == int(v) else str(v) for v in first),
        timeout=20_000,
    )
    second = readout_mm(page)
    assert second != first
    crosshair = page.evaluate(f"() => window.incdbViewer.crosshairMM('{ROOT}')")
    assert np.allclose(second, crosshair, atol=0.1)


def test_goto_coordinate(page) -> None:
    for axis, value in zip("xyz", ("30", "-40", "20")):
        field = page.locator(f"#{ROOT} input[placeholder='{axis}']")
        field.fill(value)
    page.get_by_role("button", name="Go", exact=True).click()
    page.wait_for_function(
        f"() => document.querySelector('#{ROOT} .incdb-readout-coords')?.dataset.mm === '30,-40,20'",
        timeout=20_000,
    )
    assert readout_mm(page) == [30.0, -40.0, 20.0]
    assert np.allclose(page.evaluate(f"() => window.incdbViewer.crosshairMM('{ROOT}')"), [30, -40, 20], atol=0.01)
    # The readout lists the visible maps with their values at the crosshair.
    names = page.locator(f"#{ROOT} .incdb-readout-name").all_inner_texts()
    assert "Map A" in names and "Map B" in names


def test_hiding_a_layer_changes_pixels(page) -> None:
    before = canvas_pixels(page)
    page.get_by_role("button", name="Hide layer Map B").click()
    after = wait_for_change(page, before)
    assert after.differing_pixels(before) >= 200
    assert page.evaluate(f"() => window.incdbViewer.volume('{ROOT}', 'map-b').opacity") == 0
    page.get_by_role("button", name="Show layer Map B").click()
    restored = wait_for_change(page, after)
    assert restored.differing_pixels(before) < 50


def test_download_link_points_at_full_precision_file(page, base_url) -> None:
    link = page.get_by_role("link", name="Download layer Map A")
    assert link.get_attribute("href") == "/files/positive.nii.gz"
    import urllib.request

    import nibabel as nib

    with urllib.request.urlopen(base_url + link.get_attribute("href")) as response:
        img = nib.Nifti1Image.from_bytes(gzip.decompress(response.read()))
    assert img.get_data_dtype() == np.float32
    assert np.array_equal(img.get_fdata(), synthetic_maps()["positive"])


def test_layer_order_and_remove(fresh_page) -> None:
    page = fresh_page
    ids = lambda: page.evaluate(  # noqa: E731
        f"() => window.incdbViewer.get('{ROOT}').volumes.map(v => v.incdbKey)"
    )
    assert ids() == ["underlay", "map-a", "map-b"]
    page.get_by_role("button", name="Move layer Map A up").click()
    page.wait_for_function(f"() => window.incdbViewer.get('{ROOT}').volumes[2].incdbKey === 'map-a'")
    assert ids() == ["underlay", "map-b", "map-a"]
    assert page.get_by_role("button", name="Move layer Map B down").is_disabled()
    page.get_by_role("button", name="Remove layer Map A").click()
    wait_loaded(page, 2)
    assert ids() == ["underlay", "map-b"]
    assert page.get_by_role("button", name="Remove layer MNI152 template").count() == 0


def test_4d_frame_stepping(page) -> None:
    page.get_by_role("button", name="Select layer Map B").click()
    frame_count = page.locator(f"#{ROOT} .incdb-viewer-settings").get_by_text("of 2")
    frame_count.wait_for(timeout=20_000)
    before = canvas_pixels(page)
    page.get_by_role("button", name="Next", exact=True).click()
    page.wait_for_function(f"() => window.incdbViewer.volume('{ROOT}', 'map-b').frame4D === 1")
    after = wait_for_change(page, before)
    assert after.differing_pixels(before) >= 200
    page.get_by_role("button", name="Previous", exact=True).click()
    page.wait_for_function(f"() => window.incdbViewer.volume('{ROOT}', 'map-b').frame4D === 0")


def test_removed_canvas_is_disposed(fresh_page) -> None:
    page = fresh_page
    lost = page.evaluate(
        f"""async () => {{
            const nv = window.incdbViewer.get('{ROOT}');
            const gl = nv.gl;
            document.getElementById('{ROOT}').parentElement.remove();
            await new Promise((resolve) => setTimeout(resolve, 100));
            return {{count: window.incdbViewer.count(), lost: gl.isContextLost()}};
        }}"""
    )
    assert lost == {"count": 0, "lost": True}


def test_page_navigation_disposes_the_old_viewer(fresh_page) -> None:
    page = fresh_page
    page.evaluate("() => { window.__oldContexts = []; }")
    for _ in range(2):
        page.evaluate(f"() => window.__oldContexts.push(window.incdbViewer.get('{ROOT}').gl)")
        page.get_by_role("button", name="Reload viewer").click()
        page.wait_for_function(
            f"""() => {{ const nv = window.incdbViewer.get('{ROOT}');
                return nv !== null && !window.__oldContexts.includes(nv._gl); }}""",
            timeout=LOAD_TIMEOUT_MS,
        )
        wait_loaded(page, 3)
    assert page.evaluate("() => window.incdbViewer.count()") == 1
    assert page.evaluate("() => window.__oldContexts.every((gl) => gl.isContextLost())")
    assert canvas_pixels(page).count(is_warm) > 2000


def test_view_switch(page) -> None:
    select = page.locator(f"#{ROOT} .incdb-viewer-view select")
    before = canvas_pixels(page)
    for view in ("render", "multiplanar-3d", "axial", "multiplanar"):
        select.select_option(view)
        after = wait_for_change(page, before)
        assert after.differing_pixels(before) >= 200, f"switching to {view} did not change the picture"
        assert after.count(lambda r, g, b: r + g + b > 60) > 0.05 * after.width * after.height, view
        before = after
