"""Ingest: a job's uploaded files -> components on the grid, decoded, stored, merged (DESIGN sections 3-5, 8).

Every step is idempotent: a component's uuid and storage keys are derived from the upload, the member name and
the volume index, rows are replaced rather than added, and merged maps are rebuilt from scratch. A job redelivered
after its worker died therefore ends with the same rows and files as an undisturbed run.
"""

from __future__ import annotations

import posixpath
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select

from pipeline.curation.archives import ArchiveError, iter_niftis, storage_suffix
from pipeline.decoding.decode import decode, masked, normalise_rows
from pipeline.decoding.reference import load_matrix, require_active_reference
from pipeline.decoding.similar import NewVector, project, reduced_for_ingest, save_exact, store_vectors
from pipeline.decoding.termmaps import rebuild_term_maps
from pipeline.jobs.heartbeat import beat_interval, stale_after
from pipeline.jobs.lifecycle import running_job, update_job
from pipeline.maps.files import save_map
from pipeline.maps.nifti import NiftiError, check_nifti, quality_check, resample_to_grid
from pipeline.maps.thumbnails import save_thumbnail
from pipeline.synchrony.dual_regression import is_stage1_name, stage1_matrix, stage1_order
from pipeline.temporal.annotations import decode_collection_in_time
from pipeline.temporal.timecourses import (
    check_timecourses,
    is_timecourse_name,
    match_timecourse_files,
    read_timecourse_file,
    unmatched_timecourse_files,
)
from pipeline.temporal.timing import TimeCourseError, Timing
from store.artifacts import (
    component_key,
    decodings_key,
    local_copy,
    map_and_thumbnail,
    save_vector,
    similarity_vector_key,
    thumbnail_key,
    timecourse_key,
)
from store.db import session_scope
from store.models import Collection, Component, Decoding, Job, ReferenceSet, TimeCourse, Upload, utcnow
from store.storage import get_storage

TOP_DECODINGS = 50
COMPONENT_NAMESPACE = uuid.UUID("6f1c7a52-7d0e-4d55-9a39-3b7cbb0f3a11")

Progress = Callable[[int, int], None]


def component_uuid(upload_sha256: str, upload_id: int, member: str, volume: int) -> str:
    return str(uuid.uuid5(COMPONENT_NAMESPACE, f"{upload_id}:{upload_sha256}:{member}:{volume}"))


@dataclass
class IngestResult:
    components: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def ingest(job_id: int, progress: Progress | None = None, merge: bool = True) -> IngestResult:
    """Run an ingest job: every upload of the job's collection becomes components, decoded and (unless
    ``merge`` is False, for bulk loads that merge once at the end) merged.

    Raises
    ------
    ValueError
        The job does not exist or is not an ingest job.
    """
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        if job.kind != "ingest" or job.collection_id is None:
            raise ValueError(f"job {job_id} is not an ingest job")
        collection_id = job.collection_id
        uploads = [
            (u.id, u.filename, u.storage_key, u.sha256)
            for u in session.scalars(select(Upload).where(Upload.collection_id == collection_id).order_by(Upload.id))
        ]
    result = IngestResult()
    with running_job(job_id) as run:
        run.warnings, run.errors = result.warnings, result.errors  # filled as the run goes
        images = _ingest_uploads(job_id, collection_id, uploads, result, progress, merge)
        if run.replaces_stopped_run:
            remove_stopped_run_leftovers(collection_id, images, run.started)
        run.failed = bool(uploads) and not result.components
        run.message = f"{result.components} component(s) decoded"
        if result.errors:
            run.message += f"; {len(result.errors)} file(s) or map(s) could not be used"
    return result


