"""INcDb command line: ``python -m pipeline --help``.

Every command honours INCDB_DATA_DIR / INCDB_DATABASE_URL; errors print one line and exit non-zero.

Each command imports what it needs inside its function: ``--help`` and the light commands then start without
loading numpy, nibabel, nilearn and SQLAlchemy (about two seconds), which only the heavy commands need.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path


def _init_db() -> None:
    from store.db import upgrade_database

    upgrade_database()


def cmd_init(args) -> None:
    import time

    from sqlalchemy import func, select

    from pipeline.decoding.reference import active_reference, ensure_default_reference
    from store.config import get_settings
    from store.db import session_scope
    from store.models import Component

    _init_db()
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        if total:
            print(f"\rbuilding the reference maps: {done}/{total}", end="", file=sys.stderr, flush=True)

    with session_scope() as session:
        before = active_reference(session)
        before_id = before.id if before is not None else None
        ensure_default_reference(session, progress=show)
        ref = active_reference(session)
        switched = before_id is not None and ref.id != before_id
        job_id = None
        if switched and session.scalar(select(func.count(Component.id))):
            from pipeline.jobs.lifecycle import create_job

            job_id = create_job(session, "redecode").id
        print(file=sys.stderr)
        print(
            f"database ready ({_safe_url(get_settings().database_url)}); active reference set: {ref.name} "
            f"({len(ref.terms)} terms; {time.monotonic() - started:.0f} s)"
        )
    if job_id:
        from pipeline.jobs.tasks import redecode

        print(f"re-decoded {redecode(job_id)} component(s) against it")
    from pipeline.anatomy.atlas import build_caches

    built = build_caches(progress=lambda line: print(line, flush=True))
    print(f"atlases on the grid: {len(built)} built" if built else "atlases on the grid: all cached already")


def cmd_demo(args) -> None:
    from pipeline.curation.demo import load_demo

    _init_db()
    created = load_demo()
    print(f"demo data: {created} collection(s) created" if created else "demo data already loaded; nothing to do")


DECODE_CHUNK_BYTES = 64 * 1024**2  # float32 bytes of source volumes read and resampled at a time by `decode`


def _fortran_mask_indices():
    """The brain mask's voxels as flat indices of a volume in NIfTI's (Fortran) order, in the mask's order."""
    import numpy as np

    from pipeline.maps.grid import GRID_SHAPE, mask_flat_indices

    return np.ravel_multi_index(np.unravel_index(mask_flat_indices(), GRID_SHAPE), GRID_SHAPE, order="F")


def cmd_decode(args) -> None:
    import numpy as np

    from pipeline.decoding.decode import decode, masked, ranked
    from pipeline.decoding.reference import load_matrix, require_active_reference
    from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE
    from pipeline.maps.nifti import check_nifti, quality_check, resample_to_grid
    from store.db import session_scope

    checked = check_nifti(args.map)
    n = checked.n_volumes
    if args.volume is not None and not 1 <= args.volume <= n:
        raise ValueError(f"--volume {args.volume} is out of range: {args.map} has {n} volume(s), numbered 1 to {n}")
    first, last = (0, n - 1) if args.volume is None else (args.volume - 1, args.volume - 1)
    single = first == last
    with session_scope() as session:
        matrix, terms = load_matrix(session, require_active_reference(session))
        names = [t.name for t in terms]
    # A chunk of volumes at a time is read, resampled and masked (memory follows the chunk, not the file); the
    # masked rows (under 1 MB per volume) are then decoded together in one call.
    rows, numbers, checks = [], [], {}
    on_grid_already = checked.shape[:3] == GRID_SHAPE and np.allclose(checked.affine, GRID_AFFINE, atol=1e-4)
    for start, block in checked.volume_chunks(max_bytes=DECODE_CHUNK_BYTES):
        lo, hi = max(first, start), min(last, start + block.shape[3] - 1)
        if lo > hi:
            continue
        block = block[..., lo - start : hi - start + 1]
        if on_grid_already:  # the mask's voxels straight from the file's (Fortran) layout: no reordered copy
            on_grid = np.moveaxis(block, 3, 0)
            inside = np.ascontiguousarray(block.reshape(-1, block.shape[3], order="F")[_fortran_mask_indices()].T)
        else:
            on_grid = resample_to_grid(block, checked.affine)
            inside = masked(on_grid)
        for i in range(hi - lo + 1):
            checks[lo + i + 1] = qc = quality_check(on_grid[i], inside=inside[i])
            if not qc.rejected:
                rows.append(inside[i])
                numbers.append(lo + i + 1)
        del block, on_grid
    if single and checks[first + 1].rejected:
        raise ValueError(f"{args.map}: {checks[first + 1].rejected}")
    if not rows:
        raise ValueError(f"{args.map}: no volume can be decoded: {checks[1].rejected}")
    r = decode(np.stack(rows), matrix)
    _print_decodings(args, checks, {v: ranked(r[i], names, args.top) for i, v in enumerate(numbers)}, single)


