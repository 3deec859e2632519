"""One of the curator's collections (``/contribute/<slug>``): details, license, uploads, processing, deletion.

The page's callbacks edit the collection, confirm the license, list uploads and components, start processing and
follow it through the Job row (which outlives the browser tab), and delete the collection after confirmation."""

from __future__ import annotations

from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from sqlalchemy import select

from dashboard.components.collection_form import collection_form
from dashboard.components.common import not_found
from dashboard.components.curation import license_panel
from dashboard.components.curator import sign_in_prompt
from dashboard.components.data import row_id
from dashboard.components.job_runner import job_runner
from dashboard.components.synchrony import isfc_section
from pipeline.curation.archives import ACCEPTED_SUFFIXES
from pipeline.temporal.timecourses import FTMIX_NAMES, MIX_NAMES, TABLE_SUFFIX
from store.access import can_edit
from store.config import get_settings
from store.db import session_scope
from store.models import Collection, Movie
from store.queries import lookup_key
from store.units import human_bytes
from web.auth import signed_in_user as user

dash.register_page(__name__, path_template="/contribute/<slug>", order=21, title="Edit collection · INcDb")

RUNNER = "proc"  # the collection page's job runner
POLL_ACTIVE_MS = 1500
POLL_IDLE_MS = 15000


def _upload_widget(slug: str) -> html.Div:
    limit = get_settings().max_upload_bytes
    return html.Div(
        [
            html.Div(
                [
                    html.P(
                        [
                            "Drop files here or ",
                            html.Button(
                                "choose files",
                                id="coll-choose",
                                type="button",
                                className="btn btn-sm btn-outline-primary mx-1",
                            ),
                        ],
                        className="mb-1",
                    ),
                    html.P(
                        f".nii, .nii.gz, or .zip / .tar.gz archives of them; up to {human_bytes(limit)} per file. "
                        "3D files are one map each; 4D files one map per volume. Time courses: melodic_mix (and "
                        "melodic_FTmix) next to melodic_IC.nii.gz, or <map>_timecourses.tsv next to <map>.nii.gz.",
                        className="small text-muted mb-0",
                    ),
                ],
                className="incdb-dropzone",
                id="coll-dropzone",
                **{
                    "data-upload-url": f"/upload/{slug}",
                    "data-resumable-url": f"/upload/{slug}/resumable",
                    "data-max-bytes": str(limit),
                    # A whole-name pattern ("?": one character): dual_regression's per-subject files, one by one.
                    "data-accept": ",".join(
                        ACCEPTED_SUFFIXES + MIX_NAMES + FTMIX_NAMES + (TABLE_SUFFIX, "dr_stage1_subject?????.txt")
                    ),
                },
            ),
            html.Div(id="coll-upload-progress", className="incdb-upload-list"),
            dcc.Store(id="coll-uploaded"),
        ]
    )


