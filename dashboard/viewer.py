"""The brain map viewer: Dash layout and clientside wiring around NiiVue.

The drawing and all interaction live in ``assets/viewer/incdb-viewer.js`` (namespace ``incdbViewer``). This
module builds the layout and registers the clientside callbacks once, with pattern-matching ids keyed by the
viewer id, so viewers created by page layouts at request time need no per-page callback registration.

A page includes the viewer like this::

    server = flask.Flask(__name__)
    app = Dash(server=server, external_scripts=[register_viewer_routes(server)], ...)
    ...
    layout = viewer([LayerSpec(url="/maps/<uuid>/display.nii.gz", name="Map", download_url="/maps/<uuid>.nii.gz")])

To change what a viewer shows from a server callback, write a list of layer dicts (``LayerSpec.to_dict()``, with
the underlay first, see :func:`layer_dicts`) to ``Output(component_id("layers", viewer_id), "data")``. Never
re-render an ancestor of the canvas: the canvas would be replaced and the WebGL context lost.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
import flask
import nilearn
from dash import MATCH, dcc, html

from dashboard import viewstate
from dashboard.components.common import dom_id, group_label
from pipeline.anatomy.atlas import ATLASES, DEFAULT_ATLAS

DEFAULT_UNDERLAY_URL = "/files/underlay.nii.gz"
UNDERLAY_KEY = "underlay"
NIIVUE_ROUTE = "/vendor/niivue.umd.js"
NIIVUE_PACKAGE_PATH = ("_assets", "js", "niivue.umd.js")  # inside the installed nilearn package
ID_PREFIX = "incdb-viewer-"
NO_NEGATIVE = "none"  # select value for an empty colormap_negative (dbc.Select reserves "" for its placeholder)
_NAMESPACE = "incdbViewer"

COLORMAPS: list[tuple[str, str]] = [
    ("warm", "Warm"),
    ("hot", "Hot"),
    ("red", "Red"),
    ("redyell", "Red–yellow"),
    ("kry", "Black–red–yellow"),
    ("plasma", "Plasma"),
    ("inferno", "Inferno"),
    ("magma", "Magma"),
    ("viridis", "Viridis"),
    ("turbo", "Turbo"),
    ("green", "Green"),
    ("violet", "Violet"),
    ("winter", "Winter"),
    ("cool", "Cool"),
    ("blue", "Blue"),
    ("gray", "Gray"),
]
NEGATIVE_COLORMAPS: list[tuple[str, str]] = [
    (NO_NEGATIVE, "None (hide negative values)"),
    ("winter", "Winter"),
    ("cool", "Cool"),
    ("blue", "Blue"),
    ("electric_blue", "Electric blue"),
    ("bluegrn", "Blue–green"),
    ("green", "Green"),
    ("violet", "Violet"),
]
VIEWS: list[tuple[str, str]] = [
    ("multiplanar", "Axial + coronal + sagittal"),
    ("multiplanar-3d", "Slices + 3D render"),
    ("axial", "Axial"),
    ("coronal", "Coronal"),
    ("sagittal", "Sagittal"),
    ("mosaic", "Mosaic (a row of slices)"),
    ("render", "3D render"),
]
# NiiVue's setSliceMosaicString: an orientation letter (A axial, C coronal, S sagittal) and slice positions in mm.
DEFAULT_MOSAIC = "A -24 -8 8 24 40 56"
ATLAS_URL = "/api/atlas"


@dataclass
class LayerSpec:
    """One map shown by the viewer.

    ``url`` is the display file (8-bit, see ``pipeline.maps.display``); ``download_url`` the full-precision file.
    Thresholds are in map units: voxels above ``threshold`` get ``colormap``, voxels below
    ``-threshold_negative`` get ``colormap_negative`` (empty: negative values hidden). ``None`` thresholds mean
    0 and "same as the positive one"; ``max``/``min`` fix the colour range, otherwise the map's range is used.
    ``frame`` is the 0-based volume of a 4D file.
    """

    url: str
    name: str = ""
    download_url: str | None = None
    colormap: str = "warm"
    colormap_negative: str = "winter"
    threshold: float | None = None
    threshold_negative: float | None = None
    max: float | None = None
    min: float | None = None
    opacity: float = 1.0
    visible: bool = True
    frame: int = 0
    key: str | None = None
    underlay: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def coerce(cls, value: LayerSpec | Mapping[str, Any]) -> LayerSpec:
        if isinstance(value, LayerSpec):
            return dataclasses.replace(value)
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - allowed
        if unknown:
            raise TypeError(f"unknown layer field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**value)


def component_id(kind: str, viewer_id: str) -> dict[str, str]:
    """Id of a viewer part, e.g. ``component_id("location", "viewer")`` (a store: ``{"mm", "vox", "values"}``)."""
    return {"type": ID_PREFIX + kind, "viewer": viewer_id}


def _match(kind: str) -> dict[str, Any]:
    return {"type": ID_PREFIX + kind, "viewer": MATCH}


def _name_from_url(url: str) -> str:
    base = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.nii(\.gz)?$", "", base, flags=re.IGNORECASE) or "map"


def layer_dicts(
    layers: Iterable[LayerSpec | Mapping[str, Any]], underlay_url: str = DEFAULT_UNDERLAY_URL
) -> list[dict[str, Any]]:
    """The layers store content: the MNI template underlay first (bottom), then ``layers`` bottom to top."""
    underlay = LayerSpec(
        url=underlay_url,
        name="MNI152 template",
        colormap="gray",
        colormap_negative="",
        key=UNDERLAY_KEY,
        underlay=True,
    )
    result = [underlay.to_dict()]
    seen = {UNDERLAY_KEY}
    for number, layer in enumerate(layers, start=1):
        spec = LayerSpec.coerce(layer)
        if spec.underlay:
            raise ValueError("the underlay is added by the viewer; pass underlay_url instead")
        if not spec.url:
            raise ValueError(f"layer {number} has no url")
        spec.name = spec.name or _name_from_url(spec.url)
        key = spec.key or f"layer-{number}"
        while key in seen:
            key += "-"
        seen.add(key)
        spec.key = key
        result.append(spec.to_dict())
    return result


def labelled_slider(label: str, slider: dcc.Slider) -> html.Div:
    """A slider with a visible label that assistive technology hears too: dcc.Slider takes no ``aria-*``, so
    assets/incdb-a11y.js names the handle and the number box inside ``[data-incdb-label]`` from it."""
    return html.Div(
        [html.Div(label, className="incdb-viewer-label form-label", **{"aria-hidden": "true"}), slider],
        **{"data-incdb-label": label},
    )


def _slider(slider_id: dict[str, str], value: float, limit: float, disabled: bool) -> dcc.Slider:
    return dcc.Slider(
        id=slider_id,
        min=0,
        max=limit,
        step=limit / 200,
        value=value,
        marks={0: "0", limit: f"{limit:g}"},
        updatemode="drag",
        disabled=disabled,
        tooltip={"placement": "bottom", "always_visible": False},
        className="incdb-viewer-slider",
    )


def viewer(
    layers: list[LayerSpec | dict],
    id: str = "viewer",  # noqa: A002 - the Dash convention for component ids
    height: int = 480,
    *,
    underlay_url: str = DEFAULT_UNDERLAY_URL,
    view: str = "multiplanar",
    atlas_url: str | None = ATLAS_URL,
    url_state: Mapping[str, Any] | None = None,
) -> html.Div:
    """Layout of one viewer (one per page): canvas, view and go-to controls, readout with the region at the
    crosshair (from ``atlas_url``, see ``web.anatomy``; None: no region line), colorbar, layer list, settings.

    The view (type, crosshair, per-layer visibility, thresholds, colormaps, opacity) is kept in the page address's
    ``v_*`` query parameters by the browser; pass the page's query as ``url_state`` to start from them
    (:mod:`dashboard.viewstate`)."""
    if not re.fullmatch(r"[A-Za-z][\w-]*", id):
        raise ValueError(f"viewer id {id!r} must be a simple HTML id (letters, digits, '-', '_')")
    if view not in dict(VIEWS):
        raise ValueError(f"unknown view {view!r}; one of {[v for v, _ in VIEWS]}")
    defaults = {
        "layers": layer_dicts(layers, underlay_url),
        "view": view,
        "atlas": DEFAULT_ATLAS,
        "mosaic": DEFAULT_MOSAIC,
    }
    defaults["selected"] = defaults["layers"][-1]["key"]
    state = viewstate.restore(
        defaults,
        url_state,
        views=set(dict(VIEWS)),
        atlases=set(ATLASES),
        colormaps=set(dict(COLORMAPS)),
        negative_colormaps=set(dict(NEGATIVE_COLORMAPS)) - {NO_NEGATIVE},
        no_negative=NO_NEGATIVE,
    )
    stack, view = state["layers"], state["view"]
    selected = next(layer for layer in stack if layer["key"] == state["selected"])
    overlay = not selected["underlay"]

    def vid(kind: str) -> dict[str, str]:
        return component_id(kind, id)

    threshold = max(float(selected["threshold"] or 0.0), 0.0)
    threshold_negative = abs(
        float(selected["threshold_negative"] if selected["threshold_negative"] is not None else threshold)
    )
    pos_limit = max(float(selected["max"] or 0.0), threshold) or 1.0
    neg_limit = max(-float(selected["min"] or 0.0), threshold_negative) or 1.0

    def coordinate(axis: str) -> dbc.Input:
        return dbc.Input(
            id=vid(axis),
            type="number",
            step=1,
            placeholder=axis,
            debounce=True,
            size="sm",
            className="incdb-viewer-coordinate",
        )

    toolbar = html.Div(
        className="incdb-viewer-toolbar",
        children=[
            dbc.InputGroup(
                size="sm",
                className="incdb-viewer-view",
                children=[
                    group_label("View", vid("view")),
                    dbc.Select(
                        id=vid("view"),
                        options=[{"label": label, "value": value} for value, label in VIEWS],
                        value=view,
                    ),
                ],
            ),
            dbc.InputGroup(
                size="sm",
                className="incdb-viewer-goto",
                children=[
                    group_label(["MNI x", html.Span(", y, z", **{"aria-hidden": "true"})], vid("x")),
                    coordinate("x"),
                    coordinate("y"),
                    coordinate("z"),
                    dbc.Button("Go", id=vid("goto"), color="primary", n_clicks=0),
                ],
            ),
            # The group's label names the x box; y and z get labels of their own, for assistive technology only
            # (outside the group, whose corners Bootstrap rounds by child position).
            html.Label("MNI y (mm)", htmlFor=dom_id(vid("y")), className="visually-hidden"),
            html.Label("MNI z (mm)", htmlFor=dom_id(vid("z")), className="visually-hidden"),
            dbc.InputGroup(
                size="sm",
                className="incdb-viewer-mosaic",
                id=vid("mosaic-group"),
                style=None if view == "mosaic" else {"display": "none"},
                children=[
                    # An orientation (A axial, C coronal, S sagittal) and positions in mm; rows separated by ";".
                    group_label("Slices (A/C/S, mm)", vid("mosaic")),
                    dbc.Input(
                        id=vid("mosaic"),
                        value=state["mosaic"],
                        debounce=True,
                        maxLength=200,
                        placeholder="A -20 0 20 40",
                    ),
                ],
            ),
            dbc.InputGroup(
                size="sm",
                className="incdb-viewer-atlas",
                style=None if atlas_url else {"display": "none"},
                children=[
                    group_label("Atlas", vid("atlas")),
                    dbc.Select(
                        id=vid("atlas"),
                        value=state["atlas"],
                        options=[{"label": a.name, "value": a.id} for a in ATLASES.values()],
                    ),
                ],
            ),
            html.Div(
                className="incdb-viewer-share",
                children=[
                    dbc.Button(
                        "Copy link",
                        id=vid("copy-link"),
                        color="primary",
                        outline=True,
                        size="sm",
                        n_clicks=0,
                        title="Copy the address of this view (maps, thresholds, colours, crosshair)",
                    ),
                    dbc.Button(
                        "Save image",
                        id=vid("save-image"),
                        color="primary",
                        outline=True,
                        size="sm",
                        n_clicks=0,
                        title="Download the view with its colorbar as a PNG",
                    ),
                    html.Span(id=vid("share-status"), className="incdb-viewer-share-status", **{"aria-live": "polite"}),
                ],
            ),
        ],
    )

    settings = dbc.Card(
        className="incdb-viewer-settings",
        children=[
            dbc.CardHeader(["Settings: ", html.Span(selected["name"], id=vid("settings-title"))]),
            dbc.CardBody(
                [
                    dbc.Label("Colormap", className="incdb-viewer-label", html_for=dom_id(vid("colormap"))),
                    dbc.Select(
                        id=vid("colormap"),
                        options=[{"label": lab, "value": val} for val, lab in COLORMAPS],
                        value=selected["colormap"],
                        size="sm",
                    ),
                    dbc.Label(
                        "Negative colormap", className="incdb-viewer-label", html_for=dom_id(vid("colormap-negative"))
                    ),
                    dbc.Select(
                        id=vid("colormap-negative"),
                        options=[{"label": lab, "value": val} for val, lab in NEGATIVE_COLORMAPS],
                        value=selected["colormap_negative"] or NO_NEGATIVE,
                        size="sm",
                        disabled=not overlay,
                    ),
                    labelled_slider("Positive threshold", _slider(vid("threshold"), threshold, pos_limit, not overlay)),
                    labelled_slider(
                        "Negative threshold (absolute value)",
                        _slider(vid("threshold-negative"), threshold_negative, neg_limit, not overlay),
                    ),
                    labelled_slider(
                        "Opacity",
                        dcc.Slider(
                            id=vid("opacity"),
                            min=0,
                            max=1,
                            step=0.05,
                            value=float(selected["opacity"]),
                            marks={0: "0", 1: "1"},
                            updatemode="drag",
                            className="incdb-viewer-slider",
                        ),
                    ),
                    html.Div(
                        id=vid("frame-group"),
                        style={"display": "none"},
                        children=[
                            dbc.Label(
                                "Frame (volume of the 4D file)",
                                className="incdb-viewer-label",
                                html_for=dom_id(vid("frame")),
                            ),
                            dbc.InputGroup(
                                size="sm",
                                children=[
                                    dbc.Button(
                                        "Previous",
                                        id=vid("frame-prev"),
                                        color="primary",
                                        outline=True,
                                        n_clicks=0,
                                        title="Previous frame",
                                    ),
                                    dbc.Input(id=vid("frame"), type="number", min=1, step=1, value=1, debounce=True),
                                    dbc.InputGroupText("of 1", id=vid("frame-count")),
                                    dbc.Button(
                                        "Next",
                                        id=vid("frame-next"),
                                        color="primary",
                                        outline=True,
                                        n_clicks=0,
                                        title="Next frame",
                                    ),
                                ],
                            ),
                        ],
                    ),
                ]
            ),
        ],
    )

    return html.Div(
        id=id,
        className="incdb-viewer",
        children=[
            dcc.Store(
                id=vid("config"),
                data={
                    "id": id,
                    "atlasUrl": atlas_url,
                    # What the address leaves out (the page's own state), and the crosshair it asks for.
                    "initial": {k: defaults[k] for k in ("layers", "view", "selected", "atlas", "mosaic")},
                    "goto": state["goto"],
                    "atlases": {
                        a.id: {
                            "name": a.name,
                            "license": a.license,
                            "license_url": a.license_url,
                            "citation": a.citation,
                        }
                        for a in ATLASES.values()
                    },
                },
            ),
            dcc.Store(id=vid("share-done")),
            dcc.Store(id=vid("layers"), data=stack),
            dcc.Store(id=vid("selected"), data=selected["key"]),
            dcc.Store(id=vid("info"), data={}),
            dcc.Store(id=vid("location"), data=None),
            dcc.Store(id=vid("sync")),
            dcc.Store(id=vid("goto-done")),
            dbc.Row(
                className="g-3",
                children=[
                    dbc.Col(
                        lg=8,
                        children=[
                            toolbar,
                            # Explicit height: NiiVue sizes the canvas from this parent when it attaches.
                            html.Div(
                                # Focusable (the script sets tabIndex): arrow keys move the crosshair, and the
                                # readout below, a live region, says where it is and the values there.
                                html.Canvas(
                                    id=f"{id}-canvas",
                                    className="incdb-viewer-canvas",
                                    role="img",
                                    **{
                                        "aria-label": "Brain map viewer of the maps listed under Layers. "
                                        "Arrow keys move the crosshair; the values at the crosshair are "
                                        "read out below.",
                                        "aria-describedby": dom_id(vid("readout")),
                                    },
                                ),
                                className="incdb-viewer-stage",
                                style={"height": f"{int(height)}px"},
                            ),
                            html.Canvas(
                                id=f"{id}-colorbar",
                                className="incdb-viewer-colorbar",
                                height=44,
                                role="img",
                                **{"aria-label": "Colour scale of the selected map"},
                            ),
                            html.Div(
                                "Click the image (or focus it and use the arrow keys) to read MNI coordinates and "
                                "values.",
                                id=vid("readout"),
                                className="incdb-viewer-readout",
                                **{"aria-live": "polite"},
                            ),
                            html.Div(
                                id=vid("region"),
                                className="incdb-viewer-region",
                                style=None if atlas_url else {"display": "none"},
                                **{"aria-live": "polite"},
                            ),
                        ],
                    ),
                    dbc.Col(
                        lg=4,
                        children=[
                            html.Div("Layers (top first)", className="incdb-viewer-heading"),
                            html.Div(id=vid("layer-list"), className="incdb-viewer-layers"),
                            settings,
                        ],
                    ),
                ],
            ),
        ],
    )


def niivue_path() -> Path:
    """The NiiVue bundle shipped by the installed nilearn package; RuntimeError if nilearn moved it."""
    try:
        resource = importlib.resources.files("nilearn").joinpath(*NIIVUE_PACKAGE_PATH)
    except ModuleNotFoundError as exc:  # pragma: no cover - nilearn is a hard dependency
        raise RuntimeError("nilearn is not installed; the viewer loads NiiVue from nilearn") from exc
    path = Path(str(resource))
    if not path.is_file():
        raise RuntimeError(
            f"NiiVue bundle not found at {path} (expected nilearn/{'/'.join(NIIVUE_PACKAGE_PATH)}); the viewer "
            "serves NiiVue from the installed nilearn package, so check the pinned nilearn version"
        )
    return path


def register_viewer_routes(server: flask.Flask) -> str:
    """Serve NiiVue at ``/vendor/niivue.umd.js``; returns the URL to put in ``Dash(external_scripts=[...])``."""
    path = niivue_path()

    if "incdb_niivue" not in server.view_functions:

        def send_niivue() -> flask.Response:
            # The URL carries the nilearn version, so browsers may keep the 2 MB bundle for a long time.
            return flask.send_file(
                path, mimetype="application/javascript", max_age=30 * 24 * 3600, conditional=True, etag=True
            )

        server.add_url_rule(NIIVUE_ROUTE, endpoint="incdb_niivue", view_func=send_niivue)
    return f"{NIIVUE_ROUTE}?v={nilearn.__version__}"
