"""What a person waits for: every page type in headless Chromium (Debian's), on the demo data, against a minimal
Dash page in the same run.

For each page, ``--loads`` fresh loads (a new browser context each: no cache) measure
- first contentful paint (the browser's ``paint`` entry),
- ready: the page's ``data-ready`` marker (``document.body.dataset.ready``, set when its main figure or viewer is
  drawn; see ``assets/incdb-ready.js``), or network idle for a page without one,
- long tasks: the main thread's tasks over 50 ms, summed (``longtask`` entries),
- bytes transferred (every response's encoded size, from the CDP network events),
- callback requests and their response bytes.
The minimal page is a Dash app with one ``html.Div`` served by this script. Targets (DESIGN/issue 21): every page
ready <= 2 s median and <= 3x the minimal page. The last line is
``worst_ready_s=.. worst_page=.. worst_ratio=..``.

Run by hand: ``python bench/pages.py [--loads 5] [--data-dir DIR]`` (without ``--data-dir`` a fresh data dir is
made with the demo data, about 2 minutes, and removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.browse import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OBSERVE = """
window.__incdbLong = 0;
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__incdbLong += e.duration; })
  .observe({type: 'longtask', buffered: true});
"""


def pages(base: str) -> dict[str, str]:
    """Every page type of the demo, found through the API so the bench follows the data."""

    def first(path: str, key: str) -> str:
        items = requests.get(base + path, timeout=30).json()["items"]
        return items[0][key]

    movie = first("/api/movies?sort=components", "slug")
    term = first("/api/terms?sort=components&order=desc", "slug")
    component = first(f"/api/components?term={term}&per_page=1", "uuid")
    collection = first("/api/collections", "slug")
    labels = requests.get(f"{base}/api/components/{component}/temporal", timeout=30).json()
    label = labels[0]["label"] if isinstance(labels, list) and labels else "dialogue"
    from urllib.parse import quote

    return {
        "home": "/",
        "movies": "/movies",
        "terms": "/terms",
        "movie": f"/movies/{movie}",
        "movie_timeline": f"/movies/{movie}?tab=timeline",
        "term": f"/terms/{term}",
        "movie_term": f"/movies/{movie}/{term}",
        "component": f"/components/{component}",
        "label": f"/labels/{quote(label, safe='')}",
        "decode": "/decode",
        "contribute": "/contribute",
        "collection": f"/collections/{collection}",
    }


def measure(browser, url: str) -> dict[str, float]:
    # The app's CSP forbids eval, which Playwright's polling predicates need: bypassed in the bench only.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.add_init_script(OBSERVE)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    transferred = [0]
    callbacks = {"n": 0, "bytes": 0}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))

    def finished(event):
        transferred[0] += event.get("encodedDataLength", 0)
        if "_dash-update-component" in urls.get(event["requestId"], ""):
            callbacks["n"] += 1
            callbacks["bytes"] += event.get("encodedDataLength", 0)

    cdp.on("Network.loadingFinished", finished)
    start = time.monotonic()
    page.goto(url, wait_until="commit")
    try:
        page.wait_for_function("document.body && document.body.dataset.ready === '1'", timeout=20000, polling=50)
        ready = time.monotonic() - start
        marker = True
    except Exception:  # noqa: BLE001 - a page without the marker: network idle instead
        page.wait_for_load_state("networkidle", timeout=120000)
        ready = time.monotonic() - start
        marker = False
    page.wait_for_load_state("networkidle", timeout=120000)
    fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0") / 1000
    long_s = page.evaluate("window.__incdbLong || 0") / 1000
    context.close()
    return {
        "fcp_s": fcp,
        "ready_s": ready,
        "long_s": long_s,
        "mb": transferred[0] / 1e6,
        "callbacks": callbacks["n"],
        "callback_kb": callbacks["bytes"] / 1e3,
        "marker": marker,
    }


def minimal_app(port: int) -> threading.Thread:
    """A Dash page with one Div that marks itself ready: what Dash costs by itself."""
    import logging

    import dash
    from dash import html
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request in the report

    app = dash.Dash(__name__)
    app.layout = html.Div("Minimal page", id="minimal")
    app.index_string = app.index_string.replace(
        "{%renderer%}",
        "{%renderer%}<script>new MutationObserver(() => { if (document.getElementById('minimal'))"
        " document.body.dataset.ready = '1'; }).observe(document, {subtree: true, childList: true});"
        "</script>",
    )
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--data-dir", help="an existing data dir with the demo data (else one is made)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = None
    data_dir = args.data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    if not data_dir:
        scratch = tempfile.mkdtemp(prefix="incdb-bench-pages-")
        data_dir = str(Path(scratch) / "data")
        env["INCDB_DATA_DIR"] = data_dir
        for step in (["init"], ["demo"]):
            subprocess.run(
                [sys.executable, "-m", "pipeline", *step], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
            )
    env.update(INCDB_DATA_DIR=data_dir, INCDB_DEMO="0")
    port, minimal_port = free_port(), free_port()
    app = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(base + "/api/stats", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        minimal_app(minimal_port)
        targets = {"minimal": f"http://127.0.0.1:{minimal_port}/", **{k: base + v for k, v in pages(base).items()}}
        results: dict[str, list[dict]] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            for name, url in targets.items():
                measure(browser, url)  # a warm-up: server caches, not the browser's
                results[name] = [measure(browser, url) for _ in range(args.loads)]
            browser.close()
        base_ready = statistics.median(r["ready_s"] for r in results["minimal"])
        print(
            f"{'page':16} {'fcp s':>6} {'ready s':>8} {'ratio':>6} {'long s':>7} {'MB':>6} {'cbs':>4} "
            f"{'cb KB':>7} marker"
        )
        worst = ("", 0.0, 0.0)
        for name, runs in results.items():
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("fcp_s", "ready_s", "long_s", "mb", "callbacks", "callback_kb")
            }
            ratio = med["ready_s"] / base_ready
            print(
                f"{name:16} {med['fcp_s']:6.2f} {med['ready_s']:8.2f} {ratio:6.2f} {med['long_s']:7.2f} "
                f"{med['mb']:6.2f} {med['callbacks']:4.0f} {med['callback_kb']:7.1f} "
                f"{all(r['marker'] for r in runs)}"
            )
            if name != "minimal" and med["ready_s"] > worst[1]:
                worst = (name, med["ready_s"], ratio)
        print(json.dumps({k: [round(r["ready_s"], 2) for r in v] for k, v in results.items()}))
        print(f"worst_ready_s={worst[1]:.2f} worst_page={worst[0]} worst_ratio={worst[2]:.2f}")
    finally:
        app.terminate()
        app.wait(timeout=30)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