def _ingest_uploads(
    job_id: int, collection_id: int, uploads: list, result: IngestResult, progress: Progress | None, merge: bool
) -> list[tuple[int, str, str, int]]:
    """Decode and store the uploads' maps; returns (upload id, sha256, member name, volumes) of each map read."""
    with session_scope() as session:
        reference = require_active_reference(session)
        matrix, terms = load_matrix(session, reference)
        reference_id = reference.id
        term_ids = [t.id for t in terms]
        timing_dict = session.get(Collection, collection_id).timing
        similarity = reduced_for_ingest(session)
    with tempfile.TemporaryDirectory(prefix="incdb-ingest-") as tmp, ExitStack() as open_files:
        # Pass 1: open every file and check its header, so progress has a true total before the slow part.
        checked, timecourse_files = _check_uploads(uploads, Path(tmp), open_files, result)
        courses = _read_timecourses(checked, timecourse_files, timing_dict, result)
        total = sum(c[3].n_volumes for c in checked)
        update_job(job_id, progress_done=0, progress_total=total)
        if progress:
            progress(0, total)
        counter = _Counter(job_id, total, progress)
        new_rows: list[dict] = []
        for upload_id, sha, member_name, image in checked:
            new_rows += _decode_image(upload_id, sha, member_name, image, matrix, result, counter, similarity)
    _store_components(collection_id, reference_id, term_ids, new_rows, merge, courses)
    return [(upload_id, sha, member_name, image.n_volumes) for upload_id, sha, member_name, image in checked]


# The folders an ingest writes before it stores its rows (components' maps and thumbnails, decodings, exact
# similarity vectors, time courses).
INGEST_PREFIXES = ("components/", "decodings/", "similar/vectors/", "timecourses/")


def remove_stopped_run_leftovers(
    collection_id: int, images: list[tuple[int, str, str, int]], started: datetime
) -> list[str]:
    """After a run that replaces one that stopped (its worker died), remove what only the stopped run wrote.

    Keys are derived from the upload, member and volume, so this run overwrote every file it wrote again. Left are
    the files of volumes this run did not keep (``images``: every volume of every map it read), the time courses
    it did not store, and temporary files of writes the stopped run was killed in. A file a row refers to stays.
    A temporary is taken for the stopped run's when it was last written before this run's start less
    ``stale_after`` plus one beat: the stopped run was silent that long before it was re-queued, while a live
    write's temporary lives for seconds.

    Parameters
    ----------
    collection_id : int
        The collection the stopped run was processing.
    images : list of tuple
        (upload id, sha256, member name, number of volumes) of each map this run read.
    started : datetime.datetime
        When this run started, timezone-aware UTC.

    Returns
    -------
    list of str
        Keys (and temporaries' paths under the storage root) removed.
    """
    storage = get_storage()
    with session_scope() as session:
        kept = set(session.scalars(select(Component.uuid).where(Component.collection_id == collection_id)))
        courses = {
            k
            for row in session.execute(
                select(TimeCourse.storage_key, TimeCourse.spectra_key).where(TimeCourse.collection_id == collection_id)
            )
            for k in row
            if k
        }
    removed: list[str] = []
    for upload_id, sha, member_name, n_volumes in images:
        for volume in range(n_volumes):
            cuuid = component_uuid(sha, upload_id, member_name, volume)
            if cuuid not in kept:
                removed += [
                    component_key(cuuid),
                    thumbnail_key(component_key(cuuid)),
                    decodings_key(cuuid),
                    similarity_vector_key(cuuid),
                ]
        course = timecourse_key(str(uuid.uuid5(COMPONENT_NAMESPACE, f"timecourse:{upload_id}:{member_name}")))
        removed += [k for k in (course, course.replace(".npy", "-spectra.npy")) if k not in courses]
    for key in removed:
        storage.delete(key)
    stale_temporaries = getattr(storage, "stale_temporaries", None)  # local storage only: S3 writes are atomic
    if stale_temporaries is not None:
        cutoff = started - stale_after() + timedelta(seconds=beat_interval())
        for path in stale_temporaries(cutoff):
            name = path.relative_to(storage.root).as_posix()
            if name.startswith(INGEST_PREFIXES):
                path.unlink(missing_ok=True)
                removed.append(name)
    return removed


