"""The documentation in ``docs/`` as web pages: ``GET /docs/<name>`` renders ``docs/<name>.md`` as HTML.

Only the files named in :data:`DOCS` are served; any other name is a 404, so a path never reaches the disk
unchecked. The Markdown is converted by a small renderer written for the subset these files use (python-markdown is
not a requirement): ATX headings (with GitHub's anchors), paragraphs, bullet and numbered lists (nested by
indentation), pipe tables, fenced and indented code, and inline code, links, images, bold and italics. Every piece
of text is HTML-escaped before it is placed in a tag, and a link keeps its target only when it is ``http(s)``,
``mailto``, an anchor, or another of these documents (``methods.md#decoding`` becomes ``/docs/methods#decoding``);
a link to anything else (a file of the repository) is shown as its text. Images are shown only from
``docs/images/`` (``GET /docs/images/<name>.png``). Raw HTML in a file is therefore shown as text, never run; the
only exceptions are a line that is exactly an anchor, ``<a id="name"></a>``, rebuilt from its checked id, and a
line that is an HTML comment, left out as GitHub leaves it out.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import flask

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
IMAGES_DIR = DOCS_DIR / "images"
# name -> title of the navigation; the order is the navigation's.
DOCS: dict[str, str] = {
    "user-guide": "User guide",
    "curating": "Curating",
    "methods": "Methods",
    "api": "API",
    "api-notes": "API notes",
    "operations": "Operations",
    "deploy": "Deploying",
    "performance": "Performance",
    "reliability": "Reliability",
    "architecture": "Architecture",
}
IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.png")
CACHE = "public, max-age=300"

blueprint = flask.Blueprint("docs", __name__)

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) +(.*?) *#* *$")
_ITEM = re.compile(r"^( *)([-*+]|\d{1,9}[.)]) +(.*)$")
_TABLE_RULE = re.compile(r"^ *\|? *:?-{3,}:? *(\| *:?-{3,}:? *)*\|? *$")
_INLINE = re.compile(
    r"(?P<ticks>`+)(?P<code>.+?)(?P=ticks)"
    r"|(?P<image>!?)\[(?P<text>[^\]]*)\]\((?P<url>[^()\s]*)\)"
)
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_DOC_LINK = re.compile(r"(?:\./)?(?P<name>[a-z0-9-]+)\.md(?P<anchor>#[\w-]*)?")
_IMAGE_LINK = re.compile(r"(?:\./)?images/(?P<name>[a-z0-9][a-z0-9-]*\.png)")
# The two pieces of HTML the files use, recognised whole and rebuilt (never copied): an anchor line, which
# docs/api.md puts before each route, and a comment line, which GitHub does not show either.
_ANCHOR_LINE = re.compile(r' *<a id="([A-Za-z0-9_-]{1,100})"></a> *')
_COMMENT_LINE = re.compile(r" *<!--.*--> *")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", title).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _href(url: str) -> str | None:
    """The address a link may point at in a rendered page, or None (shown as text)."""
    if re.match(r"(https?://|mailto:)[^\s\"'<>]+$", url) or re.match(r"#[\w-]*$", url):
        return url
    doc = _DOC_LINK.fullmatch(url)
    if doc and doc["name"] in DOCS:
        return f"/docs/{doc['name']}{doc['anchor'] or ''}"
    return None


def _emphasis(escaped: str) -> str:
    return _EMPHASIS.sub(r"<em>\1</em>", _STRONG.sub(r"<strong>\1</strong>", escaped))


def inline(text: str) -> str:
    """One line of Markdown text as escaped HTML with code, links, images, bold and italics.

    Code spans, links and images are rendered first and held as placeholders (``\\x00n\\x00``; NUL cannot come
    from the text, it is removed), so that bold and italics may span them and never reach inside them."""
    text = text.replace("\x00", "")
    held: list[str] = []

    def hold(piece: str) -> str:
        held.append(piece)
        return f"\x00{len(held) - 1}\x00"

    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_e(text[pos : m.start()]))
        pos = m.end()
        if m["ticks"]:
            out.append(hold(f"<code>{_e(m['code'].strip())}</code>"))
        elif m["image"]:
            image = _IMAGE_LINK.fullmatch(m["url"])
            out.append(
                hold(f'<img src="/docs/images/{image["name"]}" alt="{_e(m["text"])}">' if image else _e(m["text"]))
            )
        else:
            href, label = _href(m["url"]), inline(m["text"])
            out.append(hold(f'<a href="{_e(href)}">{label}</a>' if href else label))
    out.append(_e(text[pos:]))
    return re.sub("\x00([0-9]+)\x00", lambda m: held[int(m[1])], _emphasis("".join(out)))


def _cells(row: str) -> list[str]:
    """A table row's cells: split at pipes that are not escaped (``\\|``) and not inside inline code."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    cells, current, in_code = [], [], False
    i = 0
    while i < len(row):
        char = row[i]
        if char == "\\" and row[i + 1 : i + 2] == "|":
            current.append("|")
            i += 2
            continue
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    cells.append("".join(current).strip())
    return cells


