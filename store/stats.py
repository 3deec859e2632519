"""Derived counts (DESIGN section 16): per term, movie and movie x term, and for the whole catalogue, kept in the
transaction that changes their inputs, so that no page aggregates the catalogue.

Two scopes are stored: "public" (public collections, what anonymous visitors see) and "all" (what an admin sees).
A curator sees "public" plus their own private collections, added by :func:`own_private_cells` and friends, a live
query over their own rows only.

How the numbers stay right:

- A session listener notes every movie whose components or collections an ORM flush adds, changes or deletes
  (including a collection's old movie when it moves, and visibility changes). Just before the transaction commits,
  :func:`refresh_movie` recomputes that movie's rows from the base tables (a query over one movie's components, never
  the catalogue) and applies the difference to the term and catalogue rows. The movie's row is locked first
  (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time), so two transactions refreshing the
  same movie run one after the other and the second one sees the first one's rows.
- Term and catalogue rows change by increments (``n = n + delta``, upserted), in term order, so concurrent
  transactions on different movies neither lose updates nor deadlock. "Newest" per term is the maximum over its
  movie x term rows (an index lookup).
- :func:`rebuild` recomputes everything from the base tables (``python -m pipeline stats rebuild``, after bulk
  loads that bypass the ORM); :func:`check` compares the stored rows with a recomputation
  (``python -m pipeline stats check``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, event, func, insert, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, attributes

from store.models import (
    STATS_SCOPES,
    CatalogStats,
    Collection,
    Component,
    Movie,
    MovieStats,
    MovieTermStats,
    TermStats,
)

_PENDING = "incdb_stats_movies"  # session.info key: movie ids to refresh before commit
_PENDING_OBJECTS = "incdb_stats_objects"  # new rows whose movie is known only after the flush
_PENDING_COLLECTIONS = "incdb_stats_collections"  # collections whose components changed
_KEYS = (_PENDING, _PENDING_OBJECTS, _PENDING_COLLECTIONS)
REL_TOLERANCE = 1e-9  # sums of r kept by increments may differ from a recomputation by rounding only

_COMPONENT_FIELDS = ("collection_id", "best_term_id", "best_r")
_COLLECTION_FIELDS = ("movie_id", "visibility", "created")


def _in_scope(scope: str):
    return Collection.visibility == "public" if scope == "public" else true()


# --- tracking changes ---------------------------------------------------------------------------------------------


def _changed(obj: Any, fields: Iterable[str]) -> bool:
    state = attributes.instance_state(obj)
    return any(state.attrs[f].history.has_changes() for f in fields)


def _old_values(obj: Any, field: str) -> list[Any]:
    history = attributes.instance_state(obj).attrs[field].history
    return [v for v in (history.deleted or ()) if v is not None]


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, _context: Any, _instances: Any) -> None:
    movies: set[int] = session.info.setdefault(_PENDING, set())
    objects: list[Any] = session.info.setdefault(_PENDING_OBJECTS, [])
    collections: set[int] = set()
    for obj in session.new:
        if isinstance(obj, Component | Collection):
            objects.append(obj)
    for obj in session.dirty:
        if isinstance(obj, Component) and _changed(obj, _COMPONENT_FIELDS):
            collections.update([obj.collection_id, *_old_values(obj, "collection_id")])
        elif isinstance(obj, Collection) and _changed(obj, _COLLECTION_FIELDS):
            movies.update([obj.movie_id, *_old_values(obj, "movie_id")])
    for obj in session.deleted:
        if isinstance(obj, Component):
            collections.add(obj.collection_id)
        elif isinstance(obj, Collection):
            movies.update([obj.movie_id, *_old_values(obj, "movie_id")])
    session.info.setdefault(_PENDING_COLLECTIONS, set()).update(collections)


@event.listens_for(Session, "before_commit")
def _refresh_before_commit(session: Session) -> None:
    if not any(session.info.get(k) for k in _KEYS):
        return
    session.flush()
    movies = session.info.pop(_PENDING, set())
    objects = session.info.pop(_PENDING_OBJECTS, [])
    collections = session.info.pop(_PENDING_COLLECTIONS, set())
    collections |= {o.collection_id for o in objects if isinstance(o, Component)}
    movies |= {o.movie_id for o in objects if isinstance(o, Collection)}
    collections.discard(None)
    if collections:
        movies |= set(session.scalars(select(Collection.movie_id).where(Collection.id.in_(collections))))
    movies.discard(None)
    for movie_id in sorted(movies):
        refresh_movie(session, movie_id)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: nothing of it will be committed
        for key in _KEYS:
            session.info.pop(key, None)


# --- recomputing one movie ------------------------------------------------------------------------------------------


@dataclass
class Counts:
    n_collections: int = 0
    n_components: int = 0
    sum_r: float = 0.0
    newest: datetime | None = None


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; they were written in UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _movie_from_base(session: Session, movie_id: int, scope: str) -> tuple[Counts | None, dict[int, Counts]]:
    where = (Collection.movie_id == movie_id, _in_scope(scope))
    n_coll, newest = session.execute(
        select(func.count(Collection.id), func.max(Collection.created)).where(*where)
    ).one()
    if not n_coll:
        return None, {}
    n_comp = session.scalar(
        select(func.count(Component.id)).join(Collection, Component.collection_id == Collection.id).where(*where)
    )
    movie = Counts(int(n_coll), int(n_comp or 0), 0.0, _aware(newest))
    cells = {
        term_id: Counts(int(nc), int(n), float(s or 0.0), _aware(latest))
        for term_id, n, nc, s, latest in session.execute(
            select(
                Component.best_term_id,
                func.count(Component.id),
                func.count(func.distinct(Collection.id)),
                func.sum(Component.best_r),
                func.max(Collection.created),
            )
            .join(Collection, Component.collection_id == Collection.id)
            .where(*where, Component.best_term_id.is_not(None))
            .group_by(Component.best_term_id)
        )
    }
    return movie, cells


def _stored_movie(session: Session, movie_id: int, scope: str) -> tuple[Counts | None, dict[int, Counts]]:
    row = session.get(MovieStats, (scope, movie_id), populate_existing=True)
    movie = None if row is None else Counts(row.n_collections, row.n_components, 0.0, _aware(row.newest))
    cells = {
        t: Counts(nc, n, s, _aware(latest))
        for t, nc, n, s, latest in session.execute(
            select(
                MovieTermStats.term_id,
                MovieTermStats.n_collections,
                MovieTermStats.n_components,
                MovieTermStats.sum_r,
                MovieTermStats.newest,
            ).where(MovieTermStats.scope == scope, MovieTermStats.movie_id == movie_id)
        )
    }
    return movie, cells


def _upsert_add(session: Session, table: Any, keys: dict[str, Any], deltas: dict[str, Any]) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET field = field + delta`` on PostgreSQL and SQLite."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**keys, **deltas)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={f: getattr(table.c, f) + stmt.excluded[f] for f in deltas}
    )
    session.execute(stmt)


def refresh_movie(session: Session, movie_id: int) -> None:
    """Recompute one movie's derived rows from the base tables and apply the difference to its terms' rows and to
    the catalogue's; called before commit for every movie a transaction touched.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        The session whose transaction changed the movie's components or collections (flushed).
    movie_id : int
        The movie; it may have been deleted, or have no collection left.
    """
    # Serialise refreshes of one movie (see the module's docstring); SQLite ignores FOR UPDATE.
    session.execute(select(Movie.id).where(Movie.id == movie_id).with_for_update())
    for scope in STATS_SCOPES:
        old_movie, old_cells = _stored_movie(session, movie_id, scope)
        new_movie, new_cells = _movie_from_base(session, movie_id, scope)
        if (old_movie, old_cells) == (new_movie, new_cells):
            continue
        session.execute(
            delete(MovieTermStats).where(MovieTermStats.scope == scope, MovieTermStats.movie_id == movie_id)
        )
        session.execute(delete(MovieStats).where(MovieStats.scope == scope, MovieStats.movie_id == movie_id))
        if new_movie is not None and session.get(Movie, movie_id) is not None:
            session.execute(
                insert(MovieStats).values(
                    scope=scope,
                    movie_id=movie_id,
                    n_collections=new_movie.n_collections,
                    n_components=new_movie.n_components,
                    newest=new_movie.newest,
                )
            )
            if new_cells:
                session.execute(
                    insert(MovieTermStats),
                    [
                        {
                            "scope": scope,
                            "movie_id": movie_id,
                            "term_id": t,
                            "n_collections": c.n_collections,
                            "n_components": c.n_components,
                            "sum_r": c.sum_r,
                            "newest": c.newest,
                        }
                        for t, c in new_cells.items()
                    ],
                )
        else:
            new_movie, new_cells = None, {}
        _apply_term_deltas(session, scope, old_cells, new_cells)
        empty = Counts()
        old_m, new_m = old_movie or empty, new_movie or empty
        _upsert_add(
            session,
            CatalogStats.__table__,
            {"scope": scope},
            {
                "n_movies": int(new_movie is not None) - int(old_movie is not None),
                "n_collections": new_m.n_collections - old_m.n_collections,
                "n_components": new_m.n_components - old_m.n_components,
            },
        )


def _apply_term_deltas(session: Session, scope: str, old: dict[int, Counts], new: dict[int, Counts]) -> None:
    empty = Counts()
    table = TermStats.__table__
    for term_id in sorted(old.keys() | new.keys()):
        a, b = old.get(term_id, empty), new.get(term_id, empty)
        if a == b:
            continue
        _upsert_add(
            session,
            table,
            {"scope": scope, "term_id": term_id},
            {
                "n_movies": int(term_id in new) - int(term_id in old),
                "n_collections": b.n_collections - a.n_collections,
                "n_components": b.n_components - a.n_components,
                "sum_r": b.sum_r - a.sum_r,
            },
        )
        newest = session.scalar(
            select(func.max(MovieTermStats.newest)).where(
                MovieTermStats.scope == scope, MovieTermStats.term_id == term_id
            )
        )
        session.execute(table.update().where(table.c.scope == scope, table.c.term_id == term_id).values(newest=newest))
        session.execute(
            table.delete().where(table.c.scope == scope, table.c.term_id == term_id, table.c.n_components <= 0)
        )


# --- full recomputation ---------------------------------------------------------------------------------------------


def _movie_query(scope: str) -> Select:
    n_comp = (
        select(Collection.movie_id, func.count(Component.id).label("n_components"))
        .join(Collection, Component.collection_id == Collection.id)
        .where(_in_scope(scope))
        .group_by(Collection.movie_id)
        .subquery()
    )
    coll = (
        select(
            Collection.movie_id,
            func.count(Collection.id).label("n_collections"),
            func.max(Collection.created).label("newest"),
        )
        .where(_in_scope(scope))
        .group_by(Collection.movie_id)
        .subquery()
    )
    return select(
        coll.c.movie_id, coll.c.n_collections, func.coalesce(n_comp.c.n_components, 0), coll.c.newest
    ).outerjoin(n_comp, n_comp.c.movie_id == coll.c.movie_id)


def _cell_query(scope: str) -> Select:
    return (
        select(
            Collection.movie_id,
            Component.best_term_id,
            func.count(func.distinct(Collection.id)),
            func.count(Component.id),
            func.sum(Component.best_r),
            func.max(Collection.created),
        )
        .join(Collection, Component.collection_id == Collection.id)
        .where(_in_scope(scope), Component.best_term_id.is_not(None))
        .group_by(Collection.movie_id, Component.best_term_id)
    )


def recompute(session: Session) -> dict[str, dict]:
    """Every derived number from the base tables, as ``{"catalog": {scope: row}, "movies": {(scope, movie): row},
    "terms": {(scope, term): row}, "cells": {(scope, movie, term): row}}`` of plain dicts."""
    out: dict[str, dict] = {"catalog": {}, "movies": {}, "terms": {}, "cells": {}}
    for scope in STATS_SCOPES:
        catalog = {"n_movies": 0, "n_collections": 0, "n_components": 0}
        for movie_id, nc, n, newest in session.execute(_movie_query(scope)):
            out["movies"][(scope, movie_id)] = {
                "n_collections": int(nc),
                "n_components": int(n),
                "newest": _aware(newest),
            }
            catalog["n_movies"] += 1
            catalog["n_collections"] += int(nc)
            catalog["n_components"] += int(n)
        out["catalog"][scope] = catalog
        for movie_id, term_id, nc, n, s, newest in session.execute(_cell_query(scope)):
            cell = {
                "n_collections": int(nc),
                "n_components": int(n),
                "sum_r": float(s or 0.0),
                "newest": _aware(newest),
            }
            out["cells"][(scope, movie_id, term_id)] = cell
            term = out["terms"].setdefault(
                (scope, term_id), {"n_movies": 0, "n_collections": 0, "n_components": 0, "sum_r": 0.0, "newest": None}
            )
            term["n_movies"] += 1
            term["n_collections"] += cell["n_collections"]
            term["n_components"] += cell["n_components"]
            term["sum_r"] += cell["sum_r"]
            if term["newest"] is None or (cell["newest"] is not None and cell["newest"] > term["newest"]):
                term["newest"] = cell["newest"]
    return out


def stored(session: Session) -> dict[str, dict]:
    """The derived rows as they are in the database, in the shape of :func:`recompute`."""

    def fields(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
        values = {n: getattr(row, n) for n in names}
        if "newest" in values:
            values["newest"] = _aware(values["newest"])
        return values

    counts = ("n_collections", "n_components")
    return {
        "catalog": {r.scope: fields(r, ("n_movies", *counts)) for r in session.scalars(select(CatalogStats))},
        "movies": {(r.scope, r.movie_id): fields(r, (*counts, "newest")) for r in session.scalars(select(MovieStats))},
        "terms": {
            (r.scope, r.term_id): fields(r, ("n_movies", *counts, "sum_r", "newest"))
            for r in session.scalars(select(TermStats))
        },
        "cells": {
            (r.scope, r.movie_id, r.term_id): fields(r, (*counts, "sum_r", "newest"))
            for r in session.scalars(select(MovieTermStats))
        },
    }


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if key == "sum_r":
            if abs((x or 0.0) - (y or 0.0)) > REL_TOLERANCE * max(1.0, abs(x or 0.0), abs(y or 0.0)):
                return False
        elif x != y:
            return False
    return True


def check(session: Session) -> list[str]:
    """Differences between the stored derived rows and a recomputation from the base tables (empty when right).

    A catalogue row of zeros counts as absent; sums of r may differ by rounding (:data:`REL_TOLERANCE`).
    """
    want, have = recompute(session), stored(session)
    zero = {"n_movies": 0, "n_collections": 0, "n_components": 0}
    for scope in STATS_SCOPES:
        want["catalog"].setdefault(scope, dict(zero))
        have["catalog"].setdefault(scope, dict(zero))
    problems = []
    for table in ("catalog", "movies", "terms", "cells"):
        for key in sorted(want[table].keys() | have[table].keys(), key=repr):
            if not _same(want[table].get(key), have[table].get(key)):
                problems.append(f"{table} {key}: stored {have[table].get(key)}, recomputed {want[table].get(key)}")
    return problems


def rebuild(session: Session) -> dict[str, int]:
    """Replace every derived row by a recomputation from the base tables (not committed). Returns the number of
    rows written per table."""
    for model in (MovieTermStats, TermStats, MovieStats, CatalogStats):
        session.execute(delete(model))
    want = recompute(session)
    rows = {
        CatalogStats: [{"scope": s, **v} for s, v in want["catalog"].items()],
        MovieStats: [{"scope": s, "movie_id": m, **v} for (s, m), v in want["movies"].items()],
        TermStats: [{"scope": s, "term_id": t, **v} for (s, t), v in want["terms"].items()],
        MovieTermStats: [{"scope": s, "movie_id": m, "term_id": t, **v} for (s, m, t), v in want["cells"].items()],
    }
    for model, values in rows.items():
        for start in range(0, len(values), 5000):
            session.execute(insert(model), values[start : start + 5000])
    for key in _KEYS:
        session.info.pop(key, None)
    return {model.__tablename__: len(values) for model, values in rows.items()}
