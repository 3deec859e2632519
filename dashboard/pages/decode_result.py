"""A visitor's decoded map (``/decode/<id>``): the viewer with the map, the decoding profile (chart, full ranked
table, CSV), the most similar components of the catalogue and, for a 4D map, a term x volume heatmap with volume
stepping. Until the decoding has finished the page shows its progress; its owner (signed in) may delete it."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dcc, html

from dashboard.components.charts import FONT, HEATMAP_SCALE, accessible_graph, decoding_figure, plot_text
from dashboard.components.common import fmt_date, not_found, page_header, section
from dashboard.components.curator import alert
from dashboard.components.data import read
from dashboard.components.maps import layer, map_viewer
from dashboard.components.similar import similar_table
from dashboard.components.tables import Column, _r_bar, data_table
from pipeline.decoding import visitors

dash.register_page(__name__, path_template="/decode/<token>", order=8, title="Decoded map · INcDb")

HEATMAP_TERMS = 30
POLL_MS = 1000
PROFILE_DESCRIPTION = (
    "Bar chart of the terms whose maps correlate most strongly with this volume (Pearson r); "
    "the ranked table of all terms is next to it."
)


def _state(session, user, token: str) -> dict[str, Any] | None:
    row = visitors.find(session, token)
    if row is None:
        return None
    info = visitors.summary(row)
    info["can_delete"] = visitors.can_delete(user, row)
    info["volumes_shown"] = []
    if row.status == "done":
        payload = visitors.load_payload(row)
        info["volumes_shown"] = visitors.shown_volumes(session, user, payload) if payload else []
    return info


def _layers(token: str, volume: dict[str, Any], total: int) -> list:
    name = "your map" if total == 1 else f"your map, volume {volume['volume']}"
    url = f"/decode/{token}/volumes/{volume['volume']}.nii.gz"
    return [layer(url, name, "visitor-map", threshold=volume.get("threshold") or 0.0)]


def layout(token: str | None = None, **_query: Any) -> html.Div:
    token = token if isinstance(token, str) else ""
    info = read(_state, token[:64])
    if info is None:
        return not_found(
            "decoded map",
            links=(("Decode a map", "/decode"), ("Home", "/")),
            hint="Decoded maps are kept for a few days; this one does not exist or has expired.",
        )
    header = page_header(
        "Decoded map",
        [
            info["filename"],
            " · ",
            f"{info['volumes']} volume(s) · ",
            "mask: " + ("non-zero voxels" if info["mask"] == "nonzero" else "brain"),
            f" · reference: {info['reference']}",
        ],
        crumbs=(("Home", "/"), ("Decode a map", "/decode"), ("Result", None)),
    )
    top = [header, dcc.Store(id="decres-token", data=token), dcc.Location(id="decres-go", refresh=True)]
    if info["status"] in ("queued", "running"):
        return html.Div(
            top + [dcc.Interval(id="decres-poll", interval=POLL_MS), html.Div(_progress(info), id="decres-progress")]
        )
    if info["status"] == "failed":
        return html.Div(top + [alert(info["error"] or "The decoding failed."), _warnings(info), _delete(info)])
    volumes = [v for v in info["volumes_shown"] if v["error"] is None]
    if not volumes:
        return html.Div(top + [alert("No volume of this map could be decoded."), _warnings(info), _delete(info)])
    first = volumes[0]
    profile = decoding_figure(first["terms"])
    return html.Div(
        top
        + [
            _warnings(info),
            map_viewer(
                _layers(token, first, info["volumes"]),
                "Your map on the MNI 2 mm grid; the threshold starts at its 90th percentile of |value|.",
            ),
            _stepper(info["volumes_shown"]) if info["volumes"] > 1 else None,
            dbc.Row(
                [
                    dbc.Col(
                        section(
                            "Decoding profile",
                            accessible_graph(
                                dcc.Graph(id="decres-profile", figure=profile, config={"displayModeBar": False}),
                                profile,
                                PROFILE_DESCRIPTION,
                                table=False,
                            ),
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        section(
                            [
                                "All terms, ranked ",
                                html.A(
                                    "download CSV",
                                    href=f"/decode/{token}/profile.csv",
                                    className="incdb-section-link",
                                    download="",
                                ),
                            ],
                            html.Div(_terms_table(first["terms"]), id="decres-terms", className="incdb-scroll-table"),
                        ),
                        lg=6,
                    ),
                ],
                className="g-4",
            ),
            section(
                [
                    "Most similar components ",
                    html.Span("spatial r over the brain mask, across movies", className="incdb-section-link"),
                ],
                html.Div(similar_table(first["similar"]), id="decres-similar"),
            ),
            html.P(
                f"Kept until {fmt_date(info['expires'])}; anyone with this address can open it.",
                className="small text-muted",
            ),
            _delete(info),
        ]
    )


def _progress(info: dict[str, Any]) -> dbc.Card:
    total = max(1, info["volumes"])
    return dbc.Card(
        dbc.CardBody(
            [
                html.P(f"Decoding {info['volumes']} volume(s)… this page updates by itself.", className="mb-2"),
                dbc.Progress(
                    value=round(100 * info["done"] / total),
                    label=f"{info['done']} / {info['volumes']}",
                    striped=True,
                    animated=True,
                    id="decres-bar",
                ),
            ]
        )
    )


def _warnings(info: dict[str, Any]) -> dbc.Alert | None:
    if not info["warnings"]:
        return None
    return dbc.Alert(
        [html.Strong("Quality check: "), html.Ul([html.Li(w) for w in info["warnings"][:20]], className="mb-0 mt-1")],
        color="warning",
    )


def _terms_table(terms: list[dict[str, Any]]) -> Any:
    rows = [{"rank": i + 1, **t} for i, t in enumerate(terms)]
    return data_table(
        [
            Column("Rank", lambda d: d["rank"], "text-end incdb-col-rank"),
            Column("Term", lambda d: dcc.Link(d["term"], href=f"/terms/{d['slug']}"), "incdb-col-main"),
            Column("r", lambda d: _r_bar(d["r"]), "incdb-col-r"),
        ],
        rows,
        row_links=False,
        table_id_="decres-terms-table",
    )


def heatmap(volumes: list[dict[str, Any]], n: int = HEATMAP_TERMS) -> go.Figure:
    """Terms (the ``n`` with the highest r in any volume) x volumes, r as colour."""
    usable = [v for v in volumes if v["error"] is None]
    best: dict[str, float] = {}
    for v in usable:
        for t in v["terms"]:
            best[t["term"]] = max(best.get(t["term"], -1.0), t["r"])
    terms = sorted(best, key=lambda t: -best[t])[:n]
    by_volume = [{t["term"]: t["r"] for t in v["terms"]} for v in usable]
    figure = go.Figure(
        go.Heatmap(
            z=[[row.get(t, 0.0) for row in by_volume] for t in terms],
            x=[v["volume"] for v in usable],
            y=[plot_text(t) for t in terms],
            colorscale=HEATMAP_SCALE,
            colorbar={"title": {"text": "r"}},
            hovertemplate="volume %{x}<br><b>%{y}</b>: r = %{z:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(260, 40 + 18 * len(terms)),
        margin={"l": 10, "r": 10, "t": 10, "b": 40},
        font=FONT,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    figure.update_xaxes(title_text="volume (click one to show it)", dtick=1 if len(usable) <= 40 else None)
    figure.update_yaxes(type="category", autorange="reversed", automargin=True)
    return figure


def _stepper(volumes: list[dict[str, Any]]) -> html.Section:
    numbers = [v["volume"] for v in volumes if v["error"] is None]
    return section(
        "Volumes",
        [
            html.Div(
                [
                    dbc.Button(
                        _icon("◀", "Previous volume"),
                        id="decres-prev",
                        size="sm",
                        color="secondary",
                        outline=True,
                        className="me-2",
                    ),
                    html.Div(
                        dcc.Slider(
                            id="decres-volume",
                            min=numbers[0],
                            max=numbers[-1],
                            step=1,
                            value=numbers[0],
                            marks=None,
                            tooltip={"placement": "bottom", "always_visible": True},
                        ),
                        className="flex-grow-1",
                        **{"data-incdb-label": "Volume"},
                    ),  # named by assets/incdb-a11y.js
                    dbc.Button(
                        _icon("▶", "Next volume"),
                        id="decres-next",
                        size="sm",
                        color="secondary",
                        outline=True,
                        className="ms-2",
                    ),
                ],
                className="d-flex align-items-center mb-3",
            ),
            accessible_graph(
                dcc.Graph(id="decres-heatmap", figure=heatmap(volumes), config={"displayModeBar": False}),
                heatmap(volumes),
                "Heatmap of the terms with the highest r (rows) in each volume "
                "(columns); the table below lists the values.",
            ),
        ],
    )


def _icon(symbol: str, name: str) -> list:
    """A symbol-only button's content: the symbol for the eye, the name for assistive technology."""
    return [html.Span(symbol, **{"aria-hidden": "true"}), html.Span(name, className="visually-hidden")]


def _delete(info: dict[str, Any]) -> html.Div | None:
    if not info["can_delete"]:
        return None
    return html.Div(
        [
            dbc.Button("Delete this result…", id="decres-delete", color="danger", outline=True, size="sm"),
            dbc.Modal(
                [
                    dbc.ModalHeader(dbc.ModalTitle("Delete this decoded map?")),
                    dbc.ModalBody("The map and its results are removed now; the address stops working."),
                    dbc.ModalFooter(
                        [
                            dbc.Button("Keep it", id="decres-delete-cancel", color="secondary"),
                            dbc.Button("Delete", id="decres-delete-confirm", color="danger"),
                        ]
                    ),
                ],
                id="decres-delete-modal",
                is_open=False,
            ),
            html.Div(id="decres-delete-message"),
        ],
        className="mt-3",
    )
