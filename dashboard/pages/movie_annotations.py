"""A movie's annotation sets: their labels and counts, downloads, adding one (signed in) and deleting one's own.

Adding or deleting a set starts the job that decodes the movie's components in time again
(``pipeline.temporal.annotations``
on the shared job runner), so the page shows its progress.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html, no_update
from sqlalchemy import select

from dashboard.components.common import not_found, page_header, plural
from dashboard.components.data import read
from dashboard.components.job_runner import job_runner, watchable
from pipeline.jobs.lifecycle import JobRefused
from pipeline.temporal.annotations import (
    may_change,
    start_temporal_job,
)
from store import queries, timeline
from store.config import get_settings
from store.models import ACTIVE_JOB_STATUSES, AnnotationSet, Job
from store.units import human_bytes
from web.auth import signed_in_user

RUNNER = "annotjob"


def title(movie: str | None = None, **_: Any) -> str:
    found = read(queries.get_visible_movie, movie) if movie else None
    return f"Annotations of {found.title} · INcDb" if found else "Movie not found · INcDb"


# Tried before "/movies/<movie>/<term>" (order 4), which would take "annotations" for a term.
dash.register_page(__name__, path_template="/movies/<movie>/annotations", order=3, title=title)


def _sets(session, user, slug: str) -> tuple[Any, list[dict[str, Any]], set[int]] | None:
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    sets = timeline.movie_annotations(session, movie, with_events=False)
    mine = {
        a.id
        for a in session.scalars(select(AnnotationSet).where(AnnotationSet.movie_id == movie.id))
        if may_change(user, a)
    }
    return {"title": movie.title, "slug": movie.slug}, sets, mine


def _active_job(session, user, slug: str) -> dict | None:
    """The movie's queued or running temporal decoding, shown by the runner after a reload."""
    movie = queries.get_visible_movie(session, user, slug)
    job = movie and session.scalar(
        select(Job)
        .where(Job.kind == "temporal", Job.movie_id == movie.id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Job.id.desc())
    )
    return watchable(session, user, job) if job else None


def set_cards(slug: str) -> list:
    found = read(_sets, slug)
    if found is None:
        return []
    _, sets, mine = found
    if not sets:
        return [html.P("No annotation sets yet.", className="text-muted", id="annotations-empty")]
    cards = []
    for a in sets:
        labels = []
        for x in a["labels"][:30]:
            labels += [
                ", " if labels else "",
                dcc.Link(x["label"], href=f"/labels/{quote(x['label'], safe='')}"),
                f" ({x['events']})",
            ]
        more = len(a["labels"]) - 30
        actions = [
            html.A(
                "download CSV", href=f"/movies/{slug}/annotations/{a['id']}.csv", download="", className="me-3 small"
            )
        ]
        if a["id"] in mine:
            actions.append(
                dbc.Button(
                    "Delete", id={"type": "annot-delete", "set": a["id"]}, color="danger", outline=True, size="sm"
                )
            )
        cards.append(
            dbc.Card(
                dbc.CardBody(
                    [
                        html.H2(a["name"], className="h6 mb-1"),
                        html.P(a["description"], className="small mb-1") if a["description"] else None,
                        html.P(
                            html.A(a["source_url"], href=a["source_url"], rel="noopener noreferrer", target="_blank"),
                            className="small mb-1",
                        )
                        if a["source_url"]
                        else None,
                        html.P(
                            [
                                html.Strong(plural(sum(x["events"] for x in a["labels"]), "event")),
                                " · labels: ",
                                *labels,
                                f" and {more} more" if more > 0 else "",
                            ],
                            className="small mb-2",
                        ),
                        html.Div(actions),
                    ]
                ),
                className="mb-3",
                id={"type": "annot-card", "set": a["id"]},
            )
        )
    return cards


def upload_form() -> Any:
    if signed_in_user() is None:
        return html.P(["Sign in to add an annotation set."], className="text-muted")
    return dbc.Card(
        dbc.CardBody(
            [
                html.H2("Add an annotation set", className="h6"),
                html.P(
                    "A BIDS-style events file (tab-separated): onset and duration in seconds of movie time, trial_type "
                    "(or label), optionally amplitude (or value)." + _caps_text(),
                    className="small text-muted",
                ),
                dbc.Row(
                    [
                        dbc.Col(
                            [dbc.Label("Name *", html_for="annot-name"), dbc.Input(id="annot-name", maxlength=255)],
                            md=4,
                        ),
                        dbc.Col(
                            [
                                dbc.Label("Source URL", html_for="annot-url"),
                                dbc.Input(id="annot-url", type="url", maxlength=1000, placeholder="https://…"),
                            ],
                            md=8,
                        ),
                    ],
                    className="mb-2 g-2",
                ),
                dbc.Label("Description", html_for="annot-description"),
                dbc.Textarea(id="annot-description", maxLength=5000, className="mb-2"),
                dcc.Upload(
                    id="annot-file",
                    children=html.Div(["Drop the events TSV here, or ", html.A("choose it")]),
                    className="incdb-dropzone mb-2",
                    max_size=_browser_max_size(),
                    multiple=False,
                ),
                html.Div(id="annot-file-name", className="small text-muted mb-2"),
                dbc.Button("Add", id="annot-submit", color="primary"),
            ]
        ),
        className="mb-4",
    )


def _caps_text() -> str:
    settings = get_settings()
    caps = [
        f"{human_bytes(settings.annotation_max_bytes)}" if settings.annotation_max_bytes else "",
        f"{settings.annotation_max_events:,} events" if settings.annotation_max_events else "",
        f"{settings.annotation_max_labels:,} labels" if settings.annotation_max_labels else "",
    ]
    caps = [c for c in caps if c]
    return f" At most {', '.join(caps)} per set." if caps else ""


def _browser_max_size() -> int:
    """The browser refuses only files far over the cap; the server's check gives the message for the rest."""
    cap = get_settings().annotation_max_bytes
    return 2 * cap if cap else -1


def layout(movie: str | None = None, **_query: Any) -> html.Div:
    found = read(_sets, movie or "")
    if found is None:
        return not_found("Movie", movie, links=(("All movies", "/movies"), ("Home", "/")))
    info, _, _ = found
    return html.Div(
        [
            page_header(
                f"Annotations of {info['title']}",
                "Events over movie time, used to decode the components' time courses",
                crumbs=(
                    ("Home", "/"),
                    ("Movies", "/movies"),
                    (info["title"], f"/movies/{info['slug']}"),
                    ("Annotations", None),
                ),
            ),
            dcc.Store(id="annot-movie", data=info["slug"]),
            upload_form(),
            html.Div(id="annot-message"),
            job_runner(RUNNER, watch=read(_active_job, info["slug"])),
            dcc.ConfirmDialog(id="annot-confirm", message=""),
            dcc.Store(id="annot-pending"),
            html.Div(set_cards(info["slug"]), id="annot-sets"),
        ]
    )


def _start_job(session, user, movie) -> dict | Any:
    try:
        job = start_temporal_job(session, user, movie)
    except JobRefused:
        return no_update
    return {"token": job.token, "nonce": None} if job is not None else no_update


def _decode_upload(contents: Any) -> bytes | None:
    """The bytes of a dcc.Upload value ("data:<type>;base64,<data>"), or None."""
    if not isinstance(contents, str) or "," not in contents:
        return None
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return None
