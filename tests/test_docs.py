"""The README as a front door, the documentation in ``docs/`` served at ``/docs/<name>``, and the About page
(issue 20, item 3).

The Markdown renderer (``web/docs.py``) is checked on the real files and on a hostile one: every text escaped, only
safe link targets kept, only known names served.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.services import Client

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The set-up section, word for word: CI's .ci/run calls the test command, and people copy these lines.
SETUP = """## Set up on a fresh Debian/Ubuntu machine (Python 3.11)

Run the app (embedded default: SQLite, diskcache background jobs, local files, the built-in reference set and
synthetic demo data, loaded on first start in about 35 s), then open http://127.0.0.1:8050:

    bash scripts/run.sh

Run all tests (installs Debian's `chromium` for the browser tests and the pinned Python packages into `.venv`;
uses the machine's PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379):

    bash scripts/test.sh

CI runs `.ci/run`, which is the same test command with `INCDB_REQUIRE_SERVICES=1`: a missing PostgreSQL, Redis,
Celery worker or Chromium then fails the run instead of skipping tests.
"""
HOSTILE = """# Guide <script>alert(1)</script>

<a id="route-1"></a>
<a id="x" onclick="alert(5)"></a>

A paragraph with <img src=x onerror=alert(2)> and a [link](javascript:alert(3)) and [another](data:text/html,x)
and [a doc](methods.md#decoding) and `<b>code</b>`.

| route | what |
|---|---|
| `GET /api/x?a=1\\|2` | <iframe src=//evil> |

- item <svg onload=alert(4)>
  1. nested **bold** and *em*

Then code:

    <script>indented code</script>
"""


def _node(layout, ident: str):
    """The component with this id in a Dash layout's JSON (None when there is none)."""
    if isinstance(layout, list):
        return next((found for item in layout if (found := _node(item, ident)) is not None), None)
    if not isinstance(layout, dict):
        return None
    props = layout.get("props", {})
    return layout if props.get("id") == ident else _node(props.get("children"), ident)


def test_readme_is_short_and_keeps_the_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert SETUP in text
    assert len(text.splitlines()) <= 170


def test_readme_links_every_docs_file_and_each_link_exists() -> None:
    text = README.read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)(?:#[\w-]*)?\)", text))
    assert linked, "the README links no documentation"
    missing = sorted(link for link in linked if not (ROOT / link).is_file())
    assert not missing, f"the README links files that do not exist: {missing}"
    unlinked = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
    assert not [p for p in unlinked if p not in linked], "every docs/*.md is in the README's Documentation list"
    images = re.findall(r"\]\((docs/images/[\w-]+\.png)\)", text)
    assert len(images) >= 2 and all((ROOT / image).is_file() for image in images)


def test_about_page_gives_the_citation_and_the_licences(web) -> None:
    from pipeline.anatomy.atlas import ATLASES

    text = Client(flask_app=web.server).page_layout("/about")
    assert '"id": "about"' in text and "How to cite" in text
    assert "Open Database License (ODbL 1.0)" in text and "built-in demo reference" in text
    assert "synthetic" in text and "CC0-1.0" in text
    for atlas in ATLASES.values():
        assert atlas.name in text and atlas.license in text
    footer = json.dumps(_node(Client(flask_app=web.server).get("/_dash-layout").json(), "footer"))
    for href in ("/about", "/docs/user-guide", "/docs/methods"):
        assert f'"href": "{href}"' in footer


def test_user_guide_renders_as_html_with_its_text_escaped(web) -> None:
    response = Client(flask_app=web.server).get("/docs/user-guide")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert '<h1 id="user-guide">User guide</h1>' in page
    assert "<title>User guide · INcDb</title>" in page
    # `/movies/<movie>/annotations` in the guide: shown as text, not as a tag
    assert "<code>/movies/&lt;movie&gt;/annotations</code>" in page and "<movie>" not in page
    assert 'href="/docs/methods#temporal-decoding"' in page  # links between documents become site addresses
    assert '<img src="/docs/images/timeline.png"' in page
    assert "<table>" in Client(flask_app=web.server).get("/docs/operations").text


def test_hostile_markdown_is_shown_as_text(web, tmp_path, monkeypatch) -> None:
    from web import docs

    (tmp_path / "user-guide.md").write_text(HOSTILE, encoding="utf-8")
    monkeypatch.setattr(docs, "DOCS_DIR", tmp_path)
    page = Client(flask_app=web.server).get("/docs/user-guide").text
    body = page.split("<main>", 1)[1]
    for raw in ("<script", "<img src=x", "<iframe", "<svg", "<b>", 'href="javascript', 'href="data', 'onclick="'):
        assert raw not in body, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;iframe src=//evil&gt;" in body
    assert '<a href="/docs/methods#decoding">a doc</a>' in body
    assert '<a id="route-1"></a>' in body  # the one HTML line kept: an anchor, rebuilt from its checked id
    assert "<code>GET /api/x?a=1|2</code>" in body  # an escaped pipe inside a table cell stays in its cell
    assert "<strong>bold</strong>" in body and "<em>em</em>" in body
    assert "<pre><code>&lt;script&gt;indented code&lt;/script&gt;</code></pre>" in body


@pytest.mark.parametrize(
    "path",
    [
        "/docs/nope",
        "/docs/README",
        "/docs/deploy.md",
        "/docs/.user-guide",
        "/docs/images/nope.png",
        "/docs/images/home.PNG",
        "/docs/images/methods.md",
    ],
)
def test_only_known_documents_are_served(web, path) -> None:
    client = Client(flask_app=web.server)
    assert client.get("/docs/methods").status_code == 200
    assert client.get("/docs/images/home.png").headers["Content-Type"] == "image/png"
    assert client.get(path).status_code == 404
