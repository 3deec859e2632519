"""Helpers for browser tests: Debian's Chromium through Playwright, a WSGI app on a free port, PNG pixels.

Not a conftest: import what you need, e.g. ``from tests.browser import launch_browser, serve_wsgi_in_thread``.
Chromium is the system package (``/usr/bin/chromium``); never ``playwright install``. WebGL runs on SwiftShader,
so do not pass ``--disable-gpu`` (it turns WebGL off).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"


def services_required() -> bool:
    """INCDB_REQUIRE_SERVICES=1 turns missing services (here: Chromium) from skips into failures."""
    return os.environ.get("INCDB_REQUIRE_SERVICES", "") == "1"


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing, or fail when services are required."""
    if CHROMIUM.exists():
        return
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if services_required():
        pytest.fail(message + " and INCDB_REQUIRE_SERVICES=1")
    pytest.skip(message)


def launch_browser(playwright, **kwargs):
    """Headless Chromium from the system package with WebGL on SwiftShader."""
    require_chromium()
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **kwargs)


@contextmanager
def browser_page(
    base_url: str,
    *,
    width: int = 1280,
    height: int = 1000,
    timeout_ms: int = 60_000,
    bypass_csp: bool = False,
    offline: bool = True,
) -> Iterator[Any]:
    """A Playwright page of a fresh Chromium on ``base_url``; fails the test when the page raised a script error.

    ``bypass_csp``: the app's CSP refuses Playwright's string predicates (eval), never anything the app does.
    ``offline``: requests to other hosts are aborted (the site must work without them).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(
            viewport={"width": width, "height": height}, base_url=base_url, bypass_csp=bypass_csp
        )
        if offline:
            context.route("https://**/*", lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
        browser.close()
        assert not errors, errors


def free_port() -> int:
    """A TCP port that was free a moment ago (prefer serve_wsgi_in_thread, which cannot race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_wsgi_in_thread(wsgi_app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve a WSGI app (Flask ``app.server`` of a Dash app) in a thread; yields the base URL, stops on exit."""
    from werkzeug.serving import make_server

    server = make_server(host, 0, wsgi_app, threaded=True)  # port 0: the OS picks a free port, no race
    thread = threading.Thread(target=server.serve_forever, name="wsgi-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@dataclass(frozen=True)
class Pixels:
    """Decoded 8-bit image: ``data`` holds ``channels`` bytes per pixel, rows top to bottom."""

    width: int
    height: int
    channels: int
    data: bytes

    def rgb(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * self.channels
        return self.data[i], self.data[i + 1], self.data[i + 2]

    def iter_rgb(self) -> Iterator[tuple[int, int, int]]:
        c, d = self.channels, self.data
        for i in range(0, len(d), c):
            yield d[i], d[i + 1], d[i + 2]

    def count(self, predicate) -> int:
        return sum(1 for rgb in self.iter_rgb() if predicate(*rgb))

    def differing_pixels(self, other: Pixels, tolerance: int = 8) -> int:
        """Pixels whose R, G or B differ by more than ``tolerance``."""
        if (self.width, self.height) != (other.width, other.height):
            raise ValueError("images differ in size")
        c1, c2, a, b = self.channels, other.channels, self.data, other.data
        stride1, stride2 = self.width * c1, other.width * c2
        total = 0
        for y in range(self.height):
            row1, row2 = a[y * stride1 : (y + 1) * stride1], b[y * stride2 : (y + 1) * stride2]
            if c1 == c2 and row1 == row2:  # most rows are unchanged; skip them at C speed
                continue
            total += sum(
                1
                for i, j in zip(range(0, stride1, c1), range(0, stride2, c2))
                if max(abs(row1[i] - row2[j]), abs(row1[i + 1] - row2[j + 1]), abs(row1[i + 2] - row2[j + 2]))
                > tolerance
            )
        return total


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prev: bytearray, channels: int) -> bytearray:
    """One scanline with its PNG filter undone."""
    stride = len(line)
    if kind == 1:
        for i in range(channels, stride):
            line[i] = (line[i] + line[i - channels]) & 0xFF
    elif kind == 2:
        line = bytearray((v + p) & 0xFF for v, p in zip(line, prev))
    elif kind == 3:
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up_left = prev[i - channels] if i >= channels else 0
            line[i] = (line[i] + _paeth(left, prev[i], up_left)) & 0xFF
    elif kind != 0:
        raise ValueError(f"bad PNG filter {kind}")
    return line


def decode_png(png: bytes) -> Pixels:
    """Decode a non-interlaced 8-bit RGB/RGBA/gray PNG (what Chromium screenshots are) with zlib only."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, color_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, color type {color_type}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, channels)
        out[y * stride : (y + 1) * stride] = line
        prev = line
    if channels < 3:  # gray (+alpha): widen so callers can always read RGB
        gray = out[::channels]
        out = bytearray(b for v in gray for b in (v, v, v))
        channels = 3
    return Pixels(width, height, channels, bytes(out))


def save_artifact(name: str, data: bytes) -> Path:
    """Write a file under test-artifacts/ (not committed) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(data)
    return path
