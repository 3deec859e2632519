"""What each job kind does, and running a job on behalf of the user who asked for it.

``run_job`` dispatches by kind: ``ingest`` (``pipeline.curation.ingest``), ``redecode`` (every component against the
active reference set, then every merged map), ``merge`` (merged maps only), ``temporal`` (a movie's components
against its annotations, ``pipeline.temporal.annotations``) and ``decode`` (a visitor's map,
``pipeline.decoding.visitors``) and ``synchrony`` (a collection's inter-subject correlation,
``pipeline.synchrony.jobs``, also run after an ingest). Each
body runs inside ``pipeline.jobs.lifecycle.running_job``, which owns the Job row's lifecycle. ``run_authorized_job``
is what
background callbacks call: it checks the permission again where the job runs, claims the job (a second delivery of
the same job does not run it again) and turns a cancellation into a clean stop. ``resume_job`` is what a worker
runs for a job re-queued after the worker running it stopped (``pipeline.jobs.lifecycle.settle_stalled_jobs``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from sqlalchemy import select

from pipeline.curation.ingest import Progress, ingest, top_terms, write_decodings
from pipeline.decoding.decode import decode, masked
from pipeline.decoding.reference import load_matrix, require_active_reference
from pipeline.decoding.termmaps import drop_term_maps_of_other_references, rebuild_term_maps
from pipeline.decoding.visitors import decode_job
from pipeline.jobs.lifecycle import (
    JobCancelled,
    JobRefused,
    authorize,
    claim_job,
    fail_job,
    finish_job,
    running_job,
    settle_cancelled_collection,
    update_job,
)
from pipeline.maps.files import load_map
from pipeline.synchrony.jobs import refresh_labels_after, run_after_ingest, synchrony_job
from pipeline.temporal.annotations import temporal_job
from store.artifacts import decodings_key, save_vector
from store.db import session_scope
from store.models import ACTIVE_JOB_STATUSES, FINISHED_JOB_STATUSES, Component, Job, JobStatus, ReferenceSet, utcnow

log = logging.getLogger("incdb.jobs")

REDECODE_BATCH = 64


def run_job(job_id: int, progress: Progress | None = None) -> None:
    """Run the job's body for its kind (the Job row records how it went; exceptions propagate)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        kind = job.kind
    if kind == "ingest":
        ingest(job_id, progress)
        run_after_ingest(job_id)  # ISC of a collection with two or more subjects (pipeline.synchrony.jobs)
    elif kind == "redecode":
        redecode(job_id, progress)
    elif kind == "merge":
        remerge(job_id)
    elif kind == "temporal":
        try:
            temporal_job(job_id)
        finally:  # ISC by annotation label, from the stored windowed ISC: the movie's events changed either way
            refresh_labels_after(job_id)
    elif kind == "decode":
        decode_job(job_id, progress)
    elif kind == "synchrony":
        synchrony_job(job_id)


def redecode(job_id: int, progress: Progress | None = None) -> int:
    """Decode every component against the active reference set, then rebuild every merged map."""
    with running_job(job_id) as run:
        total = _redecode_all(job_id, progress)
        run.message = f"{total} component(s) re-decoded"
    return total


def _redecode_all(job_id: int, progress: Progress | None) -> int:
    with session_scope() as session:
        reference = require_active_reference(session)
        matrix, terms = load_matrix(session, reference)
        term_ids = [t.id for t in terms]
        reference_id = reference.id
        comps = session.execute(
            select(Component.id, Component.uuid, Component.storage_key).order_by(Component.id)
        ).all()
    total = len(comps)
    update_job(job_id, progress_total=total, progress_done=0)
    for start in range(0, total, REDECODE_BATCH):
        batch = comps[start : start + REDECODE_BATCH]
        r_all = decode(masked(np.stack([load_map(key) for _, _, key in batch])), matrix)
        now = utcnow()
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
    """Rebuild every merged map of the active reference set."""
    with running_job(job_id) as run, session_scope() as session:
        written = rebuild_term_maps(session, require_active_reference(session))
        run.message = f"{written} merged map(s) rebuilt"


def run_authorized_job(token: str, user_id: Any, progress: Progress | None = None) -> dict:
    """Run a job given its token, as ``user_id``, and return the Job row's summary.

    Errors are caught and recorded on the Job row (a background callback's exceptions would otherwise be
    swallowed by Dash). Cancellation is cooperative too: the progress callback stops the job once its row says
    cancelled, which also covers pools that cannot kill a running task. A job this call cannot claim
    (``pipeline.jobs.lifecycle.claim_job``: another process runs it, or it waits for its resume message) is not run; the
    row's summary is returned as it stands.

    Raises
    ------
    JobRefused
        The token names no job, the user may not run it, or the job was deleted while it ran.
    """
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.token == str(token or "")))
        authorize(session, job, user_id)
        job_id, collection_id, kind = job.id, job.collection_id, job.kind
        if job.status in FINISHED_JOB_STATUSES:
            return job.summary()
    if not claim_job(job_id):
        log.info("job %s is not run by this message: another process runs it, or it is finished", job_id)
        return _summary(job_id)
    log.info("job %s (%s, collection %s) runs in process %s", job_id, kind, collection_id, os.getpid())
    return _run_claimed(job_id, progress)


def resume_job(job_id: int) -> dict | None:
    """Run a job re-queued after the worker running it stopped (the ``pipeline.jobs.lifecycle.RESUME_TASK`` message).

    The user who started the job is checked again, as for a run from a page; a job this call cannot claim (run or
    finished meanwhile, cancelled, or claimed by a page that started it again) is left alone.

    Returns
    -------
    dict or None
        The Job row's summary when this call ran the job, else None.
    """
    refused = None
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return None
        if job.created_by_id is not None:
            try:
                authorize(session, job, job.created_by_id)
            except JobRefused as exc:
                refused = exc
    if refused is not None:
        fail_job(job_id, refused)
        return None
    if not claim_job(job_id):
        return None
    log.info("job %s resumed in process %s", job_id, os.getpid())
    return _run_claimed(job_id, None)


def _summary(job_id: int) -> dict:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobRefused("The job was deleted while it ran.")
        return job.summary()


def _run_claimed(job_id: int, progress: Progress | None) -> dict:
    """Run a job this process claimed, record how it ended, and return the row's summary."""

    def checked_progress(done: int, total: int) -> None:
        with session_scope() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status == JobStatus.CANCELLED:
            raise JobCancelled()
        if progress:
            progress(done, total)

    try:
        run_job(job_id, checked_progress)
    except JobCancelled:
        log.info("job %s stopped: cancelled", job_id)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        with session_scope() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        if status in ACTIVE_JOB_STATUSES:  # it failed before its body could record it
            fail_job(job_id, exc)
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobRefused("The job was deleted while it ran.")
        if job.status == JobStatus.CANCELLED:
            settle_cancelled_collection(session, job)
        elif job.status in ACTIVE_JOB_STATUSES:  # run_job returned without finishing the row
            finish_job(job_id)
            session.refresh(job)
        return job.summary()