def _read_timecourses(
    checked: list, files: dict[str, tuple[int, Path]], timing_dict: dict | None, result: IngestResult
) -> dict[tuple[int, str], dict]:
    """The time courses of the checked maps, stored as artifacts: (upload id, map name) -> TimeCourse fields.
    A file that does not fit its map or the collection's timing is left out with a message in ``result.errors``;
    the map itself is still used."""
    names = [c[2] for c in checked] + list(files)
    for name in unmatched_timecourse_files(names):
        result.warnings.append(f"{name}: no map in the same folder to take its time courses; not used")
    if not files:
        return {}
    timing = Timing.from_dict(timing_dict) if timing_dict else None
    courses: dict[tuple[int, str], dict] = {}
    matches = match_timecourse_files(names)
    for upload_id, _sha, map_name, image in checked:
        found = matches.get(map_name, {})
        if "mix" not in found:
            continue
        try:
            fields = _timecourse_fields(upload_id, map_name, image.n_volumes, found, files, timing)
        except TimeCourseError as exc:
            result.errors.append(str(exc))
            continue
        courses[(upload_id, map_name)] = fields
    stage1 = [name for name in files if is_stage1_name(name)]
    if stage1:
        try:
            upload_id, map_name, fields = _stage1_fields(checked, stage1, files, courses, timing)
        except TimeCourseError as exc:
            result.errors.append(str(exc))
        else:
            courses[(upload_id, map_name)] = fields
    return courses


def _stage1_fields(
    checked: list,
    stage1: list[str],
    files: dict[str, tuple[int, Path]],
    courses: dict[tuple[int, str], dict],
    timing: Timing | None,
) -> tuple[int, str, dict]:
    """(upload id, map name, TimeCourse fields) of FSL dual_regression's stage-1 files: stacked in subject order
    as one subject-major matrix (as ``melodic_mix``), for the group map in their folder, or the upload's only map."""
    ordered = stage1_order(stage1)
    first = ordered[0]
    folder = posixpath.dirname(first.replace("\\", "/"))
    maps = [c for c in checked if posixpath.dirname(c[2].replace("\\", "/")) == folder] or checked
    if len(maps) != 1:
        raise TimeCourseError(
            f"{first}: {len(maps)} maps could take these dual_regression time courses; put the group map given to "
            "dual_regression in the same folder as the dr_stage1_subjectNNNNN.txt files."
        )
    upload_id, _sha, map_name, image = maps[0]
    if (upload_id, map_name) in courses:
        raise TimeCourseError(
            f"{map_name} has both a melodic_mix and dual_regression stage-1 files; upload one of them."
        )
    if timing is None:
        raise TimeCourseError(
            f"{first}: the collection has no timing yet (TR, runs and subjects); describe it on the collection's "
            "page, then process the collection again"
        )
    if timing.subjects != len(ordered):
        raise TimeCourseError(
            f"{first}: {len(ordered)} dual_regression stage-1 files, but the collection's timing has "
            f"{timing.subjects} subjects; set the timing's subjects to {len(ordered)} (one per file)."
        )
    values = stage1_matrix(
        [(n, files[n][1]) for n in ordered], n_components=image.n_volumes, volumes_per_subject=timing.rows_per_subject
    )
    mix_name = f"{folder + '/' if folder else ''}dr_stage1_subject*.txt ({len(ordered)} files)"
    check_timecourses(values, image.n_volumes, timing, mix_name, map_name)
    key = timecourse_key(str(uuid.uuid5(COMPONENT_NAMESPACE, f"timecourse:{upload_id}:{map_name}")))
    save_vector(key, values)
    fields = dict(
        mix_file=mix_name, storage_key=key, spectra_key=None, rows=int(values.shape[0]), columns=int(values.shape[1])
    )
    return upload_id, map_name, fields