def _print_decodings(args, checks: dict, results: dict, single: bool) -> None:
    """Print `decode`'s ranked terms: one block (or JSON list) for one volume, one per volume for a 4D file."""
    if args.json:
        if single:
            (ranking,) = results.values()
            payload = [{"term": t, "r": round(x, 6)} for t, x in ranking]
        else:
            payload = [
                {
                    "volume": v,
                    "error": qc.rejected,
                    "warnings": qc.warnings,
                    "decodings": [{"term": t, "r": round(x, 6)} for t, x in results.get(v, [])],
                }
                for v, qc in checks.items()
            ]
        print(json.dumps(payload))
        return
    for v, qc in checks.items():
        where = "" if single else f"volume {v}: "
        for warning in qc.warnings:
            print(f"warning: {where}{warning}", file=sys.stderr)
        if qc.rejected:
            print(f"warning: {where}not decoded: {qc.rejected}", file=sys.stderr)
            continue
        if not single:
            if v != min(results):
                print()
            print(f"volume {v}")
        width = max(len(t) for t, _ in results[v])
        for term, value in results[v]:
            print(f"{term:<{width}}  {value:+.4f}")


def cmd_merge(args) -> None:
    from pipeline.maps.merge import merge_files

    backend = merge_files(args.out, args.inputs, backend=args.backend)
    print(f"merged {len(args.inputs)} map(s) into {args.out} ({backend} backend)")


def _reference_import(args, source: str, maps, left_out: list[str] | None = None) -> None:
    from pipeline.decoding.reference import create_reference_set
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import redecode
    from store.db import session_scope

    _init_db()
    with session_scope() as session:
        try:
            ref = create_reference_set(
                session, args.name, source, maps, description=args.description or "", activate=args.activate
            )
        except ValueError as exc:
            if left_out and "no term maps" in str(exc):
                raise ValueError(
                    f"no term is left: every one would have a map of 0 everywhere (no study, or "
                    f"every study, has it): {', '.join(left_out)}"
                ) from None
            raise
        n_terms = len(ref.terms)
        job_id = create_job(session, "redecode").id if args.activate else None
    print(f"reference set {args.name!r}: {n_terms} terms" + (" (active)" if args.activate else ""))
    if left_out:
        print(
            f"left out {len(left_out)} term(s) whose map would be 0 everywhere (no study, or every study, has "
            f"them): {', '.join(left_out)}"
        )
    if job_id:
        print(f"re-decoded {redecode(job_id)} component(s)")


def cmd_reference_import_nifti(args) -> None:
    from pipeline.decoding.reference import nifti_folder_term_maps

    _reference_import(args, "nifti-folder", nifti_folder_term_maps(Path(args.directory)))


