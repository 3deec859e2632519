"""Browse at scale: the same queries, API routes and page callbacks on the demo data and on a large synthetic
catalogue, in one run (DESIGN section 16).

Two databases are made: "demo" (the demo data set) and "scale" (the demo data plus, by bulk inserts, 1,000 movies,
10,000 collections of which 10% private, 200,000 components, 50 decoding rows each = 10 M, an annotation set per
movie and temporal decodings for a tenth of the components). Both use the same synthetic 3,228-term reference set,
active, with the demo components re-labelled to its terms, then ``python -m pipeline stats rebuild``. The bench
then times, in one process per database, every browse query (anonymous, a curator with private collections, an
admin), every API route and every page callback (p50/p95 of ``--repeats`` calls, one client); then 50 concurrent
clients under gunicorn on the scale database (browse p95 over a no-op callback's p95); then the ingest of one
70-component collection into each database. On SQLite (the embedded default) a catalogue of ``--sqlite-components``
components is timed the same way, pages only.

Database: PostgreSQL at ``INCDB_DATABASE_URL`` (its server; the bench creates and drops its own databases), or
``--sqlite`` only. Scratch data (a 3 GB reference matrix) lives in a temporary folder removed at the end.

Ends with ``worst_p95_ms=.. worst_ratio=.. ingest_ratio=.. sqlite_worst_page_ms=..``.
Run by hand: ``python bench/scale.py [--components 200000] [--movies 1000] [--collections 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.browse import page_payload, percentile  # noqa: E402  (after the path: run as a script)

BENCH_REFERENCE = "bench 3228 terms"
DECODINGS_PER_COMPONENT = 50
LABELS = [f"label {i:03d}" for i in range(300)]


# --- filling a database (runs in a child process with the database's environment) --------------------------------


def fill(size: dict, matrix: Path) -> None:
    import numpy as np
    from sqlalchemy import insert, select, text, update

    from pipeline.curation.demo import load_demo
    from pipeline.decoding.reference import matrix_path
    from pipeline.maps.grid import mask_flat_indices
    from store import stats
    from store.db import get_engine, session_scope, upgrade_database
    from store.models import Component, ReferenceSet, Term, User

    upgrade_database()
    load_demo(progress=None)
    rng = np.random.default_rng(1)
    n_terms = size["terms"]
    with session_scope() as session:
        builtin_keys = list(session.scalars(select(Term.storage_key)))
        session.add(User(email="bench-admin@example.org", password_hash="", role="admin"))
        ref = ReferenceSet(name=BENCH_REFERENCE, source="builtin", voxel_count=len(mask_flat_indices()))
        session.add(ref)
        session.flush()
        session.execute(
            insert(Term),
            [
                {
                    "reference_set_id": ref.id,
                    "name": f"term {i:04d}",
                    "slug": f"term-{i:04d}",
                    "column": i,
                    "storage_key": builtin_keys[i % len(builtin_keys)],
                }
                for i in range(n_terms)
            ],
        )
        session.execute(update(ReferenceSet).values(active=False))
        session.execute(update(ReferenceSet).where(ReferenceSet.id == ref.id).values(active=True, matrix_key="x"))
        path = matrix_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(matrix)
        term_ids = list(session.scalars(select(Term.id).where(Term.reference_set_id == ref.id).order_by(Term.column)))
        demo = session.execute(select(Component.id, Component.storage_key, Component.decodings_key)).all()
        # the demo components, re-labelled to the bench terms (a few popular terms, a long tail)
        for comp_id, _, _ in demo:
            session.execute(
                update(Component)
                .where(Component.id == comp_id)
                .values(best_term_id=term_ids[_popular_term(rng, n_terms)], best_r=float(rng.uniform(0.1, 0.6)))
            )
        session.execute(text("DELETE FROM decodings"))
        stats.rebuild(session)
    extra = size["components"]
    if extra:
        _bulk(size, term_ids, demo, rng)
    with session_scope() as session:
        written = stats.rebuild(session)
    with get_engine().connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    print(json.dumps({"stats_rows": written}))


def _popular_term(rng, n_terms: int) -> int:
    return int(min(n_terms - 1, rng.zipf(1.4) - 1)) if rng.random() < 0.7 else int(rng.integers(n_terms))


def _bulk(size: dict, term_ids: list[int], demo: list, rng) -> None:
    """Movies, users, collections, components, decodings, annotations and temporal decodings by bulk inserts."""
    import numpy as np
    from sqlalchemy import insert, select

    from store.db import get_engine, session_scope
    from store.models import AnnotationEvent, AnnotationSet, Collection, Component, Movie, User

    start = datetime(2020, 1, 1, tzinfo=UTC)
    n_movies, n_coll, n_comp = size["movies"], size["collections"], size["components"]
    with session_scope() as session:
        session.execute(
            insert(User),
            [
                {"email": f"bench{i}@example.org", "password_hash": "", "role": "curator", "active": True}
                for i in range(200)
            ],
        )
        user_ids = list(session.scalars(select(User.id).where(User.email.like("bench%@example.org"))))
        session.execute(
            insert(Movie),
            [
                {
                    "title": f"Bench Movie {i:05d}",
                    "slug": f"bench-movie-{i:05d}",
                    "year": 1950 + i % 70,
                    "created": start,
                }
                for i in range(n_movies)
            ],
        )
        movie_ids = list(session.scalars(select(Movie.id).where(Movie.slug.like("bench-movie-%"))))
        coll_rows = []
        # collections per movie: a soft long tail (weight 1 / (rank + 10)): the biggest movie holds about 2%
        weights = 1.0 / (np.arange(len(movie_ids)) + 10.0)
        movie_of = rng.choice(len(movie_ids), size=n_coll, p=weights / weights.sum())
        for i in range(n_coll):
            coll_rows.append(
                {
                    "owner_id": user_ids[i % len(user_ids)],
                    "movie_id": movie_ids[movie_of[i]],
                    "name": f"Bench collection {i}",
                    "slug": f"bench-collection-{i}",
                    "visibility": "private" if i % 10 == 0 else "public",
                    "status": "ready",
                    "is_demo": False,
                    "metadata_": {},
                    "created": start + timedelta(minutes=i),
                    "updated": start,
                }
            )
        for chunk in range(0, len(coll_rows), 5000):
            session.execute(insert(Collection), coll_rows[chunk : chunk + 5000])
        coll_ids = list(session.scalars(select(Collection.id).where(Collection.slug.like("bench-collection-%"))))
        movie_sets = []
        for m in movie_ids:
            movie_sets.append(
                {
                    "movie_id": m,
                    "name": "Bench events",
                    "description": "",
                    "source_url": "",
                    "is_demo": False,
                    "created": start,
                }
            )
        session.execute(insert(AnnotationSet), movie_sets)
        set_ids = dict(
            session.execute(
                select(AnnotationSet.movie_id, AnnotationSet.id).where(AnnotationSet.name == "Bench events")
            ).all()
        )
        events = [
            {
                "set_id": sid,
                "onset": float(k * 30),
                "duration": 10.0,
                "label": LABELS[(m * 7 + k) % 300],
                "amplitude": 1.0,
            }
            for m, sid in set_ids.items()
            for k in range(100)
        ]
        for chunk in range(0, len(events), 20000):
            session.execute(insert(AnnotationEvent), events[chunk : chunk + 20000])
        coll_movie = dict(
            session.execute(select(Collection.id, Collection.movie_id).where(Collection.id.in_(coll_ids))).all()
        )
    per_coll = np.full(len(coll_ids), n_comp // len(coll_ids))
    per_coll[: n_comp - per_coll.sum()] += 1
    comp_rows = []
    for cid, n in zip(coll_ids, per_coll):
        for v in range(int(n)):
            _, key, dkey = demo[len(comp_rows) % len(demo)]
            comp_rows.append(
                {
                    "uuid": str(uuidlib.uuid4()),
                    "collection_id": cid,
                    "source_file": "melodic_IC.nii.gz",
                    "volume_index": v,
                    "storage_key": key,
                    "decodings_key": dkey,
                    "best_term_id": term_ids[_popular_term(rng, len(term_ids))],
                    "best_r": float(rng.uniform(0.05, 0.7)),
                    "qc_warnings": [],
                    "created": start,
                    "decoded_at": start,
                }
            )
    with session_scope() as session:
        for chunk in range(0, len(comp_rows), 10000):
            session.execute(insert(Component), comp_rows[chunk : chunk + 10000])
        comps = session.execute(
            select(Component.id, Component.best_term_id, Component.best_r, Component.collection_id)
            .where(Component.collection_id.in_(coll_ids))
            .order_by(Component.id)
        ).all()
    term_array = np.array(term_ids)
    engine = get_engine()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for chunk in range(0, len(comps), 20000):
            part = comps[chunk : chunk + 20000]
            ids = np.repeat([c[0] for c in part], DECODINGS_PER_COMPONENT)
            # the best term, then 49 others, distinct: best + 1 + k * step (mod the number of terms)
            column = {tid: i for i, tid in enumerate(term_ids)}
            best = np.array([column[c[1]] for c in part])
            step = max(1, (len(term_ids) - 1) // DECODINGS_PER_COMPONENT)
            offsets = np.concatenate([[0], 1 + step * np.arange(DECODINGS_PER_COMPONENT - 1)])
            terms = term_array[(best[:, None] + offsets[None, :]) % len(term_ids)]
            ranks = np.tile(np.arange(1, DECODINGS_PER_COMPONENT + 1), len(part))
            r = (np.array([c[2] for c in part])[:, None] * np.linspace(1, 0.2, DECODINGS_PER_COMPONENT)).ravel()
            rows = zip(ids.tolist(), terms.ravel().tolist(), r.tolist(), ranks.tolist())
            _copy(conn, raw, "decodings", ("component_id", "term_id", "r", "rank"), rows)
        temporal = []
        for comp_id, _, _, cid in comps[::10]:
            sid = set_ids[coll_movie[cid]]
            for k in range(10):
                temporal.append(
                    (
                        comp_id,
                        sid,
                        LABELS[(coll_movie[cid] * 7 + k) % 300],
                        float(rng.uniform(-0.3, 0.5)),
                        float(rng.uniform(0, 1)),
                        float(rng.uniform(0, 1) ** 3),
                        k + 1,
                    )
                )
        _copy(conn, raw, "temporal_decodings", ("component_id", "set_id", "label", "r", "p", "q", "rank"), temporal)
        conn.commit()


def _copy(conn, raw, table: str, columns: tuple[str, ...], rows) -> None:
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.commit()
    else:
        marks = ", ".join("?" * len(columns))
        raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", list(rows))
        raw.commit()


# --- timing (in a child process with the database's environment) -------------------------------------------------


def targets() -> dict:
    """Names to ask for: the most used term, the movie with most components, a component, a label, users."""
    from sqlalchemy import func, select

    from store.db import session_scope
    from store.models import Collection, Component, MovieStats, MovieTermStats, TemporalDecoding, Term, TermStats, User

    with session_scope() as session:
        term_id = session.scalar(
            select(TermStats.term_id)
            .where(TermStats.scope == "public")
            .order_by(TermStats.n_components.desc())
            .limit(1)
        )
        movie_id = session.scalar(
            select(MovieStats.movie_id)
            .where(MovieStats.scope == "public")
            .order_by(MovieStats.n_components.desc())
            .limit(1)
        )
        cell_term = session.scalar(
            select(MovieTermStats.term_id)
            .where(MovieTermStats.scope == "public", MovieTermStats.movie_id == movie_id)
            .order_by(MovieTermStats.n_components.desc())
            .limit(1)
        )
        from store.models import Movie

        owner = session.scalar(select(Collection.owner_id).where(Collection.visibility == "private").limit(1))
        label = (
            session.scalar(
                select(TemporalDecoding.label).group_by(TemporalDecoding.label).order_by(func.count().desc()).limit(1)
            )
            or "no label"
        )
        return {
            "term": session.get(Term, term_id).slug,
            "movie": session.get(Movie, movie_id).slug,
            "cell_term": session.get(Term, cell_term).slug,
            "component": session.scalar(
                select(Component.uuid)
                .join(Collection)
                .where(Collection.visibility == "public")
                .order_by(Component.best_r.desc())
                .limit(1)
            ),
            "label": label,
            "curator": owner,
            "admin": session.scalar(select(User.id).where(User.role == "admin").limit(1)),
        }


def pages(t: dict) -> list[str]:
    return [
        "/",
        "/terms",
        "/terms?sort=components",
        f"/terms/{t['term']}",
        "/movies",
        "/movies?sort=newest",
        f"/movies/{t['movie']}",
        f"/movies/{t['movie']}/{t['cell_term']}",
        f"/components/{t['component']}",
        f"/labels/{t['label']}",
    ]


def api_routes(t: dict) -> list[str]:
    return [
        "/api/stats",
        "/api/heatmap?terms=20&movies=20",
        "/api/terms",
        "/api/terms?sort=components",
        "/api/terms?search=term 01",
        f"/api/terms/{t['term']}",
        "/api/movies",
        "/api/movies?sort=newest",
        "/api/movies?sort=components",
        "/api/movies?search=movie 001",
        f"/api/movies/{t['movie']}",
        f"/api/movies/{t['movie']}/{t['cell_term']}",
        "/api/components",
        f"/api/components?term={t['term']}",
        f"/api/components?movie={t['movie']}",
        f"/api/components/{t['component']}",
        "/api/search?q=movie 00",
        "/api/collections",
        f"/api/labels/{t['label']}",
        f"/api/movies/{t['movie']}/annotations",
    ]


def time_all(repeats: int, pages_only: bool) -> None:
    from store import queries, timeline
    from store.db import session_scope
    from store.models import User

    t = targets()
    out: dict[str, list[float]] = {}

    def clock(name: str, fn) -> None:
        for _ in range(2):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = times

    with session_scope() as session:
        people = {"anonymous": None, "curator": session.get(User, t["curator"]), "admin": session.get(User, t["admin"])}
        for u in people.values():
            if u is not None:
                session.expunge(u)
    if not pages_only:
        calls = {
            "heatmap": lambda s, u: queries.heatmap(s, u),
            "counts": lambda s, u: queries.counts(s, u),
            "list_movies": lambda s, u: queries.list_movies(s, u),
            "list_movies(newest)": lambda s, u: queries.list_movies(s, u, sort="newest"),
            "list_movies(components)": lambda s, u: queries.list_movies(s, u, sort="components"),
            "recent_movies": lambda s, u: queries.recent_movies(s, u),
            "list_terms": lambda s, u: queries.list_terms(s, u),
            "list_terms(components)": lambda s, u: queries.list_terms(s, u, sort="components", descending=True),
            "list_terms(search)": lambda s, u: queries.list_terms(s, u, search="term 01"),
            "list_components": lambda s, u: queries.list_components(s, u),
            "list_components(term)": lambda s, u: queries.list_components(s, u, term_slug=t["term"]),
            "list_components(term, page 50)": lambda s, u: queries.list_components(s, u, term_slug=t["term"], page=50),
            "list_components(movie)": lambda s, u: queries.list_components(s, u, movie_slug=t["movie"]),
            "term_detail": lambda s, u: queries.term_detail(s, u, t["term"]),
            "movie_detail": lambda s, u: queries.movie_detail(s, u, t["movie"]),
            "movie_term": lambda s, u: queries.movie_term(s, u, t["movie"], t["cell_term"]),
            "component_detail": lambda s, u: queries.component_detail(s, u, t["component"]),
            "search": lambda s, u: queries.search(s, u, "movie 00"),
            "list_collections": lambda s, u: queries.list_collections(s, u),
            "label_components": lambda s, u: timeline.label_components(s, u, t["label"]),
        }
        for who, u in people.items():
            for name, call in calls.items():

                def run(call=call, u=u):
                    with session_scope() as s:
                        call(s, u)

                clock(f"query {name} [{who}]", run)
    from app import server

    server.config["TESTING"] = True
    clients = {"anonymous": server.test_client()}
    from store.db import session_scope as scope

    for who in ("curator", "admin"):
        c = server.test_client()
        with scope() as s:
            version = s.get(User, t[who]).session_version
        with c.session_transaction() as sess:
            sess["_user_id"] = f"{t[who]}:{version}"
            sess["_fresh"] = True
            sess["_csrf"] = token = uuidlib.uuid4().hex
        c.environ_base["HTTP_X_CSRFTOKEN"] = token
        clients[who] = c
    for who, c in clients.items():
        for path in pages(t):
            payload = page_payload(path)
            clock(
                f"page {path} [{who}]",
                lambda c=c, payload=payload: _ok(c.post("/_dash-update-component", json=payload)),
            )
        if not pages_only:
            for route in api_routes(t):
                clock(f"api {route} [{who}]", lambda c=c, route=route: _ok(c.get(route)))
    print(json.dumps({"targets": t, "times": out}))


def explain_all() -> None:
    """EXPLAIN ANALYZE every statement the browse queries run for an anonymous visitor and a curator; prints each
    plan's time and any sequential scan of a table with more than 10,000 rows."""
    from sqlalchemy import event, text

    from store import queries, timeline
    from store.db import get_engine, session_scope
    from store.models import User

    t = targets()
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    with session_scope() as session:
        curator = session.get(User, t["curator"])
        session.expunge(curator)
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", capture)
    for who in (None, curator):
        with session_scope() as s:
            queries.heatmap(s, who)
            queries.counts(s, who)
            queries.list_movies(s, who, sort="newest")
            queries.list_terms(s, who, sort="components", descending=True)
            queries.list_terms(s, who, search="term 01")
            queries.list_components(s, who, term_slug=t["term"])
            queries.list_components(s, who)
            queries.term_detail(s, who, t["term"])
            queries.movie_detail(s, who, t["movie"])
            queries.search(s, who, "movie 00")
            timeline.label_components(s, who, t["label"])
    event.remove(engine, "before_cursor_execute", capture)
    big = {
        r[0]
        for r in engine.connect().execute(
            text("SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > 10000")
        )
    }
    worst = 0.0
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in captured:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + statement, parameters)
                plan = [row[0] for row in cur.fetchall()]
            ms = float(plan[-1].split(":")[1].split()[0])
            worst = max(worst, ms)
            scans = [
                line.strip()
                for line in plan
                if "Seq Scan on" in line and line.split("Seq Scan on ")[1].split()[0] in big
            ]
            if scans or ms > 20:
                print(f"{ms:8.1f} ms  {' '.join(statement.split())[:150]}")
                for line in scans:
                    print(f"           {line}")
        raw.rollback()
    print(json.dumps({"statements": len(captured), "worst_ms": worst}))