def _timecourse_fields(
    upload_id: int,
    map_name: str,
    n_volumes: int,
    found: dict[str, str],
    files: dict[str, tuple[int, Path]],
    timing: Timing | None,
) -> dict:
    mix_name = found["mix"]
    if timing is None:
        raise TimeCourseError(
            f"{mix_name}: the collection has no timing yet (TR, runs and subjects); describe it "
            "on the collection's page, then process the collection again"
        )
    _, values = read_timecourse_file(files[mix_name][1], mix_name)
    check_timecourses(values, n_volumes, timing, mix_name, map_name)
    key = timecourse_key(str(uuid.uuid5(COMPONENT_NAMESPACE, f"timecourse:{upload_id}:{map_name}")))
    save_vector(key, values)
    fields = dict(
        mix_file=mix_name, storage_key=key, spectra_key=None, rows=int(values.shape[0]), columns=int(values.shape[1])
    )
    if "ftmix" in found:
        _, spectra = read_timecourse_file(files[found["ftmix"]][1], found["ftmix"])
        check_timecourses(spectra, n_volumes, None, found["ftmix"], map_name)
        fields["spectra_key"] = key.replace(".npy", "-spectra.npy")
        save_vector(fields["spectra_key"], spectra)
    return fields


@dataclass
class _Counter:
    """Progress over all volumes of a job, written to the Job row and reported to the caller."""

    job_id: int
    total: int
    progress: Progress | None
    done: int = 0

    def add(self, n: int, report: bool = True) -> None:
        self.done += n
        if report:
            update_job(self.job_id, progress_done=self.done)
            if self.progress:
                self.progress(self.done, self.total)


def _check_uploads(
    uploads: list, tmp: Path, open_files: ExitStack, result: IngestResult
) -> tuple[list, dict[str, tuple[int, Path]]]:
    """(upload id, sha256, member name, checked image) of every NIfTI in the uploads, and the time-course files
    (member name -> (upload id, local path)); what cannot be used goes to ``result.errors``."""
    checked = []
    timecourse_files: dict[str, tuple[int, Path]] = {}
    for upload_id, filename, key, sha in uploads:
        workdir = tmp / str(upload_id)
        workdir.mkdir()
        try:
            path = open_files.enter_context(local_copy(key, suffix=storage_suffix(filename)))
            for member in list(iter_niftis(path, filename, workdir, result.warnings, include_timecourses=True)):
                if is_timecourse_name(member.name) or is_stage1_name(member.name):
                    timecourse_files[member.name] = (upload_id, member.path)
                    continue
                try:
                    checked.append((upload_id, sha, member.name, check_nifti(member.path, member.name)))
                except NiftiError as exc:
                    result.errors.append(str(exc))
        except (ArchiveError, NiftiError) as exc:
            result.errors.append(str(exc))
    return checked, timecourse_files


def _decode_image(
    upload_id: int,
    sha: str,
    member_name: str,
    image,
    matrix,
    result: IngestResult,
    counter: _Counter,
    similarity: tuple = (None, None),
) -> list[dict]:
    """Resample, check, store and decode the volumes of one image; the component rows of those kept, with their
    reduced vectors for the similarity index (``similarity``: the active basis's id and matrix, or Nones).

    The volumes are read a chunk at a time (``CheckedImage.volume_chunks``), so memory follows the chunk and not
    what the header claims. A file that turns out unreadable part-way gives no component at all, as before."""
    new_rows: list[dict] = []
    done = 0
    try:
        for start, block in image.volume_chunks():
            on_grid = resample_to_grid(block, image.affine)
            del block
            new_rows += _decode_volumes(
                upload_id, sha, member_name, image.n_volumes, start, on_grid, matrix, result, counter, similarity
            )
            done = start + len(on_grid)
    except NiftiError as exc:
        result.errors.append(str(exc))
        result.components -= len(new_rows)
        counter.add(image.n_volumes - done, report=False)
        return []
    return new_rows


