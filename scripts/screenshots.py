"""Screenshots of the real app for the README and docs: ``python scripts/screenshots.py`` (inside ``.venv``).

What it does, from nothing: a fresh temporary data directory, ``python -m pipeline init`` and ``python -m pipeline
demo`` in it (the synthetic demo data, through the real ingest path), ``python app.py`` on a free port (the
embedded default, as ``tests/services.start_embedded`` starts it), and Debian's Chromium through Playwright with
a fresh profile. It opens the home page, a component page with the viewer drawn and a movie's Timeline tab, and
writes ``docs/images/home.png``, ``component.png`` and ``timeline.png`` (1280 x 800). Then it stops the app and
removes the data directory.

The browser is the one the tests use (``/usr/bin/chromium``, never a downloaded one) with the same flags; WebGL
runs on SwiftShader, so ``--disable-gpu`` must not be passed (the viewer would stay blank). Requests to other
sites (the theme's web font) are refused, so the pictures do not depend on the network. A page is photographed
only when what it is for is drawn: the heatmap, the viewer's canvas after NiiVue loaded the map, the timeline's
plot, and no Dash request still running.

Chromium writes 24-bit PNGs; screenshots of a flat interface have few colours, so each one is re-encoded with
an adaptive 256-colour palette when Pillow is importable (it comes with matplotlib), which keeps every file well
under 300 KB. Without Pillow the PNGs are kept as Chromium wrote them.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - after the path is set
from tests.services import running, service_env, start_embedded  # noqa: E402

OUT = ROOT / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 300_000  # generous: SwiftShader and the first atlas build are slow on a busy machine
MOVIE = "Forrest Gump"  # a demo movie with annotation sets and time courses
IDLE = "() => !document.querySelector('._dash-loading, [data-dash-is-loading=\"true\"]')"


def build_data(data_dir: Path, env: dict[str, str]) -> None:
    """An upgraded database with the built-in reference and the demo data, made by the project's own CLI."""
    data_dir.mkdir(parents=True)
    for command in ("init", "demo"):
        print(f"python -m pipeline {command}", flush=True)
        subprocess.run([sys.executable, "-m", "pipeline", command], env=env, cwd=ROOT, check=True)


def _settle(page) -> None:
    page.wait_for_function(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_timeout(600)  # Plotly and NiiVue draw the frame after the data arrived


def _open(page, path: str, ready: str) -> None:
    page.goto(path)
    page.wait_for_selector(ready, timeout=TIMEOUT_MS)
    _settle(page)


def _small_png(png: bytes) -> bytes:
    """The screenshot with an adaptive 256-colour palette (the interface has few colours), or as it is."""
    try:
        from PIL import Image
    except ImportError:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(png) else png


def _save(page, name: str) -> Path:
    path = OUT / name
    path.write_bytes(_small_png(page.screenshot(full_page=False, timeout=TIMEOUT_MS)))
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB", flush=True)
    return path


def take(base_url: str, profile: Path) -> list[Path]:
    """Open the three pages in Chromium and write their screenshots."""
    import requests
    from playwright.sync_api import sync_playwright

    movies = requests.get(f"{base_url}/api/movies", params={"search": MOVIE}, timeout=30).json()["items"]
    movie = next(m["slug"] for m in movies if m["title"] == MOVIE)
    best = requests.get(f"{base_url}/api/components", params={"sort": "r", "per_page": 1}, timeout=30).json()
    component = best["items"][0]["uuid"]
    # The first region lookup resamples the atlases onto the grid and caches them (seconds on an idle machine);
    # done here, so the component page's cluster table does not wait for it inside the browser's timeout.
    requests.get(f"{base_url}/api/atlas", params={"x": 0, "y": -18, "z": 18}, timeout=TIMEOUT_MS / 1000)

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
            base_url=base_url,
        )
        try:
            context.route("https://**/*", lambda route: route.abort())
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            _open(page, "/", "#graph-heatmap .main-svg .hm")
            saved = [_save(page, "home.png")]
            _open(page, f"/components/{component}", '[data-loaded="true"]')
            saved.append(_save(page, "component.png"))
            _open(page, f"/movies/{movie}?tab=timeline", "#movie-timeline .js-plotly-plot")
            # The tabs at the top of the picture: the Timeline tab shown as chosen, and the whole plot below it.
            page.evaluate(
                "() => window.scrollTo(0, document.querySelector('.nav-tabs').getBoundingClientRect()"
                ".top + window.scrollY - 12)"
            )
            _settle(page)
            saved.append(_save(page, "timeline.png"))
        finally:
            context.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--copy-data-dir",
        type=Path,
        help="start from a copy of this data directory (which must "
        "hold the demo data) instead of building one: quicker while adjusting the pictures",
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: Chromium not found at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="incdb-screenshots-") as tmp:
        tmp_path = Path(tmp)
        data_dir = tmp_path / "data"
        env = service_env(data_dir, HOST="127.0.0.1")
        if args.copy_data_dir:
            shutil.copytree(args.copy_data_dir, data_dir)
        else:
            build_data(data_dir, env)
        app = start_embedded(env, tmp_path / "app.log", timeout=180)
        with running(app):
            take(app.url, tmp_path / "chromium-profile")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
