"""The brain viewer of a page, with the layers each kind of page shows.

Every layer displays the 8-bit copy (``?display=1``) and downloads the full-precision file. Starting thresholds
are fixed per kind of map rather than computed from the data, because nothing on a page path may read an image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dash import html

from dashboard.viewer import LayerSpec, viewer
from pipeline.anatomy.clusters import DEFAULT_THRESHOLDS

VIEWER_ID = "viewer"
VIEWER_HEIGHT = 440
# ICA components are z-scored (MELODIC): |z| > 2.5 keeps the networks and drops most noise.
COMPONENT_THRESHOLD = DEFAULT_THRESHOLDS["component"]
# Built-in and Neurosynth term maps peak around z = 6; 1.0 shows each region without its smoothing halo.
TERM_THRESHOLD = DEFAULT_THRESHOLDS["term"]
# Merged maps are means over components (zeros included), so their values are lower than a component's.
MERGED_THRESHOLD = DEFAULT_THRESHOLDS["merged"]


def component_url(uuid: str) -> str:
    return f"/files/components/{quote(uuid)}.nii.gz"


def term_url(term_slug: str) -> str:
    return f"/files/terms/{quote(term_slug)}.nii.gz"


def term_mean_url(term_slug: str) -> str:
    return f"/files/terms/{quote(term_slug)}/mean.nii.gz"


def merged_url(movie_slug: str, term_slug: str) -> str:
    return f"/files/movies/{quote(movie_slug)}/{quote(term_slug)}.nii.gz"


def layer(
    url: str,
    name: str,
    key: str,
    *,
    threshold: float,
    colormap: str = "warm",
    colormap_negative: str = "winter",
    visible: bool = True,
) -> LayerSpec:
    return LayerSpec(
        url=f"{url}?display=1",
        download_url=url,
        name=name,
        key=key,
        threshold=threshold,
        colormap=colormap,
        colormap_negative=colormap_negative,
        visible=visible,
    )


def component_layers(uuid: str, name: str) -> list[LayerSpec]:
    return [layer(component_url(uuid), name, "component", threshold=COMPONENT_THRESHOLD)]


def term_layers(term_slug: str, term_name: str, has_mean: bool, n_mean: int) -> list[LayerSpec]:
    """The reference map below; the mean over movies on top (shown first, as it is this site's own data)."""
    layers = [
        layer(
            term_url(term_slug),
            f"{term_name} (reference map)",
            "reference",
            threshold=TERM_THRESHOLD,
            colormap="green",
            colormap_negative="",
        )
    ]
    if has_mean:
        layers.append(
            layer(
                term_mean_url(term_slug),
                f"{term_name}: mean of {n_mean} components",
                "mean",
                threshold=MERGED_THRESHOLD,
            )
        )
    return layers


def merged_layers(
    movie_slug: str, term_slug: str, term_name: str, movie_title: str, has_merged: bool
) -> list[LayerSpec]:
    """The merged map, with the term's reference map as a hidden layer to compare against."""
    reference = layer(
        term_url(term_slug),
        f"{term_name} (reference map)",
        "reference",
        threshold=TERM_THRESHOLD,
        colormap="green",
        colormap_negative="",
        visible=not has_merged,
    )
    if not has_merged:
        return [reference]
    return [
        reference,
        layer(
            merged_url(movie_slug, term_slug),
            f"{term_name} in {movie_title} (merged)",
            "merged",
            threshold=MERGED_THRESHOLD,
        ),
    ]


def map_viewer(
    layers: list[LayerSpec], caption: str | None = None, query: Mapping[str, Any] | None = None
) -> html.Section:
    """The page's one viewer, starting from the view state in the page's ``query`` (``dashboard.viewstate``); a
    server callback must never re-render this subtree (the canvas would go black)."""
    return html.Section(
        [
            viewer(layers, id=VIEWER_ID, height=VIEWER_HEIGHT, url_state=query),
            html.P(caption, className="incdb-viewer-caption") if caption else None,
        ],
        className="incdb-viewer-section",
    )
