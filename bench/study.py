"""A study of real size through a running app, as a curator and a reader meet it.

The study is ``tests/realstudy.py``'s :data:`FULL` shape: a 2-hour film in 8 runs of about 450 volumes at TR 2 s
with 16 s overlaps, 15 subjects concatenated (53,985 rows), 70 components as a whole zipped MELODIC ``.gica`` folder,
three annotation sets with 544 labels and about 6,000 events. The app runs as ``python app.py`` on a fresh data
directory (SQLite, diskcache background jobs, no demo data). In headless Chromium (Debian's) the bench

1. signs in, creates the collection with the study's timing, uploads the archive through the contribute panel
   (HTTP, the panel's streaming upload) and waits for processing: ``ingest_s``;
2. adds the three annotation sets on the movie's annotations page one right after the other and waits until the
   movie's temporal decoding has finished (no queued or running ``temporal`` job): ``temporal_s``;
3. opens the movie's Timeline tab in a fresh browser context that has first opened the home page, so the site's
   scripts and styles (plotly.js included) are cached as in any visitor's browser after one page: bytes
   transferred by the tab (``timeline_mb``; the callbacks' and API's share is printed too) and the time to the
   page's data-ready marker (``document.body.dataset.ready == "1"``, ``timeline_draw_s``); then zooms the timeline
   to a tenth of the film by a drag on the plot (``zoom_s``: from the release until the plot shows the narrower
   range with the heatmap's finer columns for it);
4. opens, the same way, the page of a component designed to follow a label and scrolls its lazy Time course
   section into view: bytes transferred (``component_mb``).

Meanwhile the resident memory of every process of the app (the web process and the job processes it forks) is
sampled every 0.2 s; ``peak_rss_gb`` is the largest single process seen while processing and decoding.

Targets (the real-movie-studies issue): Timeline <= 1.5 MB and drawn within 3 s, a zoom within 0.5 s, the
component page <= 1 MB, processing peak memory <= 2 GB. The last line is
``timeline_mb=.. timeline_draw_s=.. zoom_s=.. component_mb=.. ingest_s=.. temporal_s=.. peak_rss_gb=..``.

Run by hand: ``python bench/study.py [--small] [--keep]`` (about 15-25 minutes at full size on two cores; the
scratch folder, about 0.5 GB, is removed at the end unless ``--keep``). ``--small`` runs the test suite's size.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.browse import free_port  # noqa: E402
from tests.realstudy import (  # noqa: E402
    FULL,
    SMALL,
    add_annotation_sets,
    create_collection,
    scroll_until,
    sign_in,
    upload_and_process,
    write_study,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EMAIL, PASSWORD = "bench-curator@example.org", "a long bench password"
MOVIE = "Forrest Gump (bench)"
READY = "document.body && document.body.dataset.ready === '1'"


class PeakRss:
    """The largest resident set of any process in the tree under ``pid``, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.root, self.interval, self.peak, self.on = psutil.Process(pid), interval, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.on:
                try:
                    procs = [self.root, *self.root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return
                for proc in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env.update(INCDB_DATA_DIR=str(data_dir), INCDB_DEMO="0", INCDB_PASSWORD=PASSWORD)
    return env


def _pipeline(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def _temporal_busy(data_dir: Path) -> tuple[bool, int]:
    """(whether a temporal job of the movie is queued or running, how many temporal jobs it has had)."""
    from sqlalchemy import func, select

    from store.db import session_scope
    from store.models import ACTIVE_JOB_STATUSES, Job, Movie

    with session_scope() as session:
        movie_id = session.scalar(select(Movie.id).where(Movie.title == MOVIE))
        jobs = select(func.count(Job.id)).where(Job.kind == "temporal", Job.movie_id == movie_id)
        active = session.scalar(jobs.where(Job.status.in_(ACTIVE_JOB_STATUSES)))
        return bool(active), session.scalar(jobs) or 0


def _failed_jobs() -> list[tuple]:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Job

    with session_scope() as session:
        return [tuple(r) for r in session.execute(select(Job.id, Job.kind, Job.error).where(Job.status == "failed"))]


def _slug_and_component(study) -> tuple[str, str, str]:
    """(movie slug, uuid of the component following the first designed link, its label)."""
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Component, Movie

    index, label = next(iter(sorted(study.links.items(), key=lambda kv: study.labels.index(kv[1]))))
    with session_scope() as session:
        slug = session.scalar(select(Movie.slug).where(Movie.title == MOVIE))
        uuid = session.scalar(select(Component.uuid).where(Component.volume_index == index))
    return slug, uuid, label


def _open_measured(browser, base: str, path: str) -> tuple:
    """A fresh browser context first opens the home page (which caches the site's scripts and styles, plotly.js
    included, as any visitor's browser has them after one page), then ``path``, measured: returns (context, page,
    counters of that second load, seconds to its data-ready marker). The counters hold ``bytes`` (every response's
    encoded size), ``data`` (callback and API responses) and ``cached_first`` (what the home page load moved,
    for the record)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, bypass_csp=True)  # CSP forbids eval
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    counters = {"bytes": 0, "data": 0, "cached_first": 0}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))

    def finished(event) -> None:
        counters["bytes"] += event["encodedDataLength"]
        url = urls.get(event["requestId"], "")
        if "_dash-update-component" in url or "/api/" in url:
            counters["data"] += event["encodedDataLength"]

    cdp.on("Network.loadingFinished", finished)
    page.goto(base + "/", wait_until="commit")
    page.wait_for_function(READY, timeout=300_000, polling=50)
    page.wait_for_load_state("networkidle", timeout=300_000)
    counters.update(cached_first=counters["bytes"], bytes=0, data=0)
    start = time.monotonic()
    page.goto(base + path, wait_until="commit")
    page.wait_for_function(READY, timeout=300_000, polling=50)
    ready = time.monotonic() - start
    page.wait_for_load_state("networkidle", timeout=300_000)
    return context, page, counters, ready


def _zoom(page, timeout_s: float = 60) -> tuple[float, list[float]]:
    """Drag over a tenth of the timeline's heatmap; returns the seconds from the release until the plot shows the
    narrower range with the heatmap's finer columns for it (polled every 20 ms from here), and that range.

    At full size the figure is taller than the window (70 rows and 12 tracks: about 1,600 px), and a mouse event
    outside the window reaches nothing: the heatmap is scrolled to the top of the window first and the drag runs
    across the middle of the part of it on screen. A drag that does not zoom is reported as such, not as columns
    that never came."""
    from dashboard.components.timeline import FINE  # the heatmap trace of the zoomed range's finer columns

    graph = "document.querySelector('#movie-timeline .js-plotly-plot')"
    span = page.evaluate(f"{graph}.layout.xaxis.range.map(Number)")
    area = page.locator("#movie-timeline .js-plotly-plot .nsewdrag").first
    area.evaluate("e => e.scrollIntoView({block: 'start'})")
    box = area.bounding_box()
    window = page.viewport_size or page.evaluate("({width: innerWidth, height: innerHeight})")
    top, bottom = max(box["y"], 0), min(box["y"] + box["height"], window["height"])
    if bottom - top < 20:
        raise RuntimeError(f"the timeline's heatmap is not on screen to drag ({box}, window {window})")
    y = (top + bottom) / 2
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=4)
    start = time.monotonic()
    page.mouse.up()
    narrower = f"(r => r[1] - r[0] < {(span[1] - span[0]) / 2} && r)({graph}.layout.xaxis.range.map(Number))"
    columns = f"""(() => {{
        const r = {graph}.layout.xaxis.range.map(Number), d = {graph}.data[{FINE}];
        return !!d && d.visible !== false && !!d.x && d.x.length > 0 && d.x[0] <= r[1] && d.x[d.x.length - 1] >= r[0];
    }})()"""
    zoomed = None
    while not (zoomed := zoomed or page.evaluate(narrower)) or not page.evaluate(columns):
        if time.monotonic() - start > timeout_s:
            if not zoomed:
                raise TimeoutError(f"the drag did not zoom the timeline (range still {span}) within {timeout_s:g} s")
            raise TimeoutError(f"the timeline zoomed to {zoomed} but got no finer columns within {timeout_s:g} s")
        page.wait_for_timeout(20)
    return time.monotonic() - start, [float(v) for v in zoomed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the test suite's size, for a quick check")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data dir and study)")
    parser.add_argument("--study", help="a folder holding a study written by tests/realstudy.py (else one is made)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    shape = SMALL if args.small else FULL
    scratch = Path(tempfile.mkdtemp(prefix="incdb-bench-study-"))
    data_dir = scratch / "data"
    env = _env(data_dir)
    app = monitor = None
    try:
        t = time.monotonic()
        study = write_study(Path(args.study) if args.study else scratch / "study", shape, reuse=bool(args.study))
        print(
            f"study: {study.timing.rows:,} rows, {shape.components} components, {len(study.labels)} labels, "
            f"{study.events:,} events, archive {study.archive.stat().st_size / 1e6:.0f} MB "
            f"(generated in {time.monotonic() - t:.0f} s)",
            flush=True,
        )
        _pipeline(env, "init")
        _pipeline(env, "user", "create", EMAIL, "--first-name", "Bench", "--last-name", "Curator")
        os.environ.update({k: v for k, v in env.items() if k.startswith("INCDB_")})  # this process reads the DB

        port = free_port()
        app = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if requests.get(base + "/api/stats", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        monitor = PeakRss(app.pid)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=base, bypass_csp=True)
            page = context.new_page()
            page.set_default_timeout(600_000)
            sign_in(page, EMAIL, PASSWORD)
            create_collection(page, study, "Bench study", MOVIE)
            monitor.on = True
            upload_s, ingest_s = upload_and_process(page, study)
            print(f"upload {upload_s:.1f} s, processing {ingest_s:.1f} s", flush=True)
            ingest_peak = monitor.peak

            slug, uuid, label = _slug_and_component(study)
            start = time.monotonic()
            for message in add_annotation_sets(page, slug, study):
                print("  " + message.replace("\n", " "), flush=True)
            while True:
                busy, n_jobs = _temporal_busy(data_dir)
                if not busy and n_jobs:
                    break
                time.sleep(0.5)
            temporal_s = time.monotonic() - start
            monitor.on = False
            print(f"temporal decoding of 3 sets: {temporal_s:.1f} s ({n_jobs} job(s))", flush=True)
            failed = _failed_jobs()
            if failed:
                print(f"FAILED JOBS: {failed}", flush=True)
            context.close()

            timeline, tpage, tcount, timeline_draw_s = _open_measured(browser, base, f"/movies/{slug}?tab=timeline")
            timeline_mb = tcount["bytes"] / 1e6
            print(
                f"timeline tab: {timeline_mb:.2f} MB ({tcount['data'] / 1e6:.2f} MB of callbacks and API) after the "
                f"home page's {tcount['cached_first'] / 1e6:.2f} MB, ready in {timeline_draw_s:.2f} s",
                flush=True,
            )
            zoom_s, zoomed = _zoom(tpage)
            print(f"zoomed to {zoomed[0]:.0f}-{zoomed[1]:.0f} s of the film in {zoom_s:.2f} s", flush=True)
            timeline.close()
            component, cpage, ccount, component_s = _open_measured(browser, base, f"/components/{uuid}")
            scroll_until(cpage, "#course-panel .js-plotly-plot")  # the lazy Time course section too
            cpage.wait_for_load_state("networkidle", timeout=300_000)
            component_mb = ccount["bytes"] / 1e6
            print(
                f"component page with its Time course: {component_mb:.2f} MB ({ccount['data'] / 1e6:.2f} MB of "
                "callbacks and API)",
                flush=True,
            )
            component.close()
            browser.close()
        print(f"component page (follows {label!r}): ready in {component_s:.1f} s", flush=True)
        print(
            f"peak RSS: processing {ingest_peak / 1e9:.2f} GB, processing and temporal decoding "
            f"{monitor.peak / 1e9:.2f} GB",
            flush=True,
        )
        print(
            f"timeline_mb={timeline_mb:.2f} timeline_draw_s={timeline_draw_s:.2f} zoom_s={zoom_s:.2f} "
            f"component_mb={component_mb:.2f} ingest_s={ingest_s:.1f} temporal_s={temporal_s:.1f} "
            f"peak_rss_gb={monitor.peak / 1e9:.2f}"
        )
    finally:
        if monitor:
            monitor.stop()
        if app:
            try:  # the job processes the app forked, then the app
                for child in psutil.Process(app.pid).children(recursive=True):
                    child.terminate()
            except psutil.NoSuchProcess:
                pass
            app.terminate()
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                app.kill()
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
