"""What pages and the API show of synchrony, read from the rows and artifacts of ``pipeline.synchrony.jobs``.

Every function takes the viewer and filters through the one visibility rule (``store.access``, through
``store.queries``): a component, collection or movie the viewer may not see gives None, which the routes answer
with 404. Values the data could not give are None (JSON null), never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.synchrony.jobs import MIN_SUBJECTS, ONE_SUBJECT_NOTE
from pipeline.temporal.timing import TimeCourseError, Timing
from store import queries
from store.access import visible_collections
from store.artifacts import load_vector
from store.models import (
    AnnotationSet,
    Collection,
    CollectionSynchrony,
    Component,
    ComponentISC,
    Movie,
    SynchronyLabel,
    SynchronyMoment,
    Term,
)

MAX_LABEL_ROWS = 1000
MAX_MOMENTS = 1000
DIGITS = 6


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return round(number, DIGITS) if math.isfinite(number) else None


def _numbers(values: Any) -> list[float | None]:
    return [_num(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _missing_note(collection: Collection, has_course: bool) -> str:
    """Why a component has no ISC row."""
    if not has_course or not collection.timing:
        return "No ISC: this component has no time courses with a timing (see the collection's Time section)."
    try:
        subjects = Timing.from_dict(collection.timing).subjects
    except TimeCourseError as exc:
        return f"No ISC: {exc}"
    if subjects < MIN_SUBJECTS:
        return ONE_SUBJECT_NOTE
    return "ISC has not been computed for this collection yet (`python -m pipeline isc`)."


def component_isc(session: Session, user: Any, uuid: str) -> dict[str, Any] | None:
    """The ISC of a component the viewer may see, or None.

    Returns
    -------
    dict or None
        ``{"uuid", "isc", "isc_pairwise", "p", "q", "n_subjects", "n_resamples", "note", "subjects": [LOO r per
        subject], "window_s", "movie_time_s": [...], "windowed": [...]}``; the windowed ISC is the curve of
        leave-one-out ISC in windows of ``window_s`` seconds, at the movie time of each window's centre.
    """
    comp = queries.get_visible_component(session, user, uuid)
    if comp is None:
        return None
    row = session.scalar(select(ComponentISC).where(ComponentISC.component_id == comp.id))
    out: dict[str, Any] = {
        "uuid": comp.uuid,
        "isc": None,
        "isc_pairwise": None,
        "p": None,
        "q": None,
        "n_subjects": 0,
        "n_resamples": 0,
        "note": "",
        "subjects": [],
        "window_s": None,
        "movie_time_s": [],
        "windowed": [],
    }
    if row is None:
        out["note"] = _missing_note(comp.collection, comp.timecourse_id is not None)
        return out
    out.update(
        isc=_num(row.isc),
        isc_pairwise=_num(row.isc_pairwise),
        p=_num(row.p),
        q=_num(row.q),
        n_subjects=row.n_subjects,
        n_resamples=row.n_resamples,
        note=row.note,
        subjects=[_num(v) for v in (row.subjects or [])],
    )
    summary = session.get(CollectionSynchrony, comp.collection_id)
    if summary is not None and summary.windowed_key and row.column is not None:
        table = load_vector(summary.windowed_key)
        if 0 <= row.column < table.shape[1] - 1:
            out["window_s"] = _num(summary.window_s)
            out["movie_time_s"] = _numbers(table[:, 0])
            out["windowed"] = _numbers(table[:, 1 + row.column])
    return out


def collection_isfc(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    """The ISFC matrix of a collection the viewer may see, or None.

    Returns
    -------
    dict or None
        ``{"collection", "components": [uuid, ...], "best_terms": [...], "n_subjects", "note", "matrix": [[r,
        ...], ...]}`` with rows and columns in the order of ``components``; empty lists before ISC is computed.
    """
    collection = queries.get_visible_collection(session, user, slug)
    if collection is None:
        return None
    summary = session.get(CollectionSynchrony, collection.id)
    out: dict[str, Any] = {
        "collection": collection.slug,
        "components": [],
        "best_terms": [],
        "n_subjects": 0,
        "note": "",
        "matrix": [],
    }
    if summary is None or not summary.isfc_key:
        out["note"] = summary.note if summary is not None else _missing_note(collection, True)
        return out
    matrix = np.asarray(load_vector(summary.isfc_key), dtype=np.float64)
    uuids = list(summary.components)
    terms = dict(
        session.execute(
            select(Component.uuid, Term.name)
            .outerjoin(Term, Component.best_term_id == Term.id)
            .where(Component.collection_id == collection.id)
        ).all()
    )
    out.update(
        components=uuids,
        best_terms=[terms.get(u) for u in uuids],
        n_subjects=summary.n_subjects,
        note=summary.note,
        matrix=[_numbers(row) for row in matrix],
    )
    return out


def movie_synchrony(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    """Moments of synchrony and ISC by annotation label of a movie's collections the viewer may see, or None.

    Returns
    -------
    dict or None
        ``{"movie", "movie_slug", "moments": [{"collection", "time_s", "value", "labels"}], "by_label":
        [{"collection", "component", "best_term", "annotation", "label", "inside", "outside", "p"}]}``; moments by
        movie time, by-label rows by p then by the rise of ISC (at most :data:`MAX_LABEL_ROWS`).
    """
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    visible = visible_collections(user)
    moments = session.execute(
        select(Collection.slug, SynchronyMoment.time_s, SynchronyMoment.value, SynchronyMoment.labels)
        .join(Collection, Collection.id == SynchronyMoment.collection_id)
        .where(SynchronyMoment.movie_id == movie.id, visible)
        .order_by(SynchronyMoment.time_s, Collection.slug)
        .limit(MAX_MOMENTS)
    ).all()
    labels = session.execute(
        select(
            Collection.slug,
            Component.uuid,
            Term.name,
            AnnotationSet.name,
            SynchronyLabel.label,
            SynchronyLabel.inside,
            SynchronyLabel.outside,
            SynchronyLabel.p,
        )
        .join(Collection, Collection.id == SynchronyLabel.collection_id)
        .join(Component, Component.id == SynchronyLabel.component_id)
        .outerjoin(Term, Component.best_term_id == Term.id)
        .join(AnnotationSet, AnnotationSet.id == SynchronyLabel.set_id)
        .where(Collection.movie_id == movie.id, visible)
        .order_by(SynchronyLabel.p, (SynchronyLabel.outside - SynchronyLabel.inside), SynchronyLabel.id)
        .limit(MAX_LABEL_ROWS)
    ).all()
    return {
        "movie": movie.title,
        "movie_slug": movie.slug,
        "moments": [
            {"collection": c, "time_s": _num(t), "value": _num(v), "labels": list(ls or [])} for c, t, v, ls in moments
        ],
        "by_label": [
            {
                "collection": c,
                "component": u,
                "best_term": term,
                "annotation": a,
                "label": label,
                "inside": _num(i),
                "outside": _num(o),
                "p": _num(p),
            }
            for c, u, term, a, label, i, o, p in labels
        ],
    }


def isc_of_components(session: Session, component_ids: list[int]) -> dict[int, float | None]:
    """Component id -> its ISC for a table column (leave-one-out, else pairwise); ids without a value are left
    out."""
    if not component_ids:
        return {}
    rows = session.execute(
        select(ComponentISC.component_id, ComponentISC.isc, ComponentISC.isc_pairwise).where(
            ComponentISC.component_id.in_(component_ids)
        )
    ).all()
    found = {}
    for comp_id, loo, pairwise in rows:
        value = _num(loo if loo is not None else pairwise)
        if value is not None:
            found[comp_id] = value
    return found


def most_synchronising_movies(session: Session, user: Any, limit: int = 5) -> list[dict[str, Any]]:
    """The movies whose collections (those the viewer may see) have the highest median ISC over their components
    (``CollectionSynchrony.median_isc``, stored by the synchrony job): a movie ranks by its best collection. Two
    grouped queries, whatever the number of components.

    Returns
    -------
    list of dict
        ``{"movie", "movie_slug", "median_isc", "n_components"}``, best first, at most ``limit``;
        ``n_components``: the components with an ISC in the movie's visible collections.
    """
    best = func.max(CollectionSynchrony.median_isc)
    ranked = session.execute(
        select(Movie.id, Movie.title, Movie.slug, best)
        .join(Collection, Collection.movie_id == Movie.id)
        .join(CollectionSynchrony, CollectionSynchrony.collection_id == Collection.id)
        .where(visible_collections(user), CollectionSynchrony.median_isc.is_not(None))
        .group_by(Movie.id, Movie.title, Movie.slug)
        .order_by(best.desc(), Movie.title)
        .limit(limit)
    ).all()
    if not ranked:
        return []
    counts = dict(
        session.execute(
            select(Collection.movie_id, func.count(ComponentISC.component_id))
            .join(Collection, Collection.id == ComponentISC.collection_id)
            .where(
                Collection.movie_id.in_([r[0] for r in ranked]),
                visible_collections(user),
                (ComponentISC.isc.is_not(None)) | (ComponentISC.isc_pairwise.is_not(None)),
            )
            .group_by(Collection.movie_id)
        ).all()
    )
    return [
        {"movie": title, "movie_slug": slug, "median_isc": _num(value), "n_components": int(counts.get(movie_id, 0))}
        for movie_id, title, slug, value in ranked
    ]


def movie_windowed(session: Session, user: Any, slug: str, max_windows: int = 2000) -> list[dict[str, Any]] | None:
    """The windowed ISC of every collection of a movie the viewer may see, for a components x movie-time heatmap
    (the Timeline's synchrony view), or None for a movie the viewer may not see.

    Returns
    -------
    list of dict or None
        Per collection with windowed ISC: ``{"collection", "window_s", "components": [uuid, ...], "best_terms",
        "movie_time_s": [...], "values": [[ISC of each component] per window]}``; at most ``max_windows`` windows
        (every k-th when there are more, so a page stays small).
    """
    movie = queries.get_visible_movie(session, user, slug)
    if movie is None:
        return None
    stored = session.execute(
        select(Collection.id, Collection.slug, CollectionSynchrony.window_s, CollectionSynchrony.components)
        .add_columns(CollectionSynchrony.windowed_key)
        .join(CollectionSynchrony, CollectionSynchrony.collection_id == Collection.id)
        .where(
            Collection.movie_id == movie.id, visible_collections(user), CollectionSynchrony.windowed_key.is_not(None)
        )
        .order_by(Collection.id)
    ).all()
    out = []
    for collection_id, collection_slug, window_s, uuids, key in stored:
        table = np.asarray(load_vector(key), dtype=np.float64)
        step = max(1, math.ceil(table.shape[0] / max(1, max_windows)))
        table = table[::step]
        terms = dict(
            session.execute(
                select(Component.uuid, Term.name)
                .outerjoin(Term, Component.best_term_id == Term.id)
                .where(Component.collection_id == collection_id)
            ).all()
        )
        out.append(
            {
                "collection": collection_slug,
                "window_s": _num(window_s),
                "components": list(uuids),
                "best_terms": [terms.get(u) for u in uuids],
                "movie_time_s": _numbers(table[:, 0]),
                "values": [_numbers(row) for row in table[:, 1:]],
            }
        )
    return out
