"""A movie's annotation sets: their labels and counts, downloads, adding one (signed in) and deleting one's own.

Adding or deleting a set asks for the movie's components to be decoded in time again
(``pipeline.temporal.annotations.request_recompute``): changes coalesce into one waiting recompute per movie, which
starts when the running one ends. The page starts a recompute on the shared job runner only when none runs, and
shows the state of the movie's recomputes (running, waiting, last finished) in a panel it polls. A waiting recompute
that nothing runs (its page was closed before it started it) is started by whoever notices it
(``pipeline.jobs.lifecycle.waiting_recomputes``: this page's next visit, the sweep, a worker), and the panel offers
"Start now" for it, and "Recompute now" after a recompute that failed or was cancelled. An events file
with bad lines is refused with every bad line listed, and the curator may then import its valid lines.
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
from pipeline.jobs.system import waiting_note
from pipeline.temporal.annotations import (
    AnnotationError,
    Recompute,
    may_change,
    recompute_state,
    request_recompute,
    start_waiting_recompute,
)
from pipeline.temporal.events import MAX_LISTED_BAD_LINES
from store import queries, timeline
from store.config import get_settings
from store.models import ACTIVE_JOB_STATUSES, AnnotationSet, Job
from store.units import human_bytes
from web.auth import signed_in_user

RUNNER = "annotjob"
RECOMPUTE_POLL_MS = 3000  # how often the recompute panel reads the movie's jobs while one is active
HIDDEN = {"display": "none"}


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
                # Shown after a file with bad lines was refused: add it again with the bad lines skipped.
                dbc.Button(
                    "", id="annot-skip", color="warning", outline=True, className="ms-2", style=HIDDEN, n_clicks=0
                ),
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
            *recompute_panel(info["slug"]),
            job_runner(RUNNER, watch=read(_active_job, info["slug"])),
            dcc.ConfirmDialog(id="annot-confirm", message=""),
            dcc.Store(id="annot-pending"),
            html.Div(set_cards(info["slug"]), id="annot-sets"),
        ]
    )


def _start_job(session, user, movie, started_token: str | None = None) -> tuple[dict | Any, Recompute | None]:
    """The runner's request for the movie's recompute when this page should start it (else ``no_update``), and
    the recompute (None when there is nothing to decode or the user may not ask)."""
    try:
        found = request_recompute(session, user, movie, started_token)
    except JobRefused:
        return no_update, None
    if found is None or not found.start:
        return no_update, found
    return {"token": found.job.token, "nonce": None}, found


def recompute_note(found: Recompute | None) -> str:
    """What a change did to the movie's recomputes, for the message after it."""
    if found is None:
        return ""
    if found.start:
        return " Decoding the movie's components against its annotations…"
    if found.running is not None:
        return (
            f" A recompute (job #{found.running.id}) is running; this change waits in job #{found.job.id}, "
            "which starts when it ends."
        )
    return f" The change joins the recompute waiting to start (job #{found.job.id})."


def _state(session, user, slug: str) -> dict | None:
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None or not getattr(user, "is_authenticated", False):
        return None  # the jobs are shown to curators
    state = recompute_state(session, movie.id)
    if state["waiting"] is not None:
        state["waiting"]["note"] = waiting_note(session, session.get(Job, state["waiting"]["id"]))
    return state


def _job_progress(job: dict) -> str:
    return f" ({job['done']} of {job['total']} collections)" if job.get("total") else ""


def recompute_status(slug: str) -> tuple[Any, bool]:
    """The recompute panel's content for the movie, and whether a recompute is active (the panel polls then)."""
    state = read(_state, slug)
    if state is None:
        return None, False
    running, waiting, last = state["running"], state["waiting"], state["last"]
    lines: list[Any] = []
    if running is not None:
        lines.append(f"Recomputing the temporal decoding: job #{running['id']} runs{_job_progress(running)}.")
    if waiting is not None:
        after = f" when job #{running['id']} ends" if running is not None else ""
        lines.append(f"Later changes wait in job #{waiting['id']}; it starts{after}.")
        if waiting.get("note"):
            lines.append(waiting["note"])
        if running is None:
            lines.append(html.Div(["Nothing runs it yet. ", start_button("Start now")], className="mt-1"))
    if running is None and waiting is None and last is not None:
        when = f" at {last['finished']:%Y-%m-%d %H:%M} UTC" if last.get("finished") else ""
        if last["status"] == "succeeded":
            lines.append(f"The temporal decoding is up to date: job #{last['id']} finished{when}.")
        else:
            error = (last.get("error") or "").splitlines()[:1]
            lines.append(
                f"The last recompute, job #{last['id']}, {last['status']}{when}"
                + (f": {error[0][:200]}" if error else "")
                + "."
            )
            lines.append(html.Div(start_button("Recompute now"), className="mt-1"))
    if not lines:
        return None, False
    active = running is not None or waiting is not None
    color = "info" if active else ("success" if last and last["status"] == "succeeded" else "warning")
    body = html.Div([html.Div(line) for line in lines], className="small")
    return dbc.Alert(body, color=color, className="mt-2 py-2", id="annot-recompute-state"), active


