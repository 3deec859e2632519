"""Visitors' maps on the public decoder (``/decode``, ``POST /api/decode``; DESIGN section 15).

A visitor's file goes through the curator upload's checks (``pipeline.curation.uploads``: header first, the whole gzip
stream, the same messages), is resampled onto the grid like a component and decoded with the same GEMM code
against the active reference set (or a chosen one), over the brain mask or over the map's own non-zero voxels.
The most similar catalogue components come from ``pipeline.decoding.similar``. Nothing joins the catalogue: the result
is
a ``DecodeResult`` row (reachable only through its unguessable token) and files under ``decode/<token>/`` (one
map per volume on the grid, and ``result.json``), removed after ``INCDB_DECODE_RETENTION_DAYS`` by
``python -m pipeline sweep`` or at once by its owner.

Limits, per anonymous client address (a keyed hash of it is all that is stored) or per account: the file's size,
its volumes and files per hour (``store.config``). Small maps are decoded in the request; a file with more volumes
than ``INCDB_DECODE_INLINE_VOLUMES`` runs as a ``decode`` job on the shared job lifecycle (``pipeline.jobs.lifecycle``),
which a Celery worker or a thread of the web process picks up.

Over 500 lines on purpose: acceptance, decoding, results and retention of a visitor's map are one lifecycle on one
row (``DecodeResult``), kept together so that its limits and its privacy rules are read in one place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pipeline.curation.archives import ArchiveError, file_kind
from pipeline.curation.uploads import check_nifti_file
from pipeline.decoding.decode import decode, decode_nonzero, masked
from pipeline.decoding.reference import active_reference, load_matrix
from pipeline.decoding.similar import Match, describe, similar_components, unit_rows
from pipeline.jobs.lifecycle import create_job, running_job, settle_stalled_jobs, update_job
from pipeline.maps.files import save_map
from pipeline.maps.nifti import NiftiError, check_nifti, quality_check, resample_to_grid
from store.access import authenticated as signed_in
from store.artifacts import decode_prefix, local_copy
from store.config import get_settings
from store.db import session_scope
from store.models import DECODE_MASKS, DecodeResult, Job, JobStatus, ReferenceSet, User, utcnow
from store.storage import get_storage
from store.units import human_bytes

SIMILAR_KEPT = 30  # similar components stored per volume (20 are shown; the rest covers viewers who see less)
SIMILAR_SHOWN = 20
VOLUME_CHUNK = 16  # volumes resampled and decoded at a time
TOKEN_BYTES = 24  # 32 URL-safe characters: unguessable


class DecodeRefused(Exception):
    """A request the decoder does not take; ``status`` is the HTTP status, ``message`` says why and what to do."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True)
class Limits:
    """What one sender may decode: bytes per file, volumes per file, files per hour, and bytes of voxel data a
    file's header may describe (0: no limit)."""

    max_bytes: int
    max_volumes: int
    per_hour: int
    who: str  # "this address" or "your account", for messages
    max_data_bytes: int = 0


def limits_for(user: Any) -> Limits:
    """The limits of a signed-in account, or of an anonymous client address (``user`` None or anonymous)."""
    settings = get_settings()
    if signed_in(user) is not None:
        return Limits(
            settings.decode_max_bytes_account,
            settings.decode_max_volumes_account,
            settings.decode_per_hour_account,
            "your account",
            settings.decode_max_data_bytes_account,
        )
    return Limits(
        settings.decode_max_bytes_anonymous,
        settings.decode_max_volumes_anonymous,
        settings.decode_per_hour_anonymous,
        "this address",
        settings.decode_max_data_bytes_anonymous,
    )


