"""Rebuilding merged Movie x Term maps (and each term's across-movies map) from the current components.

A merge always rebuilds the whole map from the components that are decoded to the term right now, so running it
again is harmless. Only components of public collections are merged: a merged map is shown to everyone.

A merged map's storage key carries a digest of the components it merges. A TermMap row therefore always points at
a complete file that matches its component count: the new file is written under a new key, the row switches to it
in the transaction, and the old file is deleted only after the commit (or the new one after a rollback). An
unchanged map is not merged again.

A term's across-movies map can merge a large share of the catalogue, so with the numpy backend it is kept by a
running sum: next to a map of at least :data:`RUNNING_SUM_MIN` components a float64 sum of its inputs is stored
(:func:`sum_key`), and the next rebuild adds the maps of the components that joined and subtracts those that left,
reading only those; the cost of an ingest then does not grow with the catalogue. When the sum is missing, or a
left component's map is gone, or most inputs changed, the map is merged from scratch (streamed, one map at a time).
A sum kept this way can differ from a fresh one by rounding (float64), far below float32's precision.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import nibabel as nib
import numpy as np
from sqlalchemy import delete, event, select, text
from sqlalchemy.orm import Session

from pipeline.maps.files import load_map, nifti_bytes
from pipeline.maps.grid import to_image
from pipeline.maps.merge import merge_files, resolve_backend
from pipeline.maps.thumbnails import copy_thumbnail, save_thumbnail
from store.artifacts import local_copy, map_and_thumbnail, termmap_key
from store.models import Collection, Component, Movie, ReferenceSet, Term, TermMap
from store.storage import get_storage


def _merge_to_storage(keys: list[str], out_key: str, backend: str) -> None:
    storage = get_storage()
    if len(keys) == 1 and backend == "numpy":
        # The mean of one map is the map: the component's own file (float32 on the grid) is the merged map.
        storage.copy(keys[0], out_key)
        copy_thumbnail(keys[0], out_key)
        return
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="incdb-merge-") as tmp:
        paths = [stack.enter_context(local_copy(k)) for k in keys]
        out = Path(tmp) / "merged.nii.gz"
        merge_files(out, paths, backend=backend)
        get_storage().put_file(out_key, out)
        save_thumbnail(out_key, nib.load(out).get_fdata(dtype=np.float32))


RUNNING_SUM_MIN = 64  # components: below this a merge from scratch is cheap, and no sum is stored


def sum_key(map_key: str) -> str:
    """Key of the running sum kept next to the merged map ``map_key`` (an ``.npz``: ``total`` float64, ``keys``
    and ``counts`` of the component maps summed)."""
    return map_key + ".sum.npz"


def _finite(key: str) -> np.ndarray:
    return np.nan_to_num(load_map(key).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _load_sum(map_key: str) -> tuple[np.ndarray, Counter] | None:
    storage = get_storage()
    key = sum_key(map_key)
    if not storage.exists(key):
        return None
    with np.load(io.BytesIO(storage.read_bytes(key)), allow_pickle=False) as f:
        return f["total"], Counter(dict(zip(f["keys"].tolist(), f["counts"].tolist())))


def _running_mean(keys: list[str], out_key: str, previous_key: str | None) -> bool:
    """Write the mean of ``keys`` (numpy semantics of :func:`pipeline.maps.merge.mean_of_maps`) at ``out_key`` with its
    running sum; returns whether a sum was written."""
    storage = get_storage()
    want = Counter(keys)
    total = None
    state = _load_sum(previous_key) if previous_key else None
    if state is not None:
        total, have = state
        added, removed = want - have, have - want
        if sum(added.values()) + sum(removed.values()) >= len(keys) or not all(storage.exists(k) for k in removed):
            total = None
        else:
            for key, n in added.items():
                total += n * _finite(key)
            for key, n in removed.items():
                total -= n * _finite(key)
    if total is None:
        for key, n in want.items():  # streamed: one map in memory at a time, each distinct map read once
            data = n * _finite(key)
            total = data if total is None else total + data
    mean = (total / len(keys)).astype(np.float32)
    storage.put_bytes(out_key, nifti_bytes(to_image(mean)))
    save_thumbnail(out_key, mean)
    if len(keys) < RUNNING_SUM_MIN:
        return False
    buffer = io.BytesIO()
    names = sorted(want)
    np.savez(buffer, total=total, keys=np.array(names), counts=np.array([want[k] for k in names]))
    storage.put_bytes(sum_key(out_key), buffer.getvalue())
    return True


def _after_transaction(session: Session, on_commit: list[str], on_rollback: list[str]) -> None:
    """Delete maps (with their thumbnails) once the transaction's outcome is known."""
    storage = get_storage()

    def committed(_session) -> None:
        for key in map_and_thumbnail(on_commit):
            storage.delete(key)

    def rolled_back(_session, _previous_transaction) -> None:
        for key in map_and_thumbnail(on_rollback):
            storage.delete(key)

    event.listen(session, "after_commit", committed, once=True)
    event.listen(session, "after_soft_rollback", rolled_back, once=True)