def start_button(label: str) -> Any:
    """The button that starts the movie's waiting recompute (or a new one) now."""
    return dbc.Button(label, id="annot-recompute-start", color="primary", outline=True, size="sm", n_clicks=0)


def _start_now(session, user, slug: str) -> str:
    """Start the movie's waiting recompute now (or queue and start one): what happened, for the message."""
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return "This movie does not exist (any more)."
    try:
        found = start_waiting_recompute(session, user, movie)
    except JobRefused as exc:
        return str(exc)
    if found is None:
        return "No component of this movie has a time course: there is nothing to decode in time."
    if found.running is not None:
        return f"A recompute (job #{found.running.id}) is running; job #{found.job.id} starts when it ends."
    return f"Recompute job #{found.job.id} is starting."


def recompute_panel(slug: str) -> list:
    """The panel with the state of the movie's recomputes, and the interval that refreshes it."""
    content, active = recompute_status(slug)
    return [
        html.Div(content, id="annot-recompute"),
        dcc.Interval(id="annot-recompute-poll", interval=RECOMPUTE_POLL_MS, disabled=not active),
    ]


def bad_lines_alert(exc: AnnotationError) -> Any:
    """A refused events file with bad lines: every other problem, the bad lines (the first
    :data:`MAX_LISTED_BAD_LINES`, the rest counted), and what the curator can do."""
    others = exc.problems[:-1]  # the bad lines are the last problem (pipeline.temporal.annotations)
    listed = [html.Li(str(line)) for line in exc.bad_lines[:MAX_LISTED_BAD_LINES]]
    if exc.n_bad > len(listed):
        listed.append(html.Li(f"and {exc.n_bad - len(listed):,} more"))
    lines = "1 line" if exc.n_bad == 1 else f"{exc.n_bad:,} lines"
    return dbc.Alert(
        [
            html.Ul([html.Li(p) for p in others], className="mb-2") if others else None,
            html.Strong(f"{lines} of the events file cannot be read, so nothing was added:"),
            html.Ul(listed, className="mb-2 small", id="annot-bad-lines"),
            html.Div(
                f"The other {exc.n_valid:,} events are valid. Fix the file and add it again, or import the valid "
                "events with the bad lines skipped.",
                className="small",
            ),
        ],
        color="danger",
        className="mt-3",
    )


def skip_button(exc: AnnotationError | None) -> tuple[Any, dict]:
    """The label and style of the button that adds the set again with its bad lines skipped."""
    if exc is None or not exc.n_valid:
        return "", HIDDEN
    return f"Import the {exc.n_valid:,} valid events, skipping {exc.n_bad:,} bad line(s)", {}


def skipped_note(annotation: AnnotationSet, filename: str) -> list:
    """The lines left out of an added set, for the message after it."""
    skipped = [str(line) for line in getattr(annotation, "skipped_lines", [])[:MAX_LISTED_BAD_LINES]]
    n = getattr(annotation, "n_skipped", 0)
    if not n:
        return []
    if n > len(skipped):
        skipped.append(f"and {n - len(skipped):,} more")
    return [
        html.Div(f"Skipped {n:,} bad line(s) of {filename}:", className="mt-2"),
        html.Ul([html.Li(line) for line in skipped], className="mb-0 small", id="annot-skipped-lines"),
    ]


def _decode_upload(contents: Any) -> bytes | None:
    """The bytes of a dcc.Upload value ("data:<type>;base64,<data>"), or None."""
    if not isinstance(contents, str) or "," not in contents:
        return None
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        return None