def _table(lines: list[str]) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(row)) + "</tr>" for row in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(lines: list[str]) -> str:
    """A list from its lines: items at the first item's indentation, deeper items as a nested list, other lines
    continuing the item (or, after a nested list and indented less than it, following that list)."""
    first = _ITEM.match(lines[0])
    indent, ordered = len(first[1]), first[2][0].isdigit()
    items: list[tuple[list[str], list[str], list[str]]] = []
    for line in lines:
        m = _ITEM.match(line)
        depth = len(line) - len(line.lstrip(" "))
        if m and depth <= indent:
            items.append(([m[3]], [], []))
            continue
        text, children, tail = items[-1]
        child_indent = len(children[0]) - len(children[0].lstrip(" ")) if children else None
        if m or (children and depth >= child_indent and not tail):
            children.append(line)
        elif children:
            tail.append(line.strip())
        else:
            text.append(line.strip())
    start = int(first[2][:-1]) if ordered else 1
    tag = "ol" if ordered else "ul"
    opening = f'<{tag} start="{start}">' if start != 1 else f"<{tag}>"
    body = "".join(
        "<li>"
        + inline(" ".join(text))
        + (_list(children) if children else "")
        + (inline(" ".join(tail)) if tail else "")
        + "</li>"
        for text, children, tail in items
    )
    return f"{opening}{body}</{tag}>"


def _take_list(lines: list[str], i: int) -> int:
    """The index after the list starting at ``lines[i]``: it runs on over indented lines, item lines and
    single blank lines followed by either."""
    n = len(lines)
    while i < n:
        line = lines[i]
        if line.strip():
            if i > 0 and not lines[i - 1].strip() and not (line.startswith(" ") or _ITEM.match(line)):
                return i
            if _HEADING.match(line) or _FENCE.match(line):
                return i
            i += 1
        elif i + 1 < n and (lines[i + 1].startswith(" ") or _ITEM.match(lines[i + 1])):
            i += 1
        else:
            return i
    return i


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(
        _HEADING.match(line)
        or _FENCE.match(line)
        or _ITEM.match(line)
        or line.startswith("    ")
        or (line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]))
    )


def render(markdown: str) -> str:
    """Markdown (the subset in the module docstring) as HTML, every text escaped."""
    lines = markdown.replace("\t", "    ").splitlines()
    out: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip() or _COMMENT_LINE.fullmatch(line):
            i += 1
        elif anchor_line := _ANCHOR_LINE.fullmatch(line):
            out.append(f'<a id="{anchor_line[1]}"></a>')
            i += 1
        elif _FENCE.match(line):
            fence, j = _FENCE.match(line)[1], i + 1
            while j < n and not lines[j].lstrip().startswith(fence):
                j += 1
            out.append("<pre><code>" + _e("\n".join(lines[i + 1 : j])) + "</code></pre>")
            i = j + 1
        elif heading := _HEADING.match(line):
            level, title = len(heading[1]), heading[2]
            out.append(f'<h{level} id="{_e(anchor(title))}">{inline(title)}</h{level}>')
            i += 1
        elif line.startswith("    ") and not _ITEM.match(line):
            j = i
            while j < n and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            out.append("<pre><code>" + _e("\n".join(x[4:] for x in lines[i:j])) + "</code></pre>")
            i = j
        elif line.lstrip().startswith("|") and i + 1 < n and _TABLE_RULE.match(lines[i + 1]):
            j = i + 2
            while j < n and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif _ITEM.match(line):
            j = _take_list(lines, i)
            out.append(_list([x for x in lines[i:j] if x.strip()]))
            i = j
        else:
            j = i + 1
            while j < n and lines[j].strip() and not _starts_block(lines, j):
                j += 1
            out.append("<p>" + inline(" ".join(x.strip() for x in lines[i:j])) + "</p>")
            i = j
    return "\n".join(out)


STYLE = """
body{font-family:Lato,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#212529;margin:0;
line-height:1.55;background:#fff}
header{background:#2c3e50;padding:.8rem 1.5rem}header a{color:#fff;text-decoration:none;margin-right:1.1rem}
header a.brand{font-weight:700;margin-right:2rem}header a.current{text-decoration:underline}
main{max-width:60rem;margin:0 auto;padding:1.5rem}a{color:#18bc9c}
code{background:#f4f6f7;padding:0 .2em;border-radius:3px;font-size:.9em}
pre{background:#f4f6f7;padding:.8rem;overflow-x:auto}pre code{padding:0;background:none}
table{border-collapse:collapse;margin:1rem 0;font-size:.92em}
th,td{border:1px solid #dee2e6;padding:.35rem .55rem;vertical-align:top;text-align:left}
th{background:#f4f6f7}img{max-width:100%;border:1px solid #dee2e6}
"""


def page(name: str, body: str) -> str:
    """A whole HTML page: the navigation between the documents, then the rendered one."""
    title = re.search(r"<h1[^>]*>(.*?)</h1>", body)
    plain = re.sub(r"<[^>]+>", "", title[1]) if title else DOCS[name]
    links = "".join(
        f'<a href="/docs/{key}"{" class=current" if key == name else ""}>{_e(label)}</a>'
        for key, label in DOCS.items()
        if (DOCS_DIR / f"{key}.md").is_file()
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{plain} · INcDb</title><style>{STYLE}</style></head><body>"
        f'<header><a class="brand" href="/">INcDb</a>{links}<a href="/about">About</a></header>'
        f"<main>{body}</main></body></html>"
    )


@blueprint.get("/docs/<name>")
def doc(name: str):
    path = DOCS_DIR / f"{name}.md"
    if name not in DOCS or not path.is_file():
        flask.abort(404)
    response = flask.make_response(page(name, render(path.read_text(encoding="utf-8"))))
    response.headers["Cache-Control"] = CACHE
    return response


@blueprint.get("/docs/images/<name>")
def image(name: str):
    path = IMAGES_DIR / name
    if not IMAGE_NAME.fullmatch(name) or not path.is_file():
        flask.abort(404)
    return flask.send_file(path, mimetype="image/png", max_age=3600, conditional=True)