def layout(slug: str | None = None, process: str | None = None, delete: str | None = None, **query):
    if slug == "new":  # only if Dash ever tried this template before the page of that path
        return dcc.Location(id="coll-go", href="/contribute/new", refresh=True)
    u = user()
    if u is None:
        return sign_in_prompt(f"/contribute/{slug or ''}", "this collection")
    with session_scope() as session:
        key = lookup_key(slug)  # a query string can replace the path's slug with a list, a NUL or 10,000 characters
        collection = session.scalar(select(Collection).where(Collection.slug == key)) if key else None
        if collection is None or not can_edit(u, collection):
            return not_found(
                "collection",
                links=(("My collections", "/contribute"), ("Browse movies", "/movies")),
                hint="It does not exist, or it is not yours to change.",
            )
        movie = session.get(Movie, collection.movie_id)
        values = {
            "name": collection.name,
            "movie": movie.title,
            "year": movie.year,
            "description": collection.description,
            "dataset_url": collection.dataset_url,
            "doi": collection.doi,
            "contributors": collection.contributors,
            "license": collection.license,
            "visibility": collection.visibility,
            "metadata": collection.metadata_,
            "timing": collection.timing,
        }
        license_box = license_panel(collection)
        confirmed = collection.license_confirmed_at is not None
        cid, visibility, name = collection.id, collection.visibility, collection.name
        movie_slug, owner = movie.slug, collection.owner.email
    return html.Div(
        [
            dcc.Location(id="coll-go", refresh=True),
            dcc.Store(id="coll-id", data=cid),
            dcc.Store(id="coll-refresh"),
            dcc.Store(id="coll-autostart", data=process == "1"),
            dcc.Interval(id="coll-poll", interval=POLL_IDLE_MS),
            html.Nav(html.A("← My collections", href="/contribute"), className="small mb-2"),
            html.Div(
                [
                    html.Div(
                        [
                            html.H1(name, className="h3 mb-1", id="coll-name"),
                            html.Div(
                                [
                                    dbc.Badge(visibility, color="light", text_color="dark", className="border"),
                                    html.Span(f" owner {owner}" if owner != u.email else "", className="small"),
                                    " · ",
                                    html.A("public movie page", href=f"/movies/{movie_slug}", className="small"),
                                ],
                                className="text-muted",
                            ),
                        ]
                    ),
                ],
                className="mb-3",
            ),
            html.Div(id="coll-action-message"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Card(
                                [
                                    dbc.CardHeader("Upload maps"),
                                    dbc.CardBody(
                                        [
                                            html.Div(license_box, id="coll-license"),
                                            html.Div(
                                                _upload_widget(slug),
                                                id="coll-upload-wrap",
                                                className="" if confirmed else "d-none",
                                            ),
                                            html.H2("Uploaded files", className="h6 mt-3"),
                                            html.Div(id="coll-uploads"),
                                        ]
                                    ),
                                ],
                                className="mb-4",
                            ),
                            dbc.Card(
                                [
                                    dbc.CardHeader("Processing"),
                                    dbc.CardBody(
                                        [
                                            html.P(
                                                "Processing reads every uploaded file, puts each map on the "
                                                "MNI 2 mm grid, checks it, "
                                                "decodes it against the term maps and updates the movie's "
                                                "merged maps. It starts by "
                                                "itself after an upload; it keeps running if you close this page.",
                                                className="small text-muted",
                                            ),
                                            dbc.Button(
                                                "Process uploaded files",
                                                id="coll-process",
                                                color="primary",
                                                size="sm",
                                                disabled=True,
                                            ),
                                            html.Div(id="coll-start-message"),
                                            job_runner(RUNNER),
                                            html.Div(id="coll-status", className="mt-2"),
                                        ]
                                    ),
                                ],
                                className="mb-4",
                            ),
                        ],
                        lg=6,
                    ),
                    dbc.Col(
                        [
                            dbc.Card(
                                [dbc.CardHeader("Components"), dbc.CardBody(html.Div(id="coll-components"))],
                                className="mb-4",
                            ),
                        ],
                        lg=6,
                    ),
                ]
            ),
            isfc_section(key),
            dbc.Card(
                [dbc.CardHeader("Details"), dbc.CardBody(collection_form("edit", values, "Save changes"))],
                className="mb-4",
            ),
            dbc.Card(
                [
                    dbc.CardHeader("Delete"),
                    dbc.CardBody(
                        [
                            html.P(
                                "Deleting removes the collection, its uploaded files, its "
                                "components and their decodings, and "
                                "takes them out of the merged maps. It cannot be undone.",
                                className="small",
                            ),
                            dbc.Button("Delete collection…", id="coll-delete", color="danger", outline=True, size="sm"),
                        ]
                    ),
                ],
                className="mb-4 border-danger-subtle",
            ),
            dbc.Modal(
                [
                    dbc.ModalHeader(dbc.ModalTitle("Delete this collection?")),
                    dbc.ModalBody(
                        [
                            html.P(["“", html.Strong(name), "” and everything in it will be deleted."]),
                            html.Div(id="coll-delete-message"),
                        ]
                    ),
                    dbc.ModalFooter(
                        [
                            dbc.Button("Keep it", id="coll-delete-cancel", color="secondary"),
                            dbc.Button("Delete for good", id="coll-delete-confirm", color="danger"),
                        ]
                    ),
                ],
                id="coll-delete-modal",
                is_open=delete == "1",
            ),
        ]
    )


def _editable(session, collection_id: Any) -> Collection:
    u = user()
    cid = row_id(collection_id)  # the page's Store: anything but an id is a forged request
    collection = session.get(Collection, cid) if cid is not None else None
    if u is None or not can_edit(u, collection):
        raise PermissionError("You may not change this collection (any more). Reload the page.")
    return collection