def _ok(response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:200]}")


def ingest_once(n_components: int) -> None:
    """Ingest the same 70-component file twice, into two new movies: the first run makes the merged maps of the
    terms it touches (and their running sums) as an earlier upload would have; the second one is timed."""
    import nibabel as nib
    from sqlalchemy import select

    from bench.ingest import melodic_like
    from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
    from pipeline.curation.ingest import ingest
    from pipeline.decoding.reference import load_matrix, require_active_reference
    from pipeline.jobs.lifecycle import create_job
    from store.db import session_scope
    from store.models import User

    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "melodic_IC.nii.gz"
        nib.save(melodic_like(n_components), f)
        for run in range(2):
            with session_scope() as session:
                user = session.scalar(select(User).where(User.role == "admin").limit(1))
                movie = get_or_create_movie(session, f"Ingest bench {run} {uuidlib.uuid4().hex[:6]}")
                collection = create_collection(session, user, movie, f"ingest bench {uuidlib.uuid4().hex[:6]}")
                add_upload(session, collection, f, f.name)
                job_id = create_job(session, "ingest", collection.id, user.id).id
                matrix, _ = load_matrix(session, require_active_reference(session))
            for start in range(0, matrix.shape[0], 8192):  # page the matrix in, as a running worker has it
                matrix[start : start + 8192].sum()
            start = time.perf_counter()
            result = ingest(job_id)
            seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds[1], "first_seconds": seconds[0], "components": result.components}))


