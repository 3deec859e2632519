"""Read queries of the curator pages: the collections a curator may edit with their latest jobs, uploads and
components. Same rules as everything else: ``store.access.editable_collections`` decides what may be listed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.access import editable_collections
from store.models import Collection, Component, Job, Movie, Term, Upload, User


def latest_jobs(session: Session, collection_ids: list[int]) -> dict[int, Job]:
    """The newest job of each collection."""
    if not collection_ids:
        return {}
    newest = (
        select(Job.collection_id, func.max(Job.id).label("id"))
        .where(Job.collection_id.in_(collection_ids))
        .group_by(Job.collection_id)
        .subquery()
    )
    return {j.collection_id: j for j in session.scalars(select(Job).join(newest, Job.id == newest.c.id))}


def collection_rows(session: Session, viewer: Any, everyone: bool = False) -> list[dict[str, Any]]:
    """Collections the viewer may edit: their own; with ``everyone``, all that ``editable_collections`` allows
    (every collection, for an admin). Settle stalled jobs first (``pipeline.jobs.lifecycle.settle_stalled_jobs``), so
    that a job whose process died is not shown running."""
    where = editable_collections(viewer)
    if not everyone and viewer is not None:
        where = Collection.owner_id == viewer.id
    uploads = (
        select(Upload.collection_id, func.count(Upload.id).label("n"), func.max(Upload.created).label("last"))
        .group_by(Upload.collection_id)
        .subquery()
    )
    rows = session.execute(
        select(Collection, Movie.title, Movie.slug, User.email, uploads.c.n, uploads.c.last)
        .join(Movie, Collection.movie_id == Movie.id)
        .join(User, Collection.owner_id == User.id)
        .outerjoin(uploads, uploads.c.collection_id == Collection.id)
        .where(where)
        .order_by(Collection.updated.desc(), Collection.id.desc())
    ).all()
    ids = [r[0].id for r in rows]
    jobs = latest_jobs(session, ids)
    n_comp: dict[int, int] = {}
    warned: dict[int, int] = {}
    if ids:  # QC warnings are a JSON list: counted here rather than in dialect-specific SQL
        for cid, qc in session.execute(
            select(Component.collection_id, Component.qc_warnings).where(Component.collection_id.in_(ids))
        ):
            n_comp[cid] = n_comp.get(cid, 0) + 1
            warned[cid] = warned.get(cid, 0) + (1 if qc else 0)
    out = []
    for c, movie, movie_slug, owner, n_up, last_upload in rows:
        job = jobs.get(c.id)
        out.append(
            {
                "id": c.id,
                "slug": c.slug,
                "name": c.name,
                "movie": movie,
                "movie_slug": movie_slug,
                "owner": owner,
                "visibility": c.visibility,
                "status": c.status,
                "components": n_comp.get(c.id, 0),
                "uploads": n_up or 0,
                "warned": warned.get(c.id, 0),
                "is_demo": c.is_demo,
                "unprocessed": _unprocessed(last_upload, job),
                "job": job.summary() if job else None,
            }
        )
    return out


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _unprocessed(last_upload: datetime | None, job: Job | None) -> bool:
    """Files uploaded after the start of the latest processing (or never processed)."""
    if last_upload is None:
        return False
    if job is None or job.kind != "ingest" or job.started is None:
        return True
    return _aware(last_upload) > _aware(job.started)


def collection_components(session: Session, collection_id: int) -> list[tuple]:
    """(uuid, source file, volume, best term, best r, QC warnings) of a collection's components, in file order."""
    return session.execute(
        select(
            Component.uuid,
            Component.source_file,
            Component.volume_index,
            Term.name,
            Component.best_r,
            Component.qc_warnings,
        )
        .outerjoin(Term, Component.best_term_id == Term.id)
        .where(Component.collection_id == collection_id)
        .order_by(Component.source_file, Component.volume_index)
    ).all()


def collection_uploads(session: Session, collection_id: int) -> list[Upload]:
    return list(session.scalars(select(Upload).where(Upload.collection_id == collection_id).order_by(Upload.id)))


def latest_job(session: Session, collection_id: int) -> Job | None:
    return session.scalar(select(Job).where(Job.collection_id == collection_id).order_by(Job.id.desc()))