MERGE_LOCK_ID = 7_240_117  # any constant: names the advisory lock that serialises merged-map rebuilds


def _lock_merges(session: Session) -> None:
    """Serialise rebuilds across processes until this transaction ends.

    Without it, two workers finishing two collections at once can each merge the components they saw, and the
    one that read earlier could commit last, leaving a map without the other collection's components.
    PostgreSQL: a transaction-scoped advisory lock. SQLite: take the database write lock now (a no-op UPDATE),
    before the reads below, so they see every committed component.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MERGE_LOCK_ID})
    else:
        session.execute(text("UPDATE reference_sets SET active = active WHERE 1 = 0"))


def rebuild_term_maps(
    session: Session,
    reference: ReferenceSet,
    term_ids: Iterable[int] | None = None,
    backend: str | None = None,
    movie_ids: Iterable[int] | None = None,
) -> int:
    """Rebuild the merged maps of the given terms (all terms of the reference when None). Returns maps written.

    For every term, one map per movie with public components decoded to it, plus one across all movies; maps
    whose movie has no such component any more are removed. The rows change in the caller's transaction, which
    holds the merge lock until it ends; replaced files are deleted after the commit, new files after a rollback,
    so the caller must commit or roll back.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    reference : ReferenceSet
        The set whose terms are merged.
    term_ids : iterable of int or None
        Ids of the terms to rebuild (repeats and ids of other sets are ignored); None means every term of
        ``reference``.
    backend : str or None
        Merge backend, as for :func:`pipeline.maps.merge.resolve_backend`; None means the configured one.
    movie_ids : iterable of int or None
        Only these movies' maps of the terms (and the across-movies map) are rebuilt: the movies whose components
        changed. None means every movie (a full rebuild).

    Returns
    -------
    int
        Number of merged map files written (unchanged maps are not counted).

    Raises
    ------
    ValueError
        When the backend name is unknown, or a merge fails on its inputs (:func:`pipeline.maps.merge.merge_files`).
    RuntimeError
        When the ``afni`` backend is asked for without ``3dmerge`` on PATH.
    """
    backend = resolve_backend(backend)
    _lock_merges(session)
    if term_ids is None:
        term_ids = session.scalars(select(Term.id).where(Term.reference_set_id == reference.id)).all()
    term_ids = sorted(set(term_ids))
    only = None if movie_ids is None else {None, *movie_ids}
    written: list[str] = []
    stale: list[str] = []
    # Registered first: the lists fill as the loop goes, and a failure midway must still clean up after itself.
    _after_transaction(session, stale, written)
    merged: dict[tuple[str, ...], str] = {}
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
        if only is not None:
            existing = {m: tm for m, tm in existing.items() if m in only}
            by_movie = {m: keys for m, keys in by_movie.items() if m in only}
        for movie_id, tm in existing.items():
            if movie_id not in by_movie:
                stale += [tm.storage_key, sum_key(tm.storage_key)]
                session.delete(tm)
        for movie_id, keys in by_movie.items():
            movie_slug = session.get(Movie, movie_id).slug if movie_id is not None else None
            digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
            out_key = termmap_key(reference.id, term.slug, movie_slug, digest)
            tm = existing.get(movie_id)
            if tm is not None and tm.storage_key == out_key and get_storage().exists(out_key):
                continue  # same components as the stored map: nothing to merge
            written.append(out_key)
            same = merged.get(tuple(keys))
            if movie_id is None and backend == "numpy" and len(keys) >= RUNNING_SUM_MIN:
                if _running_mean(keys, out_key, tm.storage_key if tm is not None else None):
                    written.append(sum_key(out_key))
            elif same is not None:  # e.g. a term found in one movie only: its all-movies map is the movie's map
                get_storage().copy(same, out_key)
                copy_thumbnail(same, out_key)
            else:
                _merge_to_storage(keys, out_key, backend)
                merged[tuple(keys)] = out_key
            if tm is None:
                tm = TermMap(movie_id=movie_id, term_id=term_id, reference_set_id=reference.id, storage_key=out_key)
                session.add(tm)
            elif tm.storage_key != out_key:
                stale += [tm.storage_key, sum_key(tm.storage_key)]
            tm.storage_key = out_key
            tm.n_components = len(keys)
        session.flush()
    return len(written)


def drop_term_maps_of_other_references(session: Session, reference: ReferenceSet) -> None:
    """Delete the merged maps of every reference set but ``reference``; their files go after the commit.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session; the caller commits.
    reference : ReferenceSet
        The set whose maps are kept.
    """
    stale = list(session.scalars(select(TermMap.storage_key).where(TermMap.reference_set_id != reference.id)))
    session.execute(delete(TermMap).where(TermMap.reference_set_id != reference.id))
    _after_transaction(session, stale, [])