def _decode_volumes(
    upload_id: int,
    sha: str,
    member_name: str,
    n_volumes: int,
    start: int,
    on_grid: np.ndarray,
    matrix,
    result: IngestResult,
    counter: _Counter,
    similarity: tuple,
) -> list[dict]:
    """:func:`_decode_image` for volumes ``start ..`` of an image, already on the grid."""
    rows = masked(on_grid)
    keep, qc = _quality_checked(on_grid, rows, member_name, result, start, n_volumes)
    uuids = [component_uuid(sha, upload_id, member_name, start + v) for v in keep]
    # The maps are gzipped and written by a second thread while this one decodes (isal and the file writes
    # release the GIL), so the two largest steps overlap.
    units = normalise_rows(rows[keep]) if keep else np.empty((0, rows.shape[1]), np.float32)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="incdb-save") as writer:
        saved = [writer.submit(save_component_map, cuuid, on_grid[v]) for cuuid, v in zip(uuids, keep)]
        saved += [writer.submit(save_exact, cuuid, units[i]) for i, cuuid in enumerate(uuids)]
        r_all = decode(rows[keep], matrix) if keep else np.empty((0, matrix.shape[1]))
        basis_id, basis = similarity
        reduced = project(basis, units) if basis is not None and keep else [None] * len(keep)
        for future in saved:
            future.result()
    new_rows = []
    for row, (cuuid, v) in enumerate(zip(uuids, keep)):
        save_vector(decodings_key(cuuid), r_all[row])
        new_rows.append(
            dict(
                uuid=cuuid,
                upload_id=upload_id,
                source_file=member_name,
                volume_index=start + v,
                r=r_all[row],
                qc=qc[v],
                reduced=reduced[row],
                basis_id=basis_id,
            )
        )
        result.components += 1
        counter.add(1)
    counter.add(len(on_grid) - len(keep), report=False)
    return new_rows


def save_component_map(cuuid: str, data: np.ndarray) -> None:
    """Store a component's map and its thumbnail (pipeline.maps.thumbnails), keys from the component's uuid."""
    save_map(component_key(cuuid), data)
    save_thumbnail(component_key(cuuid), data)


def _quality_checked(
    on_grid: np.ndarray,
    rows: np.ndarray,
    member_name: str,
    result: IngestResult,
    start: int = 0,
    n_volumes: int | None = None,
) -> tuple[list[int], dict[int, list[str]]]:
    """The volumes (indices into ``on_grid``, which holds volumes ``start ..`` of an image of ``n_volumes``) that
    pass QC, and each one's warnings; rejections go to ``result.errors``."""
    n_volumes = len(on_grid) if n_volumes is None else n_volumes
    keep: list[int] = []
    qc: dict[int, list[str]] = {}
    for v in range(len(on_grid)):
        check = quality_check(on_grid[v], inside=rows[v])
        label = member_name if n_volumes == 1 else f"{member_name} volume {start + v + 1}"
        if check.rejected:
            result.errors.append(f"{label}: {check.rejected}")
        else:
            keep.append(v)
            qc[v] = check.warnings
            result.warnings.extend(f"{label}: {w}" for w in check.warnings)
    return keep, qc


def top_terms(r: np.ndarray) -> np.ndarray:
    """Column indices of the TOP_DECODINGS best terms, best first (ties by term order)."""
    return np.argsort(-r, kind="stable")[:TOP_DECODINGS]


def write_decodings(session, decoded: list[tuple[int, np.ndarray, np.ndarray]], term_ids: list[int]) -> None:
    """Replace the stored top decodings of components, given as (component id, r, top_terms(r)): one DELETE and
    one multi-row INSERT rather than an ORM object per row (50 rows per component)."""
    if not decoded:
        return
    session.execute(delete(Decoding).where(Decoding.component_id.in_([cid for cid, _, _ in decoded])))
    session.execute(
        insert(Decoding),
        [
            dict(component_id=cid, term_id=term_ids[i], r=float(r[i]), rank=rank + 1)
            for cid, r, order in decoded
            for rank, i in enumerate(order)
        ],
    )


