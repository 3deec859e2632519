"""Write ``docs/api.md`` from the API's OpenAPI document (``web.openapi``): ``python scripts/api_docs.py``.

The page is generated, never edited by hand: an overview of the routes, then one section per route with a table of
its parameters and one of its answers, then the objects (schemas) the answers are made of. ``--check`` writes
nothing and exits 1 when the page is not what the document gives now (``tests/test_openapi.py`` checks the same).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "api.md"
METHODS = ("get", "post", "put", "delete")


def _cell(text: Any) -> str:
    """Text for one cell of a Markdown table: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    """An HTML id of letters, digits and dashes (GitHub keeps those as they are)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def type_text(schema: dict[str, Any]) -> str:
    """A schema in a few words: ``integer (1 to 100)``, ``array of [Term](#term)``, ``string or null``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor('object-' + name)})"
    if "allOf" in schema:
        return " and ".join(type_text(part) for part in schema["allOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{str(schema['const']).lower() if isinstance(schema['const'], bool) else schema['const']}`"
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        if kind == "array" and "items" in schema:
            words.append(f"array of {type_text(schema['items'])}")
        elif kind == "array" and "prefixItems" in schema:
            words.append("[" + ", ".join(type_text(item) for item in schema["prefixItems"]) + "]")
        elif kind == "string" and schema.get("format") == "binary":
            words.append("bytes")
        else:
            words.append(kind)
    text = " or ".join(words)
    if "minimum" in schema or "maximum" in schema:
        low, high = schema.get("minimum"), schema.get("maximum")
        bounds = (
            f"{low:g} to {high:g}"
            if low is not None and high is not None
            else (f"{low:g} or more" if low is not None else f"up to {high:g}")
        )
        text += f" ({bounds})"
    return text


def _parameters(operation: dict[str, Any]) -> list[str]:
    params = operation.get("parameters") or []
    if not params:
        return ["No parameters.", ""]
    lines = ["| Parameter | In | Type | Required | Description |", "| --- | --- | --- | --- | --- |"]
    for p in params:
        schema = p.get("schema", {})
        default = f" Default: `{schema['default']}`." if "default" in schema else ""
        example = f" Example: `{p['example']}`." if "example" in p else ""
        lines.append(
            f"| `{p['name']}` | {p['in']} | {_cell(type_text(schema))} | {'yes' if p['required'] else 'no'} "
            f"| {_cell(p.get('description', '') + default + example)} |"
        )
    return [*lines, ""]


def _body(operation: dict[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    lines = ["| Request body | Type |", "| --- | --- |"]
    for media, content in body["content"].items():
        schema = content.get("schema", {})
        if schema.get("type") == "object":
            fields = ", ".join(f"`{name}` ({type_text(field)})" for name, field in schema["properties"].items())
            lines.append(f"| {media} | {_cell('fields ' + fields)} |")
        else:
            lines.append(f"| {media} | {_cell(type_text(schema))} |")
    return [*lines, ""]


def _responses(operation: dict[str, Any]) -> list[str]:
    lines = ["| Status | Body | Description |", "| --- | --- | --- |"]
    for status, answer in operation["responses"].items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        lines.append(f"| {status} | {_cell(type_text(schema))} | {_cell(answer.get('description', ''))} |")
    return [*lines, ""]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, spec[method])
        for path, spec in document["paths"].items()
        for method in METHODS
        if method in spec
    ]


def _schemas(document: dict[str, Any]) -> list[str]:
    lines = ["## Objects", ""]
    for name, schema in sorted(document["components"]["schemas"].items()):
        lines += [f'<a id="{_anchor("object-" + name)}"></a>', "", f"### {name}", ""]
        if schema.get("description"):
            lines += [schema["description"], ""]
        parts = schema.get("allOf", [schema])
        own = [part for part in parts if "properties" in part]
        refs = [type_text(part) for part in parts if "$ref" in part]
        if refs:
            lines += ["Every field of " + " and ".join(refs) + (", and:" if own else "."), ""]
        if not own:
            if "properties" not in schema and not refs:
                lines += [f"Type: {type_text(schema)}.", ""]
            continue
        lines += ["| Field | Type | Always sent |", "| --- | --- | --- |"]
        for part in own:
            required = set(part.get("required", []))
            for field, field_schema in part["properties"].items():
                text = type_text(field_schema)
                if field_schema.get("description"):
                    text += f": {field_schema['description']}"
                lines.append(f"| `{field}` | {_cell(text)} | {'yes' if field in required else 'no'} |")
        lines.append("")
    return lines


def render(document: dict[str, Any]) -> str:
    """The Markdown page of an OpenAPI document."""
    info = document["info"]
    lines = [
        f"# {info['title']} (version {info['version']})",
        "",
        "<!-- Generated by `python scripts/api_docs.py` from web/openapi.py: edit those, not this file. -->",
        "",
        info["description"],
        "",
        f"The OpenAPI {document['openapi']} document is served at `GET /api/openapi.json`.",
        "",
        "## Routes",
        "",
        "| Method | Path | Summary |",
        "| --- | --- | --- |",
    ]
    operations = _operations(document)
    for method, path, operation in operations:
        lines.append(f"| {method} | [`{path}`](#{_anchor(method + '-' + path)}) | {_cell(operation['summary'])} |")
    lines.append("")
    for method, path, operation in operations:
        lines += [
            f'<a id="{_anchor(method + "-" + path)}"></a>',
            "",
            f"### {method} `{path}`",
            "",
            operation["summary"] + ".",
            "",
        ]
        if operation.get("description"):
            lines += [operation["description"], ""]
        lines += _parameters(operation) + _body(operation) + _responses(operation)
    lines += _schemas(document)
    return "\n".join(lines).rstrip("\n") + "\n"


def current_text() -> str:
    """What ``docs/api.md`` should hold now."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from web.openapi import openapi_document

    return render(openapi_document())


def main(argv: list[str]) -> int:
    text = current_text()
    if "--check" in argv:
        if not DOCS.exists() or DOCS.read_text(encoding="utf-8") != text:
            print(f"{DOCS.relative_to(ROOT)} is out of date: run python scripts/api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text, encoding="utf-8")
    print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