def _build_neurosynth(args, directory: Path) -> None:
    from pipeline.decoding.neurosynth import load_neurosynth
    from pipeline.decoding.reference import build_neurosynth_reference
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import redecode
    from store.db import session_scope

    if args.threshold is not None and not (0 < args.threshold < float("inf")):
        raise ValueError(f"--threshold must be a number > 0, got {args.threshold}")
    data = load_neurosynth(directory, vocab=args.vocab, version=args.version, tal2mni=args.tal2mni)
    vocab = data.vocabulary
    threshold = args.threshold if args.threshold is not None else vocab.default_threshold()
    name = args.name or f"Neurosynth v{vocab.version} {vocab.name}"
    terms = [t.strip() for t in args.terms.split(",")] if args.terms else None
    left_out: list[str] = []

    def show(done: int, total: int) -> None:
        print(f"\r{vocab.label}: {done}/{total} maps", end="", file=sys.stderr, flush=True)

    _init_db()
    with session_scope() as session:
        try:
            ref = build_neurosynth_reference(
                session,
                name,
                data,
                threshold=threshold,
                tal2mni=args.tal2mni,
                terms=terms,
                description=args.description or "",
                activate=args.activate,
                progress=show,
                left_out=left_out,
            )
        except ValueError as exc:
            if left_out and "no term maps" in str(exc):
                raise ValueError(
                    f"no term is left at --threshold {threshold:g}: every one would have a map of 0 everywhere "
                    f"(no study, or every study, has it): {', '.join(left_out)}"
                ) from None
            raise
        finally:
            print(file=sys.stderr)
        n_terms = len(ref.terms)
        job_id = create_job(session, "redecode").id if args.activate else None
    print(
        f"reference set {name!r}: {n_terms} terms from {vocab.label}, threshold {threshold:g}, "
        f"Talairach transform {args.tal2mni}" + (" (active)" if args.activate else "")
    )
    if left_out:
        print(
            f"left out {len(left_out)} term(s) whose map would be 0 everywhere (no study, or every study, has "
            f"them at --threshold {threshold:g}): {', '.join(left_out)}"
        )
    if job_id:
        print(f"re-decoded {redecode(job_id)} component(s)")


def cmd_reference_build_neurosynth(args) -> None:
    from pipeline.decoding.neurosynth import choose_vocabulary

    directory = Path(args.directory)
    if args.vocab is None:
        choose_vocabulary(directory, None, args.version)  # several vocabularies: list them before loading
    _build_neurosynth(args, directory)


def cmd_reference_fetch_neurosynth(args) -> None:
    from pipeline.decoding.fetch import fetch_files, load_manifest, vocabulary_files
    from store.config import get_settings

    names = vocabulary_files(args.version, args.vocab, load_manifest())
    directory = Path(args.dir) if args.dir else get_settings().data_dir / "neurosynth"
    shown = {"name": ""}

    def show(name: str, done: int, total: int | None) -> None:
        if name != shown["name"]:
            if shown["name"]:
                print(file=sys.stderr)
            shown["name"] = name
        if total:
            width = 30
            filled = int(width * done / total) if total else 0
            bar = "#" * filled + "-" * (width - filled)
            line = f"{name[:60]:<60} [{bar}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB"
        else:
            line = f"{name[:60]:<60} {done / 1e6:6.1f} MB"
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    try:
        fetch_files(names, directory, base_url=args.base_url, progress=show)
    finally:
        if shown["name"]:
            print(file=sys.stderr)
    print(f"{len(names)} file(s) in {directory}")
    args.vocab = names[2].split("_vocab-", 1)[1].split("_", 1)[0]
    _build_neurosynth(args, directory)


def cmd_reference_list(args) -> None:
    from sqlalchemy import func, select

    from pipeline.decoding.reference import reference_term_notes
    from store.db import session_scope
    from store.models import ReferenceSet, Term

    _init_db()
    with session_scope() as session:
        rows = session.execute(
            select(ReferenceSet, func.count(Term.id))
            .outerjoin(Term)
            .group_by(ReferenceSet.id)
            .order_by(ReferenceSet.id)
        ).all()
        if not rows:
            print("no reference sets; run `python -m pipeline init`")
        for ref, n in rows:
            notes = reference_term_notes(ref.description or "")
            counts = sorted(c for c, _ in notes.values())
            rests = f", {counts[0]}-{counts[-1]} studies per map (median {counts[len(counts) // 2]})" if counts else ""
            print(
                f"{'*' if ref.active else ' '} {ref.name}  [{ref.source}, {n} terms, {ref.voxel_count} voxels{rests}]"
            )
            if args.studies:
                for term, (count, _keys) in notes.items():
                    print(f"    {count:>7} studies  {term}")


def cmd_reference_activate(args) -> None:
    from sqlalchemy import select

    from pipeline.decoding.reference import set_active
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import redecode
    from store.db import session_scope
    from store.models import ReferenceSet

    _init_db()
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.name == args.name))
        if ref is None:
            names = ", ".join(session.scalars(select(ReferenceSet.name)))
            raise ValueError(f"no reference set named {args.name!r} (have: {names or 'none'})")
        set_active(session, ref)
        job_id = create_job(session, "redecode").id
    print(f"activated {args.name!r}; re-decoded {redecode(job_id)} component(s)")


