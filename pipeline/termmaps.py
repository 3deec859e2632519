"""Rebuilding merged Movie x Term maps (and each term's across-movies map) from the current components.

A merge always rebuilds the whole map from the components that are decoded to the term right now, so running it
again is harmless. Only components of public collections are merged: a merged map is shown to everyone.
"""
from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.maps import local_copy, termmap_key
from pipeline.merge import merge_files, resolve_backend
from store.models import Collection, Component, Movie, ReferenceSet, Term, TermMap
from store.storage import get_storage


def _merge_to_storage(keys: list[str], out_key: str, backend: str) -> None:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="incdb-merge-") as tmp:
        paths = [stack.enter_context(local_copy(k)) for k in keys]
        out = Path(tmp) / "merged.nii.gz"
        merge_files(out, paths, backend=backend)
        get_storage().put_file(out_key, out)


def rebuild_term_maps(session: Session, reference: ReferenceSet, term_ids: Iterable[int] | None = None,
                      backend: str | None = None) -> int:
    """Rebuild the merged maps of the given terms (all terms of the reference when None). Returns maps written."""
    backend = resolve_backend(backend)
    if term_ids is None:
        term_ids = session.scalars(select(Term.id).where(Term.reference_set_id == reference.id)).all()
    term_ids = sorted(set(term_ids))
    written = 0
    for term_id in term_ids:
        term = session.get(Term, term_id)
        if term is None or term.reference_set_id != reference.id:
            continue
        rows = session.execute(
            select(Component.storage_key, Collection.movie_id)
            .join(Collection, Component.collection_id == Collection.id)
            .where(Component.best_term_id == term_id, Collection.visibility == "public")
            .order_by(Component.uuid)
        ).all()
        by_movie: dict[int | None, list[str]] = defaultdict(list)
        for key, movie_id in rows:
            by_movie[movie_id].append(key)
            by_movie[None].append(key)
        existing = {tm.movie_id: tm for tm in session.scalars(select(TermMap).where(TermMap.term_id == term_id))}
        for movie_id, tm in existing.items():
            if movie_id not in by_movie:
                get_storage().delete(tm.storage_key)
                session.delete(tm)
        for movie_id, keys in by_movie.items():
            movie_slug = session.get(Movie, movie_id).slug if movie_id is not None else None
            out_key = termmap_key(reference.id, term.slug, movie_slug)
            _merge_to_storage(keys, out_key, backend)
            tm = existing.get(movie_id)
            if tm is None:
                tm = TermMap(movie_id=movie_id, term_id=term_id, reference_set_id=reference.id, storage_key=out_key)
                session.add(tm)
            tm.storage_key = out_key
            tm.n_components = len(keys)
            written += 1
        session.flush()
    return written


def drop_term_maps_of_other_references(session: Session, reference: ReferenceSet) -> None:
    for tm in session.scalars(select(TermMap).where(TermMap.reference_set_id != reference.id)):
        get_storage().delete(tm.storage_key)
    session.execute(delete(TermMap).where(TermMap.reference_set_id != reference.id))
