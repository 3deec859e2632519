"""Helpers for tests that run INcDb as separate processes (gunicorn, a Celery worker, ``python app.py``) and talk
to it the way a browser does: cookies, the CSRF header, Dash's ``/_dash-update-component`` protocol (including
background callbacks and their signed handles) and the streamed upload endpoint.

Every process starts in its own process group and is stopped by PID (SIGTERM to the group, then SIGKILL).
Not a conftest: import what you need.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("INCDB_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_TEST_DB = 9  # 9 and 10 are used by these tests only, and flushed before each use


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Service:
    """A started process with its log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name, self.log = name, log
        self._fh = open(log, "wb")  # noqa: SIM115 - open for the life of the process, closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=str(cwd), stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-4000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        else:  # its children may still run in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()


def service_env(
    data_dir: Path | str, database_url: str | None = None, broker_url: str | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env.update(
        INCDB_DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
        INCDB_DEMO="0",
        PYTHONUNBUFFERED="1",
        INCDB_SECRET_KEY="test-secret-key-shared-by-web-and-worker",
    )
    if database_url:
        env["INCDB_DATABASE_URL"] = database_url
    if broker_url:
        env["INCDB_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def _wait_http(service: Service, url: str, timeout: float) -> None:
    import requests

    def up():
        service.check_alive()
        try:
            return requests.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    wait_until(up, timeout, f"{service.name} at {url}", interval=0.3)


def start_gunicorn(env: dict[str, str], log: Path, workers: int = 2, cwd: Path = ROOT, timeout: float = 90) -> Service:
    port = free_port()
    service = Service(
        "gunicorn",
        [
            str(BIN / "gunicorn"),
            "app:server",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--threads",
            "4",
            "--timeout",
            "120",
            "--chdir",
            str(ROOT),
        ],
        env,
        cwd,
        log,
    )
    service.url = f"http://127.0.0.1:{port}"
    _wait_http(service, service.url + "/api/stats", timeout)
    return service


def start_embedded(env: dict[str, str], log: Path, cwd: Path = ROOT, timeout: float = 90) -> Service:
    """``python app.py``: the embedded default (SQLite, diskcache, the werkzeug server)."""
    port = free_port()
    service = Service("python app.py", [sys.executable, str(ROOT / "app.py")], {**env, "PORT": str(port)}, cwd, log)
    service.url = f"http://127.0.0.1:{port}"
    _wait_http(service, service.url + "/api/stats", timeout)
    return service


def start_celery(env: dict[str, str], log: Path, cwd: Path = ROOT, timeout: float = 90) -> Service:
    service = Service(
        "celery worker",
        [
            str(BIN / "celery"),
            "-A",
            "app:celery_app",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        cwd,
        log,
    )

    def ready():
        service.check_alive()
        return " ready." in service.text()

    wait_until(ready, timeout, "the Celery worker to be ready", interval=0.3)
    return service


def worker_children(service: Service) -> list[int]:
    """PIDs of the prefork pool's child processes."""
    import psutil

    return [c.pid for c in psutil.Process(service.pid).children(recursive=True)]


def flush_redis_db(db: int = REDIS_TEST_DB) -> str:
    import redis

    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def redis_available() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_TEST_DB}", socket_connect_timeout=1)
        ok = client.ping()
        client.close()
        return bool(ok)
    except Exception:  # noqa: BLE001
        return False


@contextmanager
def running(*services: Service) -> Iterator[None]:
    try:
        yield
    finally:
        for service in reversed(services):
            service.stop()


# --- a browser-like client ------------------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status_code, self.content, self.headers = status, body, headers

    def json(self) -> Any:
        return json.loads(self.content or b"null")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Client:
    """The same API over a real server (requests) or Flask's test client."""

    def __init__(self, base_url: str | None = None, flask_app=None):
        if base_url:
            import requests

            self._session, self.base = requests.Session(), base_url.rstrip("/")
        else:
            self._flask, self.base = flask_app.test_client(), ""
            self._session = None
        self.end_id: str | None = None
        self._deps: list[dict] | None = None

    # cookies
    def cookie(self, name: str) -> str | None:
        if self._session is not None:
            return self._session.cookies.get(name)
        found = self._flask.get_cookie(name)
        return found.value if found else None

    def csrf_headers(self) -> dict[str, str]:
        token = self.cookie("_csrf_token")
        return {"X-CSRFToken": token} if token else {}

    def get(self, path: str, **kwargs) -> Response:
        if self._session is not None:
            r = self._session.get(self.base + path, timeout=60, **kwargs)
            return Response(r.status_code, r.content, r.headers)
        r = self._flask.get(path, **kwargs)
        return Response(r.status_code, r.data, r.headers)

    def post(
        self, path: str, data: bytes | Any = None, json_body: Any = None, headers: dict | None = None, csrf: bool = True
    ) -> Response:
        headers = dict(headers or {})
        if csrf:
            headers.update(self.csrf_headers())
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self._session is not None:
            r = self._session.post(self.base + path, data=data, headers=headers, timeout=300)
            return Response(r.status_code, r.content, r.headers)
        r = self._flask.post(path, data=data, headers=headers)
        return Response(r.status_code, r.data, r.headers)

    def upload(self, slug: str, path: Path, name: str | None = None, **kwargs) -> Response:
        name = name or path.name
        with open(path, "rb") as fh:
            body = fh.read()
        return self.post(
            f"/upload/{slug}?name={name}", data=body, headers={"Content-Type": "application/octet-stream"}, **kwargs
        )

    # Dash
    def open_page(self, path: str = "/") -> None:
        """Load a page as a browser would: the HTML (for this page load's signed end_id) and the callback graph."""
        html = self.get(path).text
        match = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', html, re.DOTALL)
        self.end_id = json.loads(match.group(1)).get("end_id") if match else None
        if self._deps is None:
            self._deps = self.get("/_dash-dependencies").json()

    def _dep(self, output: str, changed: list[str] | None = None) -> dict:
        """The callback writing ``output`` ("@hash" suffixes of duplicate outputs may be left out); when several
        match, the one with an input among ``changed``."""
        found = [
            dep
            for dep in self._deps or []
            if dep["output"] == output or re.sub(r"@[0-9a-f]+", "", dep["output"]) == output
        ]
        if not found:
            raise KeyError(f"no callback with output {output!r}")
        for dep in found:
            ids = {self._input_key(i) for i in dep["inputs"]}
            if any(self._changed_key(c) in ids for c in changed or []):
                return dep
        return found[0]

    @staticmethod
    def _input_key(item: dict) -> str:
        ident = item["id"]
        if isinstance(ident, str) and ident.startswith("{"):
            return "type:" + json.loads(ident)["type"] + "." + item["property"]
        return f"{ident}.{item['property']}"

    @staticmethod
    def _changed_key(prop_id: str) -> str:
        ident, prop = prop_id.rsplit(".", 1)
        if ident.startswith("{"):
            return "type:" + json.loads(ident)["type"] + "." + prop
        return prop_id

    @staticmethod
    def pattern_prop(ident: dict, prop: str = "n_clicks") -> str:
        """The changedPropIds entry of a pattern-matching component, as the renderer writes it."""
        return json.dumps(ident, sort_keys=True, separators=(",", ":")) + "." + prop

    @staticmethod
    def _outputs(spec: str) -> list[dict] | dict:
        def one(text: str) -> dict:
            ident, prop = text.rsplit(".", 1)
            return {"id": json.loads(ident) if ident.startswith("{") else ident, "property": prop}

        if spec.startswith(".."):
            return [one(part) for part in spec[2:-2].split("...")]
        return one(spec)

    def _body(
        self,
        output: str,
        values: dict[str, Any],
        changed: list[str],
        patterns: dict[str, list[tuple[dict, Any]]] | None = None,
    ) -> dict:
        """``values``: "id.prop" -> value; ``patterns``: pattern type -> [(concrete id, value), ...] for
        pattern-matching (ALL) inputs and states."""
        dep = self._dep(output, changed)

        def fill(items: list[dict]) -> list:
            out: list = []
            for i in items:
                ident = i["id"]
                if isinstance(ident, str) and ident.startswith("{"):
                    entries = (patterns or {}).get(json.loads(ident)["type"], [])
                    out.append([{"id": e, "property": i["property"], "value": v} for e, v in entries])
                else:
                    value = values.get(f"{ident}.{i['property']}")
                    out.append({"id": ident, "property": i["property"], "value": value})
            return out

        return {
            "output": dep["output"],
            "outputs": self._outputs(dep["output"]),
            "inputs": fill(dep["inputs"]),
            "state": fill(dep.get("state", [])),
            "changedPropIds": changed,
        }

    def _url(self, **args: str) -> str:
        params = {"endId": self.end_id} if self.end_id else {}
        params.update(args)
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return "/_dash-update-component" + (f"?{query}" if query else "")

    def callback(
        self,
        output: str,
        values: dict[str, Any],
        changed: list[str] | None = None,
        patterns: dict[str, list[tuple[dict, Any]]] | None = None,
    ) -> dict | None:
        """Run a (normal) callback; returns {"id": {"prop": value}} or None when it prevented the update."""
        body = self._body(output, values, changed or [], patterns)
        r = self.post(self._url(), json_body=body)
        if r.status_code == 204:
            return None
        if r.status_code != 200:
            raise AssertionError(f"callback {output} answered {r.status_code}: {r.text[:2000]}")
        return r.json().get("response")

    def background(
        self,
        output: str,
        values: dict[str, Any],
        changed: list[str],
        timeout: float = 180,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict | None:
        """Run a background callback the way the renderer does: start it, then poll with the signed handles."""
        body = self._body(output, values, changed)
        first = self.post(self._url(), json_body=body)
        if first.status_code == 204:
            return None
        assert first.status_code == 200, first.text[:2000]
        handles = first.json()
        assert "cacheKey" in handles and "job" in handles, handles
        polled = json.loads(json.dumps(body))
        for item in polled["inputs"] + polled["state"]:
            item["value"] = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.post(self._url(cacheKey=handles["cacheKey"], job=handles["job"]), json_body=polled)
            if r.status_code == 204:
                return None
            assert r.status_code == 200, r.text[:2000]
            data = r.json()
            if data.get("progress") and on_progress:
                on_progress(data["progress"])
            if "response" in data:
                return data["response"]
            time.sleep(0.3)
        raise TimeoutError(f"background callback {output} did not finish in {timeout} s")

    def page_layout(self, pathname: str, search: str = "") -> str:
        """The rendered page content (JSON text of the layout) from Dash pages' own callback."""
        self.open_page(pathname + search)
        dep = next(d for d in self._deps if "_pages_content.children" in d["output"])
        values = {"_pages_location.pathname": pathname, "_pages_location.search": search}
        response = self.callback(dep["output"], values, ["_pages_location.pathname"])
        return json.dumps(response)

    # the curator's steps
    def sign_in(self, email: str, password: str) -> dict | None:
        self.open_page("/account/sign-in")
        return self.callback(
            "..signin-message.children...signin-go.href..",
            {
                "signin-email.value": email,
                "signin-password.value": password,
                "signin-next.data": "/contribute",
                "signin-form.n_submit": 1,
            },
            ["signin-form.n_submit"],
        )

    def create_collection(self, name: str, movie: str, visibility: str = "public", **fields) -> str:
        self.open_page("/contribute/new")
        values = {
            "new-form.n_submit": 1,
            "new-name.value": name,
            "new-movie.value": movie,
            "new-license.value": "CC0-1.0",
            "new-visibility.value": visibility,
        }
        values.update({f"new-{k.replace('_', '-')}.value": v for k, v in fields.items()})
        out = self.callback("..new-message.children...new-go.href..", values, ["new-form.n_submit"])
        href = out["new-go"]["href"]
        return href.rsplit("/", 1)[-1]

    def confirm_license(self, collection_id: int) -> dict | None:
        return self.callback(
            "..coll-license.children...coll-upload-wrap.className..",
            {"coll-license-confirm.n_clicks": 1, "coll-id.data": collection_id, "coll-license-check.value": True},
            ["coll-license-confirm.n_clicks"],
        )

    def start_processing(self, collection_id: int, nonce: str) -> dict:
        out = self.callback(
            "..proc-request.data...coll-start-message.children..",
            {"coll-process.n_clicks": 1, "coll-id.data": collection_id, "proc-nonce.data": nonce},
            ["coll-process.n_clicks"],
        )
        assert out and "proc-request" in out, out
        return out["proc-request"]["data"]

    def run_processing(self, request: dict, nonce: str, **kwargs) -> dict | None:
        return self.background(
            "proc-result.children",
            {"proc-request.data": request, "proc-nonce.data": nonce},
            ["proc-request.data"],
            **kwargs,
        )


# --- test data ------------------------------------------------------------------------------------------------


def term_maps(names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Term maps of the active reference set of the current environment (fast: read, not generated)."""
    from sqlalchemy import select

    from pipeline.decoding.reference import require_active_reference
    from pipeline.maps.files import load_map
    from store.db import session_scope
    from store.models import Term

    with session_scope() as session:
        ref = require_active_reference(session)
        terms = session.execute(
            select(Term.name, Term.storage_key).where(Term.reference_set_id == ref.id).order_by(Term.column)
        ).all()
    return {name: load_map(key) for name, key in terms if names is None or name in names}


def component_maps(n: int, seed: int = 0) -> np.ndarray:
    """(n, 91, 109, 91) ICA-like maps: a term's network, a weaker second one and noise, inside the brain."""
    from pipeline.maps.grid import brain_mask

    maps = list(term_maps().values())
    rng = np.random.default_rng(seed)
    mask = brain_mask()
    out = np.empty((n,) + mask.shape, dtype=np.float32)
    for i in range(n):
        data = maps[i % len(maps)] * rng.uniform(0.8, 1.2) + maps[(i * 7 + 3) % len(maps)] * 0.3
        data = data + rng.standard_normal(mask.shape).astype(np.float32) * 0.4
        out[i] = data * mask
    return out


def write_nifti(path: Path, maps: np.ndarray, voxel_mm: int = 2) -> Path:
    """A 3D (one map) or 4D file; at 3 mm the maps are resampled so that ingest has real work to do."""
    import nibabel as nib

    from pipeline.maps.grid import GRID_AFFINE

    data = np.moveaxis(maps, 0, -1) if maps.ndim == 4 else maps
    affine = GRID_AFFINE
    if voxel_mm == 3:
        from scipy.ndimage import zoom

        affine = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])
        factors = (2 / 3, 2 / 3, 2 / 3) + ((1,) if data.ndim == 4 else ())
        data = zoom(data, factors, order=1)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def zip_of(path: Path, members: dict[str, Path]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for arcname, src in members.items():
            zf.write(src, arcname)
    return path


# --- the deployment's nginx site, on this machine ---------------------------------------------------------------
NGINX_SITE = ROOT / "deploy" / "nginx-incdb.conf"


def nginx_binary() -> str | None:
    """Debian's nginx, where installed (``nginx`` on PATH or /usr/sbin/nginx)."""
    import shutil

    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def nginx_site_config(tmp_path: Path, upstream: int | None = None) -> tuple[Path, int | None]:
    """``deploy/nginx-incdb.conf`` made runnable in ``tmp_path``: a throw-away certificate, temp paths inside
    ``tmp_path``; with ``upstream``, also on free 127.0.0.1 ports (no IPv6), proxying to that port, in the
    foreground. Returns (nginx.conf, the HTTPS port or None)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=incdb.example.org"]
        + ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )
    site = NGINX_SITE.read_text()
    site = site.replace("/etc/letsencrypt/live/incdb.example.org/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/incdb.example.org/privkey.pem", str(tmp_path / "key.pem"))
    https_port = None
    head = ""
    if upstream is not None:
        ports = {"80": free_port(), "443": free_port()}
        https_port = ports["443"]
        site = site.replace("server 127.0.0.1:8050;", f"server 127.0.0.1:{upstream};")
        site = re.sub(r"^\s*listen\s+\[::\]:\d+[^;]*;\n", "", site, flags=re.M)
        site = re.sub(r"listen\s+(80|443)\b", lambda m: f"listen 127.0.0.1:{ports[m.group(1)]}", site)
        head = "daemon off;\nmaster_process off;\n"
    (tmp_path / "site.conf").write_text(site)
    temp_paths = "".join(
        f"  {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"{head}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n{temp_paths}  include {tmp_path}/site.conf;\n}}\n"
    )
    return config, https_port