def cmd_annotations_import(args) -> None:
    from sqlalchemy import select

    from pipeline.temporal.annotations import AnnotationError, add_annotation_set, recompute_here
    from store.db import session_scope
    from store.models import Movie, slugify

    _init_db()
    path = Path(args.file)
    if not path.is_file():
        raise ValueError(f"{args.file}: file not found")
    with session_scope() as session:
        movie = session.scalar(select(Movie).where(Movie.slug == slugify(args.movie)))
        if movie is None:
            raise ValueError(f"no movie {args.movie!r} (movies come with their collections)")
        try:
            annotation = add_annotation_set(
                session,
                None,
                movie,
                args.name,
                path.read_bytes(),
                path.name,
                description=args.description,
                source_url=args.source_url,
                skip_bad_lines=args.skip_bad_lines,
            )
        except AnnotationError as exc:
            if exc.n_valid:  # only bad lines stand in the way of the valid events
                raise AnnotationError(f"{exc} Run again with --skip-bad-lines to import them.") from None
            raise
        skipped = [str(line) for line in annotation.skipped_lines]
        if annotation.n_skipped > len(skipped):
            skipped.append(f"and {annotation.n_skipped - len(skipped):,} more")
        n_events, labels = len(annotation.events), sorted({e.label for e in annotation.events})
        movie_id = movie.id
    if skipped:
        print(f"skipped {annotation.n_skipped:,} bad line(s) of {path.name}:")
        for line in skipped:
            print(f"  {line}")
    print(
        f"annotation set {args.name!r} of {movie.title}: {n_events} events, {len(labels)} label(s) "
        f"({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})",
        flush=True,
    )
    # The same coalescing path as the annotations page, run in this process (after a recompute running elsewhere).
    job = recompute_here(movie_id, say=lambda text: print(text, flush=True))
    if job is None:
        print("no component of the movie has a time course: nothing to decode in time")
    elif job.status != "succeeded":
        raise RuntimeError(f"the recompute (job #{job.id}) {job.status}: {job.error or job.message}")
    else:
        print(f"job #{job.id}: {job.message or 'the components were decoded in time'}; decoded in time")


def cmd_ingest(args) -> None:
    from sqlalchemy import select

    from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
    from pipeline.curation.ingest import ingest
    from pipeline.decoding.reference import active_reference, ensure_default_reference
    from pipeline.jobs.lifecycle import create_job
    from pipeline.synchrony.jobs import run_after_ingest
    from pipeline.temporal.timing import Timing
    from store.db import session_scope
    from store.models import User

    _init_db()
    for f in args.files:
        if not Path(f).is_file():
            raise ValueError(f"{f}: file not found")
    if (args.tr is None) != (args.runs is None):
        raise ValueError("give --tr and --runs together (the timing of the time courses), or neither")
    timing = Timing.parse(args.tr, args.runs, args.subjects) if args.runs is not None else None
    with session_scope() as session:
        if active_reference(session) is None:
            ensure_default_reference(session)
        if args.owner:
            owner = session.scalar(select(User).where(User.email == args.owner.strip().lower()))
            if owner is None:
                raise ValueError(f"no user {args.owner}; create one with `python -m pipeline user create`")
        else:
            owner = session.scalar(select(User).where(User.role == "admin").order_by(User.id))
            if owner is None:
                raise ValueError("give --owner EMAIL (no admin exists to own the collection)")
        movie = get_or_create_movie(session, args.movie, args.year)
        collection = create_collection(session, owner, movie, args.collection, visibility=args.visibility)
        if timing is not None:
            collection.timing = timing.to_dict()
        for f in args.files:
            add_upload(session, collection, Path(f), Path(f).name)
        job_id = create_job(session, "ingest", collection.id, owner.id).id
        slug = collection.slug

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} components", end="", file=sys.stderr, flush=True)

    result = ingest(job_id, progress=show)
    run_after_ingest(job_id)
    print(file=sys.stderr)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for e in result.errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"collection {slug}: {result.components} component(s)")
    if not result.components:
        raise ValueError("no component could be ingested")


