"""Storage sweep: remove files that no row refers to any more.

Rows and files are kept in step by every job (files of removed rows go after the commit, files of rows that never
committed go on failure), but a process killed between writing a file and committing its row leaves the file
behind: a component map of a run killed before it stored its components, an upload whose row never landed, a
temporary file of a write cut short. Re-running the job reuses the same keys, so the leftovers are only wasted
space; this sweep reclaims it. Run it from a daily timer (``deploy/incdb-sweep.timer``) or by hand.

A file is only removed when it is older than the grace period *and* older than the start of every running job, so
a job that is writing files right now never loses one to the sweep.

Visitors' decoded maps (``pipeline.decoding.visitors``) are removed here too once they expire
(``INCDB_DECODE_RETENTION_DAYS``): their rows and their folders, whatever the grace period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from pipeline.curation.resumable_uploads import remove_stale_partials
from pipeline.decoding.termmaps import sum_key
from pipeline.decoding.visitors import live_prefixes, sweep_expired
from pipeline.jobs.lifecycle import settle_stalled_jobs
from store.artifacts import similarity_vector_key, thumbnail_key
from store.db import session_scope
from store.models import (
    CollectionSynchrony,
    Component,
    Job,
    JobStatus,
    SimilarityBasis,
    Term,
    TermMap,
    Upload,
)
from store.storage import get_storage

# Folders whose every object belongs to a row. Anything else in storage (e.g. ``check/`` probes) is left alone.
SWEPT_PREFIXES = (
    "components/",
    "decodings/",
    "termmaps/",
    "uploads/",
    "reference/",
    "similar/",
    "decode/",
    "synchrony/",
)
DEFAULT_GRACE = timedelta(hours=24)


@dataclass
class SweepResult:
    removed: list[str] = field(default_factory=list)
    kept_recent: int = 0  # unreferenced, but too young to be sure no job is about to commit its row
    cutoff: datetime | None = None


def referenced_keys(session) -> set[str]:
    """Every storage key a row refers to (component maps and decodings, merged maps, term maps, uploads), and the
    thumbnails of the maps.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session to read the rows in.

    Returns
    -------
    set of str
        The non-empty keys.
    """
    keys: set[str] = set()
    for column in (
        Component.storage_key,
        Component.decodings_key,
        TermMap.storage_key,
        Term.storage_key,
        Upload.storage_key,
        SimilarityBasis.storage_key,
        CollectionSynchrony.isfc_key,
        CollectionSynchrony.windowed_key,
    ):
        keys.update(k for k in session.scalars(select(column)) if k)
    keys.update(sum_key(k) for k in session.scalars(select(TermMap.storage_key)) if k)  # running sums
    for column in (Component.storage_key, TermMap.storage_key, Term.storage_key):  # maps: their thumbnails too
        keys.update(thumbnail_key(k) for k in session.scalars(select(column)) if k)
    keys.update(similarity_vector_key(u) for u in session.scalars(select(Component.uuid)))
    return keys


def sweep_storage(grace: timedelta = DEFAULT_GRACE, dry_run: bool = False, now: datetime | None = None) -> SweepResult:
    """Remove unreferenced files older than ``grace`` and than every running job's start.

    Only keys under :data:`SWEPT_PREFIXES` are considered. Running jobs without a heartbeat are settled first
    (:func:`pipeline.jobs.lifecycle.settle_stalled_jobs`, committed also on a dry run), so a dead job's start does not
    hold the cutoff back; settling also starts a movie's waiting recompute that nothing runs (without a broker in a
    process forked from this one, which the command waits for before it exits). With local storage, temporary files
    of writes killed midway are removed too.

    Parameters
    ----------
    grace : datetime.timedelta
        Minimum age of a removed file.
    dry_run : bool
        True: remove nothing, only report what would be removed.
    now : datetime.datetime or None
        The current time, timezone-aware; None means now (UTC).

    Returns
    -------
    SweepResult
        ``removed``: keys removed (or that would be, on a dry run), temporaries as
        ``"<path> (unfinished write)"``; ``kept_recent``: unreferenced objects younger than the cutoff;
        ``cutoff``: the modification time a file had to be older than.
    """
    now = now or datetime.now(UTC)
    storage = get_storage()
    with session_scope() as session:
        settle_stalled_jobs(session, now=now)
        oldest_running = session.scalar(select(func.min(Job.started)).where(Job.status == JobStatus.RUNNING))
        # Listing runs after the rows are read: a file written from now on is younger than the cutoff anyway.
        referenced = referenced_keys(session)
    expired = sweep_expired(now, dry_run=dry_run)
    with session_scope() as session:
        kept_results = live_prefixes(session) - set(expired)
    cutoff = now - grace
    if oldest_running is not None:
        oldest_running = oldest_running if oldest_running.tzinfo else oldest_running.replace(tzinfo=UTC)
        cutoff = min(cutoff, oldest_running)
    result = SweepResult(cutoff=cutoff)
    result.removed += [f"{prefix} (expired decoding)" for prefix in expired]
    for prefix in SWEPT_PREFIXES:
        for key, modified in list(storage.list(prefix)):
            if key in referenced or "/".join(key.split("/")[:2]) + "/" in kept_results:
                continue
            if modified >= cutoff:
                result.kept_recent += 1
                continue
            result.removed.append(key)
            if not dry_run:
                storage.delete(key)
    stale_temporaries = getattr(storage, "stale_temporaries", None)
    if stale_temporaries is not None:
        for path in stale_temporaries(cutoff):
            result.removed.append(f"{path.relative_to(storage.root).as_posix()} (unfinished write)")
            if not dry_run:
                path.unlink(missing_ok=True)
    # Resumable uploads nobody finished, past INCDB_UPLOAD_RESUME_HOURS (local folders of the web machines).
    result.removed += [f"{p} (stale resumable upload)" for p in remove_stale_partials(dry_run=dry_run)]
    return result
