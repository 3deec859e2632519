"""The public decoder (``/decode``): a visitor drops one NIfTI map and gets its decoding profile and the most
similar components of the catalogue, at an address of its own (``/decode/<id>``).

The file streams to ``POST /api/decode`` through ``assets/upload.js`` (the curator upload's panel, with byte
progress); the options only change the address it is sent to. When the answer comes, the page moves to the
result.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from sqlalchemy import select

from dashboard.components.common import page_header
from dashboard.components.data import read
from pipeline.decoding.visitors import limits_for
from store.models import ReferenceSet
from store.units import human_bytes

dash.register_page(__name__, path="/decode", order=7, title="Decode a map · INcDb")

RESULT_PATH = re.compile(r"/decode/[A-Za-z0-9_-]{16,64}")
MASKS = [
    {"label": "Whole brain mask (unthresholded maps)", "value": "brain"},
    {"label": "Only the map's non-zero voxels (thresholded maps)", "value": "nonzero"},
]


def _references(session, _user) -> list[dict[str, Any]]:
    rows = session.execute(select(ReferenceSet.name, ReferenceSet.active).order_by(ReferenceSet.id)).all()
    return [{"label": name + (" (active)" if active else ""), "value": name, "active": active} for name, active in rows]


def _upload_url(mask: str, reference: str) -> str:
    return "/api/decode?" + urlencode({"mask": mask, "reference": reference})


def layout(**_query: Any) -> html.Div:
    references = read(_references)
    active = next((r["value"] for r in references if r["active"]), references[0]["value"] if references else "")
    limits = read(lambda _session, user: limits_for(user))
    return html.Div(
        [
            page_header(
                "Decode a map",
                "Which terms does your map look like, and which movie components?",
                crumbs=(("Home", "/"), ("Decode a map", None)),
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            dbc.CardBody(
                                [
                                    html.H2("Options", className="h6"),
                                    dbc.Label("Voxels to correlate over", html_for="decode-mask"),
                                    dbc.RadioItems(id="decode-mask", options=MASKS, value="brain", className="mb-3"),
                                    dbc.Label("Reference set", html_for="decode-reference"),
                                    dbc.Select(
                                        id="decode-reference",
                                        options=[{"label": r["label"], "value": r["value"]} for r in references],
                                        value=active,
                                    ),
                                ]
                            )
                        ),
                        lg=4,
                    ),
                    dbc.Col(
                        [
                            html.Div(
                                [
                                    html.P(
                                        [
                                            "Drop one map here or ",
                                            html.Button(
                                                "choose a file",
                                                id="decode-choose",
                                                type="button",
                                                className="btn btn-sm btn-outline-primary mx-1 incdb-upload-choose",
                                            ),
                                        ],
                                        className="mb-1",
                                    ),
                                    html.P(
                                        "One .nii or .nii.gz file, 3D or 4D (every volume is "
                                        "decoded), in MNI space at any "
                                        f"resolution; up to {human_bytes(limits.max_bytes)} and "
                                        f"{limits.max_volumes} volumes. "
                                        "The map is checked, resampled to the MNI 2 mm grid and "
                                        "correlated (Pearson r) with "
                                        "every term map. It is kept privately for a few days at an "
                                        "address only you get; it "
                                        "never joins the catalogue.",
                                        className="small text-muted mb-0",
                                    ),
                                ],
                                className="incdb-dropzone",
                                id="decode-dropzone",
                                **{
                                    "data-upload-url": _upload_url("brain", active),
                                    "data-max-bytes": str(limits.max_bytes),
                                    "data-accept": ".nii,.nii.gz",
                                    "data-list": "decode-upload-progress",
                                    "data-done-store": "decode-uploaded",
                                    "data-single": "1",
                                },
                            ),
                            html.Div(id="decode-upload-progress", className="incdb-upload-list"),
                            dcc.Store(id="decode-uploaded"),
                            dcc.Location(id="decode-go", refresh="callback-nav"),
                        ],
                        lg=8,
                    ),
                ],
                className="g-4",
            ),
        ]
    )