def cmd_user_create(args) -> None:
    from accounts.users import create_user
    from store.db import session_scope

    _init_db()
    password = os.environ.get("INCDB_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise ValueError("set INCDB_PASSWORD or run in a terminal to type the password")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the two passwords differ")
    with session_scope() as session:
        user = create_user(
            session,
            args.email,
            password,
            role="admin" if args.admin else "curator",
            first_name=args.first_name or "",
            last_name=args.last_name or "",
        )
        print(f"created {user.role} {user.email}")


def cmd_check(args) -> None:
    from pipeline.check import check_all, production_problems, production_warnings

    parts = check_all()
    width = max(len(p.name) for p in parts)
    for p in parts:
        print(f"{'ok ' if p.ok else 'FAIL'} {p.name:<{width}}  {p.value}" + (f"  ({p.detail})" if p.detail else ""))
    for warning in production_warnings():
        print(f"warning: {warning}")
    problems = production_problems()
    for problem in problems:
        print(f"refused: {problem}")
    if problems:
        raise RuntimeError(f"production configuration refused ({len(problems)} problem(s))")
    if not all(p.ok for p in parts):
        raise RuntimeError("some parts are not reachable")


def cmd_sweep(args) -> None:
    from datetime import timedelta

    from pipeline.jobs.sweep import sweep_storage

    # A dry run removes nothing, so it may look at any age; a real sweep keeps an hour for jobs about to commit.
    if args.grace_hours < 0 or (args.grace_hours < 1 and not args.dry_run):
        raise ValueError(
            "--grace-hours must be at least 1 (a younger file may belong to a job about to commit); "
            "any grace from 0 is accepted with --dry-run"
        )
    _init_db()
    result = sweep_storage(grace=timedelta(hours=args.grace_hours), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for key in result.removed:
        print(f"{verb} {key}")
    print(
        f"{verb} {len(result.removed)} unreferenced file(s); kept {result.kept_recent} newer than "
        f"{result.cutoff:%Y-%m-%d %H:%M} UTC"
    )


def cmd_stats_rebuild(args: argparse.Namespace) -> None:
    from store import stats
    from store.db import session_scope

    with session_scope() as session:
        written = stats.rebuild(session)
    print("rebuilt the derived counts: " + ", ".join(f"{n} {table}" for table, n in written.items()))


def cmd_stats_check(args: argparse.Namespace) -> None:
    from store import stats
    from store.db import session_scope

    with session_scope() as session:
        problems = stats.check(session)
    for line in problems[:50]:
        print(line)
    if problems:
        raise RuntimeError(
            f"{len(problems)} derived count(s) differ from a recomputation; run `python -m pipeline stats rebuild`"
        )
    print("the derived counts equal a recomputation from the base tables")


def cmd_thumbnails(args) -> None:
    from pipeline.maps.thumbnails import make_missing_thumbnails, stored_map_keys
    from store.db import session_scope

    _init_db()
    with session_scope() as session:
        keys = stored_map_keys(session)
    written = make_missing_thumbnails(keys, force=args.all)
    print(f"{written} thumbnail(s) written for {len(keys)} map(s)")


def cmd_similar_rebuild(args) -> None:
    from pipeline.decoding.similar import rebuild_index

    _init_db()

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} components", end="", file=sys.stderr, flush=True)

    result = rebuild_index(progress=show, sample=args.sample)
    print(file=sys.stderr)
    print(
        f"similarity index rebuilt: basis #{result.basis_id} of {result.dims} dimensions fitted on "
        f"{result.fitted_on} maps; {result.components} component(s) indexed, {result.exact_written} exact "
        "vector(s) made from their maps"
    )