def client_hash(address: str) -> str:
    """A keyed hash of a client address: enough to count its requests, useless to find it."""
    return hmac.new(get_settings().secret_key.encode(), str(address).encode(), hashlib.sha256).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def check_rate(session: Session, user: Any, client: str) -> None:
    """Refuse (429) a sender who has sent ``per_hour`` files in the last hour (refused ones count: each cost the
    server a check)."""
    limits = limits_for(user)
    if not limits.per_hour:
        return
    since = utcnow() - timedelta(hours=1)
    u = signed_in(user)
    mine = DecodeResult.owner_id == u.id if u is not None else DecodeResult.client_hash == client
    count, oldest = session.execute(
        select(func.count(DecodeResult.id), func.min(DecodeResult.created)).where(mine, DecodeResult.created > since)
    ).one()
    if count >= limits.per_hour:
        wait = max(60, int((_aware(oldest) + timedelta(hours=1) - utcnow()).total_seconds())) if oldest else 3600
        extra = "" if u is not None else " Signed-in curators may decode more."
        raise DecodeRefused(
            429,
            f"{limits.who.capitalize()} has sent {count} maps to the decoder in the last hour (refused ones count), "
            f"the most it takes ({limits.per_hour} per hour). Try again in about "
            f"{round(wait / 60)} minutes.{extra}",
            retry_after=wait,
        )


def check_size(size: int | None, name: str, user: Any, exceeded: bool = False) -> None:
    """Refuse (413) a file larger than the sender's limit (``size`` None: not known; ``exceeded``: the body
    went past the limit while it arrived)."""
    limits = limits_for(user)
    if exceeded or (size is not None and limits.max_bytes and size > limits.max_bytes):
        extra = "" if signed_in(user) is not None else " Signed-in curators may send larger files."
        shown = f"{name} ({human_bytes(size)})" if size is not None else name
        raise DecodeRefused(
            413,
            f"{shown} is larger than the decoder takes from {limits.who} "
            f"({human_bytes(limits.max_bytes)} per file).{extra}",
        )


def resolve_reference(session: Session, name: str | None) -> ReferenceSet:
    """The reference set called ``name`` (its name or slug), or the active one for an empty name."""
    from store.models import slugify

    name = (name or "").strip()
    if not name:
        reference = active_reference(session)
        if reference is None:
            raise DecodeRefused(503, "No reference set is active yet; try again later.")
        return reference
    if len(name) > 255 or "\x00" in name:
        raise DecodeRefused(400, "No reference set has that name.")
    for reference in session.scalars(select(ReferenceSet).order_by(ReferenceSet.id)):
        if name in (reference.name, slugify(reference.name)):
            return reference
    names = ", ".join(session.scalars(select(ReferenceSet.name).order_by(ReferenceSet.id)))
    raise DecodeRefused(400, f"No reference set is called {name[:80]!r}; choose one of: {names}.")


def check_kind(name: str) -> str:
    """The file ending (``.nii`` or ``.nii.gz``) of a name the decoder takes, else DecodeRefused (415)."""
    try:
        if file_kind(name) == "nifti":
            return _suffix(name)
    except ArchiveError:
        pass
    raise DecodeRefused(
        415,
        f"{name}: unsupported file type; the decoder takes one .nii or .nii.gz map (3D, or "
        "4D: every volume is decoded).",
    )


def check_mask(mask: str | None) -> str:
    mask = (mask or "brain").strip().lower()
    if mask not in DECODE_MASKS:
        raise DecodeRefused(
            400,
            "The mask must be 'brain' (the whole brain mask) or 'nonzero' (only the voxels where the map is not 0).",
        )
    return mask


def _suffix(name: str) -> str:
    return ".nii.gz" if name.lower().endswith(".gz") else ".nii"


@dataclass(frozen=True)
class Accepted:
    token: str
    result_id: int
    volumes: int
    inline: bool
    job_id: int | None


