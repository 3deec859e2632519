"""Glass-brain thumbnails in the lists and tables that name maps (``pipeline.maps.thumbnails`` makes them).

Each helper takes a row as the browse queries return it and gives the ``<img>`` of its map's thumbnail, served by
the file routes (``web.files``) with the map's own visibility and caching. They are about 3 KB each and tables
are paged, so a table costs a few small requests (revalidated with ETags).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import html

from dashboard.components.common import Child

WIDTH, HEIGHT = 299, 109  # pixels of a thumbnail (pipeline.maps.thumbnails); shown at a third of that in tables
SHOWN_HEIGHT = 36


def thumbnail(src: str, alt: str, height: int = SHOWN_HEIGHT) -> html.Img:
    """A thumbnail image at ``height`` CSS pixels (the width follows the picture's proportions)."""
    return html.Img(
        src=src, alt=alt, title=alt, className="incdb-thumb", height=height, width=round(height * WIDTH / HEIGHT)
    )


def with_thumbnail(image: Child, content: Child) -> html.Span:
    """A table cell's content with the map's thumbnail before it, inline, so the cell's text stays the content's."""
    return html.Span([image, html.Span(content, className="incdb-thumb-text")], className="incdb-thumb-cell")


def component_thumbnail(c: dict[str, Any]) -> Child:
    return thumbnail(f"/files/components/{quote(c['uuid'])}.png", f"Glass brain of component #{c.get('volume', '')}")


def term_thumbnail(t: dict[str, Any]) -> Child:
    return thumbnail(f"/files/terms/{quote(t['slug'])}.png", f"Glass brain of the {t['name']} reference map")


def merged_thumbnail(movie_slug: str, term_slug: str, label: str, has_map: bool = True) -> Child:
    if not has_map:
        return html.Span(className="incdb-thumb-none", title="No merged map yet")
    return thumbnail(f"/files/movies/{quote(movie_slug)}/{quote(term_slug)}.png", f"Glass brain of {label}")


def suggestion_thumbnail(item: dict[str, str]) -> Child:
    """The thumbnail of a search suggestion that names a map (terms: their reference map), else None."""
    if item.get("kind") != "term" or not item.get("href", "").startswith("/terms/"):
        return None
    slug = item["href"][len("/terms/") :]
    return thumbnail(f"/files/terms/{quote(slug)}.png", f"Glass brain of {item.get('label', '')}", height=24)
