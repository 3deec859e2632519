"""Background jobs: creation, dispatch by kind, and the re-decode job.

The Job row is the truth about a run. A job function opens its own sessions (``session_scope``), so it can run in
a web process, a forked diskcache worker or a Celery worker alike; it receives only the job's id.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.decode import decode, masked
from pipeline.heartbeat import heartbeat
from pipeline.ingest import Progress, ingest, top_terms, update_job, write_decodings
from pipeline.maps import decodings_key, load_map, save_vector
from pipeline.reference import load_matrix, require_active_reference
from pipeline.termmaps import drop_term_maps_of_other_references, rebuild_term_maps
from store.db import session_scope
from store.models import JOB_KINDS, Component, Job, ReferenceSet

REDECODE_BATCH = 64


def create_job(session: Session, kind: str, collection_id: int | None = None, user_id: int | None = None) -> Job:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job(kind=kind, collection_id=collection_id, created_by_id=user_id, status="queued")
    session.add(job)
    session.flush()
    return job


def run_job(job_id: int, progress: Progress | None = None) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        kind = job.kind
    if kind == "ingest":
        ingest(job_id, progress)
    elif kind == "redecode":
        redecode(job_id, progress)
    elif kind == "merge":
        remerge(job_id)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def redecode(job_id: int, progress: Progress | None = None) -> int:
    """Decode every component against the active reference set, then rebuild every merged map."""
    update_job(job_id, status="running", started=_now(), error="")
    try:
        with heartbeat(job_id):
            total = _redecode_all(job_id, progress)
    except Exception as exc:
        update_job(job_id, status="failed", error=str(exc), finished=_now())
        raise
    # error="": a run that outlived a long lock wait may have been taken for dead meanwhile (pipeline.heartbeat).
    update_job(job_id, status="succeeded", message=f"{total} component(s) re-decoded", error="", finished=_now())
    return total


def _redecode_all(job_id: int, progress: Progress | None) -> int:
    with session_scope() as session:
        reference = require_active_reference(session)
        matrix, terms = load_matrix(session, reference)
        term_ids = [t.id for t in terms]
        reference_id = reference.id
        comps = session.execute(select(Component.id, Component.uuid, Component.storage_key)
                                .order_by(Component.id)).all()
    total = len(comps)
    update_job(job_id, progress_total=total, progress_done=0)
    for start in range(0, total, REDECODE_BATCH):
        batch = comps[start:start + REDECODE_BATCH]
        r_all = decode(masked(np.stack([load_map(key) for _, _, key in batch])), matrix)
        now = _now()
        with session_scope() as session:
            decoded = []
            for (comp_id, cuuid, _), r in zip(batch, r_all):
                order = top_terms(r)
                save_vector(decodings_key(cuuid), r)
                comp = session.get(Component, comp_id)
                comp.best_term_id, comp.best_r = term_ids[order[0]], float(r[order[0]])
                comp.decodings_key, comp.decoded_at = decodings_key(cuuid), now
                decoded.append((comp_id, r, order))
            write_decodings(session, decoded, term_ids)
        done = min(start + REDECODE_BATCH, total)
        update_job(job_id, progress_done=done)
        if progress:
            progress(done, total)
    with session_scope() as session:
        reference = session.get(ReferenceSet, reference_id)
        drop_term_maps_of_other_references(session, reference)
        rebuild_term_maps(session, reference)
    return total


def remerge(job_id: int) -> None:
    update_job(job_id, status="running", started=_now(), error="")
    try:
        with heartbeat(job_id), session_scope() as session:
            written = rebuild_term_maps(session, require_active_reference(session))
    except Exception as exc:
        update_job(job_id, status="failed", error=str(exc), finished=_now())
        raise
    update_job(job_id, status="succeeded", message=f"{written} merged map(s) rebuilt", error="", finished=_now())