def cmd_isc(args) -> None:
    from pipeline.synchrony.jobs import collections_to_compute, start_synchrony_job, synchrony_job
    from store.db import session_scope
    from store.models import ComponentISC, Job

    _init_db()
    if args.resamples < 1 or args.window <= 0:
        raise ValueError("--resamples must be at least 1 and --window a number of seconds above 0")
    with session_scope() as session:
        targets = collections_to_compute(session, args.collection)
    if not targets:
        print("no collection has components with time courses")
    for collection_id, slug in targets:
        with session_scope() as session:
            job_id = start_synchrony_job(session, collection_id).id
        try:
            done = synchrony_job(job_id, n_resamples=args.resamples, window_s=args.window)
        except Exception as exc:
            raise ValueError(f"collection {slug}: {exc}") from exc
        with session_scope() as session:
            note = session.get(Job, job_id).message
            with_isc = (
                session.query(ComponentISC)
                .filter_by(collection_id=collection_id)
                .filter(ComponentISC.isc.is_not(None) | ComponentISC.isc_pairwise.is_not(None))
                .count()
            )
        print(f"collection {slug}: {note or f'{done} component(s)'}; {with_isc} with an ISC value")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _neurosynth_build_options(p: argparse.ArgumentParser, vocab_default: str | None) -> None:
    p.add_argument("--name", default=None, help="name of the set (default: 'Neurosynth v<version> <vocabulary>')")
    p.add_argument("--description", default="")
    p.add_argument(
        "--vocab",
        default=vocab_default,
        help="terms, LDA50, LDA100, LDA200 or LDA400"
        + (" (default: terms)" if vocab_default else " (needed when the folder holds several)"),
    )
    p.add_argument(
        "--version",
        type=int,
        default=7 if vocab_default else None,
        help="Neurosynth version 3-7 (default: " + ("7)" if vocab_default else "the newest in the folder)"),
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="a study has a label when its value is >= this (default: 0.001 for tf-idf terms, 0.05 for topic weights)",
    )
    p.add_argument(
        "--tal2mni",
        choices=("lancaster", "brainmap"),
        default="lancaster",
        help="Talairach-to-MNI transform: lancaster (icbm_spm2tal inverse, Neurosynth's; default) or brainmap "
        "(icbm_other inverse, NiMARE's)",
    )
    p.add_argument("--terms", default="", help="comma-separated labels (default: the whole vocabulary)")
    p.add_argument("--activate", action="store_true", help="make it the active set and re-decode everything")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="INcDb command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "init", help="create/upgrade the database; build the default reference (Neurosynth v7 topics) if missing"
    )
    p.set_defaults(func=cmd_init)
    p = sub.add_parser(
        "check",
        help="show the database, broker, storage, merge backend and reference in use; "
        "refuse an unsafe production configuration",
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("demo", help="load the synthetic demo data set (running it twice changes nothing)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "decode", help="decode a map (every volume of a 4D file) against the active reference; best term first"
    )
    p.add_argument("map", help="a .nii or .nii.gz map (any space/resolution; resampled to MNI 2 mm)")
    p.add_argument("--top", type=int, default=None, help="print only the N best terms")
    p.add_argument("--volume", type=int, default=None, help="decode only this volume of a 4D file, from 1")
    p.add_argument(
        "--json",
        action="store_true",
        help='print a JSON list of {"term": ..., "r": ...}; for a 4D file one '
        '{"volume": ..., "error": ..., "warnings": [...], "decodings": [...]} per volume',
    )
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("merge", help="voxelwise mean of maps, zeros included (AFNI 3dmerge -doall)")
    p.add_argument("out")
    p.add_argument("inputs", nargs="+")
    p.add_argument(
        "--backend",
        choices=("auto", "afni", "numpy"),
        default=None,
        help="default: INCDB_MERGE_BACKEND or auto (AFNI when 3dmerge is on PATH)",
    )
    p.set_defaults(func=cmd_merge)

    ref = sub.add_parser("reference", help="reference sets: list, activate, import")
    rsub = ref.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    p = rsub.add_parser("import-nifti", help="import a folder of NIfTI term maps (term = file name)")
    p.add_argument("directory")
    p.add_argument("--name", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--activate", action="store_true", help="make it the active set and re-decode everything")
    p.set_defaults(func=cmd_reference_import_nifti)
    p = rsub.add_parser(
        "build-neurosynth", help="build association-test maps from a folder of Neurosynth release files"
    )
    p.add_argument("directory", help="a folder laid out as the neurosynth-data repository")
    _neurosynth_build_options(p, vocab_default=None)
    p.set_defaults(func=cmd_reference_build_neurosynth)
    p = rsub.add_parser(
        "fetch-neurosynth",
        help="download a Neurosynth vocabulary from the public neurosynth-data repository, then build it",
    )
    p.add_argument("--dir", default=None, help="download folder (default: <INCDB_DATA_DIR>/neurosynth)")
    p.add_argument(
        "--base-url",
        default=None,
        help="address of the files (default: INCDB_NEUROSYNTH_URL, else the repository's raw address at the "
        "pinned commit)",
    )
    _neurosynth_build_options(p, vocab_default="terms")
    p.set_defaults(func=cmd_reference_fetch_neurosynth)
    p = rsub.add_parser("list", help="list reference sets (* = active)")
    p.add_argument("--studies", action="store_true", help="also the number of studies each map rests on")
    p.set_defaults(func=cmd_reference_list)
    p = rsub.add_parser("activate", help="make a set active and re-decode every component")
    p.add_argument("name")
    p.set_defaults(func=cmd_reference_activate)

    p = sub.add_parser("ingest", help="add NIfTI files or archives as a new collection and process them")
    p.add_argument("files", nargs="+", metavar="FILE_OR_ARCHIVE")
    p.add_argument("--movie", required=True, help="movie title")
    p.add_argument("--year", type=int, default=None)
    p.add_argument("--collection", required=True, help="collection name")
    p.add_argument("--owner", default=None, help="owner's email (default: the first admin)")
    p.add_argument("--visibility", choices=("public", "private"), default="public")
    p.add_argument(
        "--tr",
        type=float,
        default=None,
        help="repetition time in seconds (with --runs: the timing that places time courses on the movie)",
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="START:N[,START:N...]",
        help="runs in concatenation order: movie time (s) of each run's first kept volume, and its volumes",
    )
    p.add_argument("--subjects", type=int, default=1, help="subjects concatenated in the time courses (default 1)")
    p.set_defaults(func=cmd_ingest)

    annotations = sub.add_parser("annotations", help="annotation sets of movies (events over movie time)")
    asub = annotations.add_subparsers(dest="annotations_command", required=True)
    p = asub.add_parser("import", help="add a BIDS-style events file (onset, duration, trial_type) to a movie")
    p.add_argument("movie", metavar="MOVIE_TITLE")
    p.add_argument("file", metavar="FILE.tsv")
    p.add_argument("--name", required=True, help="name of the annotation set")
    p.add_argument("--description", default="")
    p.add_argument("--source-url", default="")
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="import the valid lines of a file some of whose lines cannot be read, and list the skipped ones",
    )
    p.set_defaults(func=cmd_annotations_import)

    similar = sub.add_parser("similar", help="the index of similar components")
    ssub = similar.add_subparsers(dest="similar_command", required=True, metavar="ACTION")
    p = ssub.add_parser("rebuild", help="fit a new basis on the catalogue, index every component, switch to it")
    p.add_argument("--sample", type=int, default=1200, help="components the basis is fitted on (default 1200)")
    p.set_defaults(func=cmd_similar_rebuild)

    p = sub.add_parser("sweep", help="remove stored files that no row refers to (left by killed jobs)")
    p.add_argument(
        "--grace-hours",
        type=float,
        default=24.0,
        help="only files older than this (and than every running job); default 24, at least 1 unless --dry-run",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("isc", help="compute the inter-subject correlation (ISC, ISFC) of collections again")
    p.add_argument("--collection", metavar="SLUG", help="only this collection (default: every one with time courses)")
    p.add_argument("--resamples", type=int, default=1000, help="phase-randomisation resamples (default 1000)")
    p.add_argument("--window", type=float, default=30.0, help="window of the windowed ISC in seconds (default 30)")
    p.set_defaults(func=cmd_isc)

    stats = sub.add_parser("stats", help="the derived counts behind the browse pages")
    ssub = stats.add_subparsers(dest="stats_command", required=True, metavar="ACTION")
    p = ssub.add_parser("rebuild", help="recompute every derived count from the base tables (after bulk loads)")
    p.set_defaults(func=cmd_stats_rebuild)
    p = ssub.add_parser("check", help="compare the derived counts with a recomputation; exit 1 on a difference")
    p.set_defaults(func=cmd_stats_check)
    p = sub.add_parser("thumbnails", help="make the missing glass-brain thumbnails of stored maps (--all: every one)")
    p.add_argument("--all", action="store_true", help="remake thumbnails that exist too")
    p.set_defaults(func=cmd_thumbnails)

    user = sub.add_parser("user", help="user accounts")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = usub.add_parser("create", help="create a user (password from INCDB_PASSWORD or asked)")
    p.add_argument("email")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--first-name", default="")
    p.add_argument("--last-name", default="")
    p.set_defaults(func=cmd_user_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"error: {message.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