def accept(
    path: Path, name: str, size: int, user: Any, client: str, mask: str | None = None, reference: str | None = None
) -> Accepted:
    """Check a received file and record it for decoding (the decoding itself is :func:`run_decode`).

    Parameters
    ----------
    path : pathlib.Path
        The received file.
    name : str
        The visitor's name for it (checked by ``pipeline.curation.uploads.check_file_name`` already).
    size : int
        Its size in bytes.
    user : Any
        The sender (anonymous or a signed-in user).
    client : str
        :func:`client_hash` of the sender's address.
    mask : str or None
        ``"brain"`` (default) or ``"nonzero"``.
    reference : str or None
        Name or slug of the reference set; None or empty for the active one.

    Returns
    -------
    Accepted
        The result's token, whether to decode it now (``inline``) or which job will.

    Raises
    ------
    DecodeRefused
        With the status and message for the visitor: not a NIfTI file, a file the checks refuse (the curator
        upload's messages), too large, too many volumes, too many files this hour, an unknown reference or mask.
    """
    mask = check_mask(mask)
    check_kind(name)
    check_size(size, name, user)
    limits = limits_for(user)
    try:
        volumes = check_nifti(path, name).n_volumes
        if limits.max_volumes and volumes > limits.max_volumes:
            raise DecodeRefused(
                422,
                f"{name} has {volumes} volumes; the decoder takes up to {limits.max_volumes} "
                f"per file from {limits.who}. Split the file, or decode a selection of "
                "volumes.",
            )
        check_nifti_file(path, name, limits.max_data_bytes)  # the header's claim first, then the stream
    except NiftiError as exc:
        raise DecodeRefused(422, str(exc)) from None
    settings = get_settings()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with session_scope() as session:
        check_rate(session, user, client)
        ref = resolve_reference(session, reference)
        u = signed_in(user)
        inline = volumes <= max(1, settings.decode_inline_volumes)
        job_id = None if inline else create_job(session, "decode", None, u.id if u else None).id
        row = DecodeResult(
            token=token,
            owner_id=u.id if u else None,
            client_hash=client,
            reference_set_id=ref.id,
            reference_name=ref.name,
            mask=mask,
            filename=name[:255],
            size=size,
            volumes=volumes,
            status="queued",
            storage_prefix=decode_prefix(token),
            job_id=job_id,
            expires=utcnow() + timedelta(days=settings.decode_retention_days),
        )
        session.add(row)
        session.flush()
        result_id = row.id
        get_storage().put_file(upload_key(token, name), path)
    return Accepted(token, result_id, volumes, inline, job_id)


def record_refusal(user: Any, client: str, name: str, size: int | None, message: str) -> None:
    """Keep a row for a refused file, so that it counts toward the sender's files per hour (a hostile sender
    would otherwise make the server check file after file for free). It holds no files, has no address anyone
    is given, and goes with the hourly window's expiry (the sweep removes it)."""
    u = signed_in(user)
    with session_scope() as session:
        session.add(
            DecodeResult(
                token=secrets.token_urlsafe(TOKEN_BYTES),
                owner_id=u.id if u else None,
                client_hash=client,
                filename=(name or "")[:255],
                size=size or 0,
                volumes=0,
                status="refused",
                error=message[:4000],
                storage_prefix="",
                finished=utcnow(),
                expires=utcnow() + timedelta(hours=1),
            )
        )


def upload_key(token: str, name: str) -> str:
    return f"{decode_prefix(token)}upload{_suffix(name)}"


def volume_key(token: str, volume: int) -> str:
    """Key of volume ``volume`` (from 1) of a visitor's map on the grid."""
    return f"{decode_prefix(token)}volume-{int(volume):04d}.nii.gz"


def result_key(token: str) -> str:
    return f"{decode_prefix(token)}result.json"


# --- decoding --------------------------------------------------------------------------------------------------