def _store_components(
    collection_id: int,
    reference_id: int,
    term_ids: list[int],
    rows: list[dict],
    merge: bool = True,
    courses: dict[tuple[int, str], dict] | None = None,
) -> None:
    """Replace the collection's components by ``rows`` in one transaction, then rebuild affected merged maps.

    Files of removed components are deleted only after the commit, and files written for components that never
    got their rows are deleted when the transaction fails, so rows and files always agree.
    """
    now = utcnow()
    storage = get_storage()
    old_uuids: set[str] = set()
    removed_keys: list[str] = []
    try:
        with session_scope() as session:
            old = session.scalars(select(Component).where(Component.collection_id == collection_id)).all()
            old_uuids = {c.uuid for c in old}
            affected = {c.best_term_id for c in old if c.best_term_id is not None}
            keep_uuids = {r["uuid"] for r in rows}
            for comp in old:
                if comp.uuid not in keep_uuids:
                    removed_keys += map_and_thumbnail([comp.storage_key])
                    removed_keys += [comp.decodings_key] if comp.decodings_key else []
                    removed_keys.append(similarity_vector_key(comp.uuid))
                    session.delete(comp)
            session.flush()
            course_ids, old_course_keys = _replace_timecourses(session, collection_id, courses or {})
            removed_keys += [
                k
                for k in old_course_keys
                if k not in {v for c in (courses or {}).values() for v in (c["storage_key"], c["spectra_key"]) if v}
            ]
            by_uuid = {c.uuid: c for c in old if c.uuid in keep_uuids}
            stored: list[tuple[Component, np.ndarray, np.ndarray]] = []
            for row in rows:
                r = row["r"]
                order = top_terms(r)
                comp = by_uuid.get(row["uuid"]) or Component(uuid=row["uuid"], collection_id=collection_id)
                comp.upload_id = row["upload_id"]
                comp.source_file = row["source_file"][:512]
                comp.volume_index = row["volume_index"]
                comp.storage_key = component_key(row["uuid"])
                comp.decodings_key = decodings_key(row["uuid"])
                comp.best_term_id = term_ids[order[0]]
                comp.best_r = float(r[order[0]])
                comp.qc_warnings = row["qc"]
                comp.decoded_at = now
                comp.timecourse_id = course_ids.get((row["upload_id"], row["source_file"]))
                session.add(comp)
                stored.append((comp, r, order))
                affected.add(comp.best_term_id)
            session.flush()  # one flush for all components: their ids for the decoding rows
            write_decodings(session, [(comp.id, r, order) for comp, r, order in stored], term_ids)
            store_vectors(
                session,
                [
                    NewVector(comp.id, collection_id, comp.uuid, row["reduced"], row["basis_id"])
                    for (comp, _, _), row in zip(stored, rows)
                ],
            )
    except BaseException:
        for row in rows:
            if row["uuid"] not in old_uuids:
                storage.delete(component_key(row["uuid"]))
                storage.delete(thumbnail_key(component_key(row["uuid"])))
                storage.delete(decodings_key(row["uuid"]))
                storage.delete(similarity_vector_key(row["uuid"]))
        raise
    try:
        if courses:
            decode_collection_in_time(collection_id)
        if merge:  # before the removed maps go: a term's running sum subtracts them (pipeline.decoding.termmaps)
            with session_scope() as session:
                movie_id = session.scalar(select(Collection.movie_id).where(Collection.id == collection_id))
                rebuild_term_maps(session, session.get(ReferenceSet, reference_id), affected, movie_ids=[movie_id])
    finally:
        for key in removed_keys:
            storage.delete(key)


def _replace_timecourses(
    session, collection_id: int, courses: dict[tuple[int, str], dict]
) -> tuple[dict[tuple[int, str], int], list[str]]:
    """Replace the collection's TimeCourse rows; returns (upload id, map name) -> new row id, and the storage keys
    of the old rows (removed after the commit unless a new row uses them again)."""
    old = session.scalars(select(TimeCourse).where(TimeCourse.collection_id == collection_id)).all()
    old_keys = [k for t in old for k in (t.storage_key, t.spectra_key) if k]
    for row in old:
        session.delete(row)
    session.flush()
    ids = {}
    for (upload_id, map_name), fields in courses.items():
        row = TimeCourse(collection_id=collection_id, upload_id=upload_id, source_file=map_name[:512], **fields)
        session.add(row)
        session.flush()
        ids[(upload_id, map_name)] = row.id
    return ids, old_keys