# --- the run --------------------------------------------------------------------------------------------------------


def child(mode: str, env: dict, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, mode, *extra], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def environment(data_dir: Path, database_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        INCDB_DATA_DIR=str(data_dir),
        INCDB_DATABASE_URL=database_url,
        INCDB_MERGE_BACKEND="numpy",
        INCDB_BROKER_URL="",
        INCDB_DEMO="0",
    )
    return env


def summarize(times: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    return {k: (percentile(v, 0.5) * 1000, percentile(v, 0.95) * 1000) for k, v in times.items()}


def concurrent(env: dict, t: dict, clients: int, seconds: float) -> tuple[float, float, int]:
    import requests

    port = 8700 + random.randrange(200)
    base = f"http://127.0.0.1:{port}"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "app:server"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    noop = {
        "output": "noop-out.data",
        "outputs": {"id": "noop-out", "property": "data"},
        "inputs": [{"id": "noop-in", "property": "data", "value": 1}],
        "changedPropIds": ["noop-in.data"],
        "state": [],
    }
    latencies: dict[str, list[float]] = defaultdict(list)
    errors = [0]
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(base + "/api/stats", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        for _ in range(8):
            requests.post(base + "/_dash-update-component", json=page_payload("/"), timeout=30)
        stop_at = time.time() + seconds
        lock = threading.Lock()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            http = requests.Session()
            while time.time() < stop_at:
                pick = rng.random()
                if pick < 0.4:
                    kind, call = (
                        "browse",
                        lambda: http.post(
                            base + "/_dash-update-component", timeout=60, json=page_payload(rng.choice(pages(t)))
                        ),
                    )
                elif pick < 0.8:
                    kind, call = "browse", lambda: http.get(base + rng.choice(api_routes(t)), timeout=60)
                else:
                    kind, call = "noop", lambda: http.post(base + "/_dash-update-component", json=noop, timeout=60)
                start = time.perf_counter()
                try:
                    ok = call().status_code == 200
                except requests.RequestException:
                    ok = False
                with lock:
                    latencies[kind].append(time.perf_counter() - start)
                    errors[0] += not ok

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return percentile(latencies["browse"], 0.95) * 1000, percentile(latencies["noop"], 0.95) * 1000, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--movies", type=int, default=1000)
    parser.add_argument("--collections", type=int, default=10000)
    parser.add_argument("--components", type=int, default=200000)
    parser.add_argument("--terms", type=int, default=3228)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--ingest-components", type=int, default=70)
    parser.add_argument("--sqlite-components", type=int, default=20000)
    parser.add_argument("--sqlite", action="store_true", help="only the SQLite part")
    args = parser.parse_args()
    import sqlalchemy as sa

    from bench.decode import synthetic_reference
    from pipeline.maps.grid import mask_flat_indices

    scratch = Path(tempfile.mkdtemp(prefix="incdb-bench-scale-"))
    created: list[str] = []
    admin_url = os.environ.get("INCDB_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT") if not args.sqlite else None
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        matrix = scratch / "reference.npy"
        synthetic_reference(matrix, len(mask_flat_indices()), args.terms)
        big = {
            "movies": args.movies,
            "collections": args.collections,
            "components": args.components,
            "terms": args.terms,
        }
        results = {}
        envs = {}
        if not args.sqlite:
            for name, size in (("demo", {**big, "components": 0}), ("scale", big)):
                db = f"incdb_bench_{name}_{uuidlib.uuid4().hex[:6]}"
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
                created.append(db)
                url = admin_url.rsplit("/", 1)[0] + f"/{db}"
                envs[name] = environment(scratch / name, url)
                start = time.perf_counter()
                child("_fill", envs[name], json.dumps(size), str(matrix))
                say(f"{name}: filled in {time.perf_counter() - start:.0f} s")
                results[name] = child("_time", envs[name], str(args.repeats), "0")
            demo, scale = summarize(results["demo"]["times"]), summarize(results["scale"]["times"])
            say(f"{'request':<72} {'demo p50/p95 ms':>16} {'scale p50/p95 ms':>17} {'ratio':>6}")
            worst_p95, worst_ratio = 0.0, 0.0
            for key in scale:
                generic = key.replace(results["scale"]["targets"]["term"], "<term>")
                d = demo.get(_swap(key, results["scale"]["targets"], results["demo"]["targets"]))
                ratio = scale[key][1] / d[1] if d else float("nan")
                say(
                    f"{generic[:72]:<72} {d[0] if d else float('nan'):7.1f}/{d[1] if d else float('nan'):7.1f} "
                    f"{scale[key][0]:8.1f}/{scale[key][1]:7.1f} {ratio:6.2f}"
                )
                if not key.startswith("page"):
                    worst_p95 = max(worst_p95, scale[key][1])
                if d:
                    worst_ratio = max(worst_ratio, ratio)
            p95_browse, p95_noop, errors = concurrent(
                envs["scale"], results["scale"]["targets"], args.clients, args.seconds
            )
            say(
                f"{args.clients} clients under gunicorn at scale: browse p95 {p95_browse:.0f} ms, no-op p95 "
                f"{p95_noop:.0f} ms, ratio {p95_browse / p95_noop:.2f}, errors {errors}"
            )
            ingest = {
                name: child("_ingest", envs[name], str(args.ingest_components))["seconds"] for name in ("demo", "scale")
            }
            ingest_ratio = ingest["scale"] / ingest["demo"]
            say(
                f"ingest of {args.ingest_components} components: demo {ingest['demo']:.1f} s, scale "
                f"{ingest['scale']:.1f} s, ratio {ingest_ratio:.2f}"
            )
        else:
            worst_p95 = worst_ratio = ingest_ratio = float("nan")
        n_sqlite = args.sqlite_components
        small = {
            "movies": max(10, args.movies * n_sqlite // max(1, args.components)),
            "collections": max(10, args.collections * n_sqlite // max(1, args.components)),
            "components": n_sqlite,
            "terms": args.terms,
        }
        env = environment(scratch / "sqlite", f"sqlite:///{scratch / 'sqlite' / 'incdb.sqlite3'}")
        child("_fill", env, json.dumps(small), str(matrix))
        sqlite = summarize(child("_time", env, str(args.repeats), "1")["times"])
        worst_page = max(p95 for _, p95 in sqlite.values())
        for key, (p50, p95) in sqlite.items():
            say(f"SQLite {n_sqlite} components: {key[:70]:<70} p50 {p50:6.1f} ms p95 {p95:6.1f} ms")
        say(
            f"worst_p95_ms={worst_p95:.1f} worst_ratio={worst_ratio:.2f} ingest_ratio={ingest_ratio:.2f} "
            f"sqlite_worst_page_ms={worst_page:.1f}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if admin is not None:
            with admin.connect() as conn:
                for db in created:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            admin.dispose()


def _swap(key: str, a: dict, b: dict) -> str:
    """The same request on the other database (its own most used term, biggest movie, ...)."""
    for name in ("term", "movie", "cell_term", "component", "label"):
        if a[name] != b[name]:
            key = key.replace(str(a[name]), str(b[name]))
    return key


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_fill":
        from pathlib import Path as _P

        fill(json.loads(sys.argv[2]), _P(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_time":
        time_all(int(sys.argv[2]), sys.argv[3] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "_explain":
        explain_all()
    elif len(sys.argv) > 1 and sys.argv[1] == "_ingest":
        ingest_once(int(sys.argv[2]))
    else:
        main()