def run_decode(result_id: int, progress: Callable[[int, int], None] | None = None) -> None:
    """Decode a recorded visitor's map: resample, check, decode every volume, find similar components, store.

    Parameters
    ----------
    result_id : int
        Id of the ``DecodeResult`` made by :func:`accept`.
    progress : callable or None
        Called as ``progress(volumes done, volumes)`` after each chunk of volumes.

    Raises
    ------
    Exception
        Only an unexpected one (the row is marked failed first). A file or request the decoder cannot use ends
        the row ``failed`` with the reason, without raising. The received file is removed either way.
    """
    with session_scope() as session:
        row = session.get(DecodeResult, result_id)
        if row is None:
            return
        row.status = "running"
        token, name, mask, owner_id = row.token, row.filename, row.mask, row.owner_id
        reference_id = row.reference_set_id
    try:
        payload = _decode_file(result_id, token, name, mask, owner_id, reference_id, progress)
        get_storage().put_bytes(result_key(token), json.dumps(payload).encode())
    except (NiftiError, ValueError, KeyError, RuntimeError) as exc:  # the file or the request: say why
        _finish(result_id, "failed", error=str(exc) or type(exc).__name__)
        return
    except BaseException:
        _finish(
            result_id,
            "failed",
            error="The decoder failed on this file (an internal error; the server log has details).",
        )
        raise
    finally:
        get_storage().delete(upload_key(token, name))
    warnings = [w for v in payload["volumes"] for w in v["warnings"]]
    failed = all(v["error"] for v in payload["volumes"])
    _finish(
        result_id,
        "failed" if failed else "done",
        warnings=warnings[:200],
        error="; ".join(v["error"] for v in payload["volumes"] if v["error"])[:4000] if failed else "",
    )


def _finish(result_id: int, status: str, **values: Any) -> None:
    with session_scope() as session:
        row = session.get(DecodeResult, result_id)
        if row is None:
            return
        row.status, row.finished = status, utcnow()
        for key, value in values.items():
            setattr(row, key, value)


