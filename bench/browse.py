"""Browse latency under load: the app under gunicorn (2 workers) on the demo data, 50 concurrent clients for 60 s
on the page callbacks and the JSON API, and on a no-op callback in the same run.

Prints p50/p95 per kind of request and the error count, then ``p95_ratio`` = p95 of the browse requests / p95 of
the no-op callback. Run by hand: ``python bench/browse.py [--clients 50] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = [
    "/",
    "/terms",
    "/terms/visual",
    "/movies",
    "/movies/forrest-gump",
    "/movies/forrest-gump/visual",
    "/terms?sort=components&page=2",
]
API = [
    "/api/stats",
    "/api/terms",
    "/api/movies",
    "/api/movies/forrest-gump",
    "/api/components?per_page=20",
    "/api/search?q=vi",
    "/api/terms/visual",
]


def page_payload(path: str) -> dict:
    pathname, _, search = path.partition("?")
    return {
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [
            {"id": "_pages_location", "property": "pathname", "value": pathname},
            {"id": "_pages_location", "property": "search", "value": f"?{search}" if search else ""},
        ],
        "changedPropIds": ["_pages_location.pathname"],
        "state": [],
    }


NOOP = {
    "output": "noop-out.data",
    "outputs": {"id": "noop-out", "property": "data"},
    "inputs": [{"id": "noop-in", "property": "data", "value": 1}],
    "changedPropIds": ["noop-in.data"],
    "state": [],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "pipeline", "demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}", "app:server"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(base + "/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        for _ in range(8):  # every worker registers the pages router on its first request
            requests.get(base + "/", timeout=10)
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        stop_at = time.time() + args.seconds

        def client(seed: int) -> None:
            rng = random.Random(seed)
            session = requests.Session()
            headers = {"Content-Type": "application/json"}
            while time.time() < stop_at:
                pick = rng.random()
                if pick < 0.4:
                    kind, call = (
                        "page",
                        lambda: session.post(
                            base + "/_dash-update-component",
                            timeout=30,
                            data=json.dumps(page_payload(rng.choice(PAGES))),
                            headers=headers,
                        ),
                    )
                elif pick < 0.8:
                    kind, call = "api", lambda: session.get(base + rng.choice(API), timeout=30)
                else:
                    kind, call = (
                        "noop",
                        lambda: session.post(
                            base + "/_dash-update-component", timeout=30, data=json.dumps(NOOP), headers=headers
                        ),
                    )
                t = time.perf_counter()
                try:
                    ok = call().status_code == 200
                except requests.RequestException:
                    ok = False
                dt = time.perf_counter() - t
                with lock:
                    latencies[kind].append(dt)
                    if not ok:
                        errors[kind] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    for kind in ("page", "api", "noop"):
        v = latencies[kind]
        print(
            f"{kind:<5} n={len(v):6d}  p50={percentile(v, 0.5) * 1000:8.1f} ms  "
            f"p95={percentile(v, 0.95) * 1000:8.1f} ms  errors={errors[kind]}"
        )
    browse = latencies["page"] + latencies["api"]
    print(
        f"p95_ratio={percentile(browse, 0.95) / percentile(latencies['noop'], 0.95):.2f} errors={sum(errors.values())}"
    )


if __name__ == "__main__":
    from bench import scratch_data_dir

    with scratch_data_dir("incdb-bench-browse-"):
        main()
