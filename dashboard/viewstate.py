"""The viewer's state in the page address: ``v_*`` query parameters, read by the layout and written by the browser.

``assets/viewer/incdb-viewer.js`` writes the parameters (with ``history.replaceState``, so the page is not
re-rendered) whenever the view changes, leaving out what equals the page's own defaults; a page layout hands its
query to :func:`restore` so a shared link opens with the same picture. The layout applies them rather than the
browser, so the layer store, the settings controls and the selects start out consistent (the controls write their
values back into the store, which would undo a change made by the browser after the first render).

Parameters (each optional; a value that does not parse is ignored):

- ``v_view``: view type (``multiplanar``, ``axial``, ..., ``mosaic``, ``render``);
- ``v_mosaic``: NiiVue's mosaic string, e.g. ``A -20 0 20 40``;
- ``v_xyz``: crosshair, MNI mm, ``x,y,z``;
- ``v_sel``: key of the layer whose settings are shown (and whose colorbar is drawn);
- ``v_atlas``: atlas of the region readout and the cluster table;
- ``v_<layer key>``: ``visible,threshold,threshold_negative,colormap,colormap_negative,opacity,frame``, e.g.
  ``v_component=1,3.2,2.5,hot,winter,0.8,0`` (visible 1/0; ``none`` hides negative values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "v_"
MOSAIC_PATTERN = re.compile(r"[ACSLRVHX0-9\s.;+-]{0,200}", re.IGNORECASE)
MAX_MM = 1000.0


def _first(query: Mapping[str, Any], name: str) -> str | None:
    value = query.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) and len(value) <= 400 else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and abs(value) <= 1e9 else None


def apply_layer(
    layer: dict[str, Any], text: str, colormaps: set[str], negative_colormaps: set[str], no_negative: str
) -> dict[str, Any]:
    """A layer dict with the settings of one ``v_<key>`` value applied (parts that do not parse are skipped)."""
    parts = (text.split(",") + [""] * 7)[:7]
    layer = dict(layer)
    if parts[0] in ("0", "1"):
        layer["visible"] = parts[0] == "1"
    if not layer.get("underlay"):
        threshold, negative = _number(parts[1]), _number(parts[2])
        if threshold is not None and threshold >= 0:
            layer["threshold"] = threshold
        if negative is not None:
            layer["threshold_negative"] = abs(negative)
        if parts[4] == no_negative:
            layer["colormap_negative"] = ""
        elif parts[4] in negative_colormaps:
            layer["colormap_negative"] = parts[4]
    if parts[3] in colormaps:
        layer["colormap"] = parts[3]
    opacity = _number(parts[5])
    if opacity is not None:
        layer["opacity"] = min(1.0, max(0.0, opacity))
    frame = _number(parts[6])
    if frame is not None and frame >= 0 and frame == int(frame):
        layer["frame"] = int(frame)
    return layer


def restore(
    defaults: dict[str, Any],
    query: Mapping[str, Any] | None,
    *,
    views: set[str],
    atlases: set[str],
    colormaps: set[str],
    negative_colormaps: set[str],
    no_negative: str,
) -> dict[str, Any]:
    """The viewer's starting state: ``defaults`` (``layers``, ``view``, ``selected``, ``atlas``, ``mosaic``) with
    the ``v_*`` parameters of ``query`` applied, plus ``goto`` (the crosshair in mm, or None)."""
    state = dict(defaults, goto=None)
    if not query:
        return state
    state["layers"] = [
        apply_layer(layer, text, colormaps, negative_colormaps, no_negative)
        if (text := _first(query, PREFIX + layer["key"])) is not None
        else layer
        for layer in defaults["layers"]
    ]
    view = _first(query, PREFIX + "view")
    if view in views:
        state["view"] = view
    mosaic = _first(query, PREFIX + "mosaic")
    if mosaic and MOSAIC_PATTERN.fullmatch(mosaic) and re.search(r"\d", mosaic):
        state["mosaic"] = mosaic
    selected = _first(query, PREFIX + "sel")
    if selected in {layer["key"] for layer in state["layers"]}:
        state["selected"] = selected
    atlas = _first(query, PREFIX + "atlas")
    if atlas in atlases:
        state["atlas"] = atlas
    xyz = [_number(v) for v in (_first(query, PREFIX + "xyz") or "").split(",")]
    if len(xyz) == 3 and all(v is not None and abs(v) <= MAX_MM for v in xyz):
        state["goto"] = xyz
    return state