def _decode_file(
    result_id: int,
    token: str,
    name: str,
    mask: str,
    owner_id: int | None,
    reference_id: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    with session_scope() as session:
        reference = session.get(ReferenceSet, reference_id) if reference_id else None
        if reference is None:
            raise RuntimeError("the reference set of this request no longer exists")
        matrix, terms = load_matrix(session, reference)
        owner = session.get(User, owner_id) if owner_id else None
        if owner is not None:
            session.expunge(owner)
    volumes_out: list[dict[str, Any]] = []
    with local_copy(upload_key(token, name), suffix=_suffix(name)) as path:
        checked = check_nifti(path, name)
        total = checked.n_volumes
        # Read, resample and decode a chunk of volumes at a time: memory follows the chunk, not the file.
        per_volume = int(np.prod(checked.shape[:3])) * 4
        for start, block in checked.volume_chunks(max_bytes=max(per_volume, VOLUME_CHUNK * per_volume)):
            on_grid = resample_to_grid(block, checked.affine)
            del block
            volumes_out += _decode_volumes(token, name, total, start, on_grid, matrix, mask, owner)
            del on_grid
            _progress(result_id, len(volumes_out), total, progress)
    return {
        "terms": [t.name for t in terms],
        "slugs": [t.slug for t in terms],
        "reference": reference.name,
        "mask": mask,
        "volumes": volumes_out,
    }


def _progress(result_id: int, done: int, total: int, progress: Callable[[int, int], None] | None) -> None:
    with session_scope() as session:
        row = session.get(DecodeResult, result_id)
        if row is not None:
            row.progress_done = done
    if progress:
        progress(done, total)


def _decode_volumes(
    token: str, name: str, total: int, start: int, on_grid: np.ndarray, matrix: np.ndarray, mask: str, owner: Any
) -> list[dict[str, Any]]:
    rows = masked(on_grid)
    out = []
    for i in range(len(on_grid)):
        number = start + i + 1
        label = name if total == 1 else f"{name} volume {number}"
        check = quality_check(on_grid[i], inside=rows[i])
        entry: dict[str, Any] = {
            "volume": number,
            "warnings": [f"{label}: {w}" for w in check.warnings],
            "error": None,
            "r": None,
            "similar": [],
        }
        if check.rejected:
            entry["error"] = f"{label}: {check.rejected}"
            out.append(entry)
            continue
        if mask == "nonzero" and np.count_nonzero(rows[i]) < 3:
            entry["error"] = f"{label}: fewer than 3 non-zero voxels inside the brain mask"
            out.append(entry)
            continue
        r = decode_nonzero(rows[i : i + 1], matrix)[0] if mask == "nonzero" else decode(rows[i : i + 1], matrix)[0]
        if mask == "nonzero" and not np.any(r):
            entry["warnings"].append(
                f"{label}: the map is constant over its non-zero voxels, so no term correlates with it there"
            )
        save_map(volume_key(token, number), on_grid[i])
        with session_scope() as session:
            found = similar_components(session, owner, unit_rows(rows[i : i + 1])[0], SIMILAR_KEPT)
        entry["r"] = [round(float(v), 7) for v in r]
        entry["similar"] = [{"uuid": f["uuid"], "r": f["r"]} for f in found]
        # Where the viewer starts to colour the map: its scale is the visitor's, so take it from the data.
        values = np.abs(rows[i][rows[i] != 0])
        entry["threshold"] = round(float(np.percentile(values, 90)), 4) if len(values) else 0.0
        out.append(entry)
    return out


def decode_job(job_id: int, progress: Callable[[int, int], None] | None = None) -> None:
    """The ``decode`` job kind: decode the visitor's map recorded with this job, on the shared lifecycle."""
    with session_scope() as session:
        result_id = session.scalar(select(DecodeResult.id).where(DecodeResult.job_id == job_id))
        volumes = session.scalar(select(DecodeResult.volumes).where(DecodeResult.job_id == job_id))
    with running_job(job_id) as run:
        if result_id is None:
            run.failed, run.message = True, "the decoding request was deleted before it ran"
            return
        update_job(job_id, progress_done=0, progress_total=volumes or 0)

        def both(done: int, total: int) -> None:
            update_job(job_id, progress_done=done)
            if progress:
                progress(done, total)

        run_decode(result_id, both)
        with session_scope() as session:
            row = session.get(DecodeResult, result_id)
            run.failed = row is None or row.status != "done"
            run.message = f"{volumes} volume(s) decoded" if not run.failed else (row.error if row else "deleted")


# --- reading and removing --------------------------------------------------------------------------------------


def find(session: Session, token: Any) -> DecodeResult | None:
    """The result with this token, its state settled (a decoding whose process died is marked failed).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    token : Any
        What the address holds; anything but a token of the right form finds nothing.

    Returns
    -------
    DecodeResult or None
        None also for an expired result (the sweep removes it later).
    """
    if (
        not isinstance(token, str)
        or not 16 <= len(token) <= 64
        or not token.replace("-", "").replace("_", "").isalnum()
        or not token.isascii()
    ):
        return None
    row = session.scalar(select(DecodeResult).where(DecodeResult.token == token))
    if row is None or row.status == "refused" or _aware(row.expires) <= utcnow():
        return None
    _settle(session, row)
    return row


INLINE_STALE_AFTER = timedelta(minutes=15)  # a decoding in a request that has not ended by then lost its process


def _settle(session: Session, row: DecodeResult) -> None:
    """A result whose job ended without it (its process died: the job was marked failed by the heartbeat rules),
    or whose decoding in a request never ended, fails too."""
    if row.status in ("done", "failed"):
        return
    if row.job_id is None:
        if _aware(row.created) < utcnow() - INLINE_STALE_AFTER:
            row.status, row.finished = "failed", utcnow()
            row.error = "The decoding stopped (the server may have restarted); send the file again."
        return
    settle_stalled_jobs(session)  # a job whose process died (no heartbeat) is marked failed first
    job = session.get(Job, row.job_id)
    if job is None or job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        row.status, row.finished = "failed", utcnow()
        row.error = (job.error if job is not None else "") or "The decoding stopped; send the file again."


def load_payload(row: DecodeResult) -> dict[str, Any] | None:
    try:
        return json.loads(get_storage().read_bytes(result_key(row.token)))
    except KeyError:
        return None


def can_delete(user: Any, row: DecodeResult) -> bool:
    u = signed_in(user)
    return u is not None and row.owner_id is not None and (u.id == row.owner_id or u.role == "admin")


def summary(row: DecodeResult) -> dict[str, Any]:
    return {
        "id": row.token,
        "url": f"/decode/{row.token}",
        "status": row.status,
        "error": row.error or None,
        "filename": row.filename,
        "mask": row.mask,
        "reference": row.reference_name,
        "volumes": row.volumes,
        "done": row.progress_done,
        "warnings": list(row.warnings or []),
        "expires": _aware(row.expires).isoformat(),
    }


def shown_volumes(session: Session, user: Any, payload: dict[str, Any], limit: int = SIMILAR_SHOWN) -> list[dict]:
    """What a viewer is shown of a result: every volume, its terms and its similar components.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    user : Any
        Whoever opened the address: the similar components are filtered by what they may see.
    payload : dict
        The stored result (:func:`load_payload`).
    limit : int
        Similar components per volume, at most.

    Returns
    -------
    list of dict
        Per volume: ``volume`` (from 1), ``terms`` (every term, best first: ``term``, ``slug``, ``r``),
        ``similar`` (as :func:`pipeline.decoding.similar.describe`), ``warnings``, ``error`` (None when it was
        decoded) and
        ``threshold`` (where the viewer starts colouring it).
    """
    from store.models import Component

    names, slugs = payload["terms"], payload["slugs"]
    uuids = {s["uuid"] for entry in payload["volumes"] for s in entry["similar"]}
    ids = (
        dict(session.execute(select(Component.uuid, Component.id).where(Component.uuid.in_(uuids))).all())
        if uuids
        else {}
    )
    out = []
    for entry in payload["volumes"]:
        terms: list[dict[str, Any]] = []
        if entry["r"] is not None:
            r = np.asarray(entry["r"], dtype=np.float64)
            order = np.argsort(-r, kind="stable")
            terms = [{"term": names[i], "slug": slugs[i], "r": float(r[i])} for i in order]
        matches = [Match(ids[s["uuid"]], s["r"]) for s in entry["similar"] if s["uuid"] in ids]
        out.append(
            {
                "volume": entry["volume"],
                "terms": terms,
                "similar": describe(session, user, matches)[:limit],
                "warnings": entry["warnings"],
                "error": entry["error"],
                "threshold": entry.get("threshold", 0.0),
            }
        )
    return out


def delete_result(session: Session, row: DecodeResult) -> None:
    """Remove a result at once: its row (flushed in the caller's transaction) and its folder in storage.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        The session ``row`` belongs to; the caller commits.
    row : DecodeResult
        The result (the caller checked :func:`can_delete`).
    """
    prefix = row.storage_prefix
    session.delete(row)
    session.flush()
    get_storage().delete_prefix(prefix.rstrip("/"))


def sweep_expired(now: datetime | None = None, dry_run: bool = False) -> list[str]:
    """Remove the results whose retention has ended: rows first (committed), then their folders.

    Parameters
    ----------
    now : datetime.datetime or None
        The current time, timezone-aware; None means now.
    dry_run : bool
        True: remove nothing, only report.

    Returns
    -------
    list of str
        The storage prefixes of the removed (or, on a dry run, expired) results.
    """
    now = now or utcnow()
    with session_scope() as session:
        rows = session.scalars(
            select(DecodeResult).where(or_(DecodeResult.expires <= now, DecodeResult.expires.is_(None)))
        ).all()
        prefixes = [r.storage_prefix for r in rows if r.storage_prefix]  # refused attempts hold no files
        if not dry_run:
            for row in rows:
                session.delete(row)
    if not dry_run:
        for prefix in prefixes:
            get_storage().delete_prefix(prefix.rstrip("/"))
    return prefixes


def live_prefixes(session: Session) -> set[str]:
    """Storage prefixes of results that are still kept (the sweep leaves their files alone)."""
    return set(session.scalars(select(DecodeResult.storage_prefix)))
