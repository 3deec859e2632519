"""Read queries for the browse pages and the JSON API; every one filters through ``store.access``.

They return plain dicts and lists (safe to JSON-encode and to hand to a page), read small indexed tables and
never load an image.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, case, false, func, or_, select, union_all
from sqlalchemy import text as text_clause
from sqlalchemy.orm import Session, aliased, joinedload

from store.access import access_user, visible_collections
from store.artifacts import load_vector
from store.models import (
    CatalogStats,
    Collection,
    Component,
    ComponentISC,
    Decoding,
    Movie,
    MovieStats,
    MovieTermStats,
    ReferenceSet,
    Term,
    TermMap,
    TermStats,
    User,
)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
# Far beyond any real listing (10 million rows at 100 a page), and small enough that the offset it gives stays a
# plain integer for SQLite and PostgreSQL: an address with page=9223372036854775807 shows an empty last page.
MAX_PAGE = 100_000
# Slugs are at most 200 characters and uuids 36; a longer lookup value cannot name anything.
MAX_KEY_LENGTH = 255


@dataclass
class Page:
    """One page of a listing. ``page`` is None for a page asked for by cursor; a listing with keyset paging sets
    ``keyset`` and gives ``next_cursor`` (None on the last page)."""

    items: list[dict[str, Any]]
    page: int | None
    per_page: int
    total: int
    next_cursor: str | None = None
    keyset: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "items": self.items,
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": self.pages,
        }
        if self.keyset:
            out["next_cursor"] = self.next_cursor
        return out


# --- keyset paging ---------------------------------------------------------------------------------------------
# A deep page by number costs an OFFSET of every row before it; a cursor names the last row shown (its sort key and
# id), and the next page starts right after it along the same index. Cursors are opaque to clients: base64url of a
# JSON list [listing, key..., id].

MAX_CURSOR_LENGTH = 1000
CURSOR_HELP = "use the next_cursor of an earlier answer of this listing, with the same sort"


class CursorError(ValueError):
    """A ``cursor`` that the listing did not give out (the API answers 400 with this message)."""


def encode_cursor(listing: str, key: list[Any]) -> str:
    raw = json.dumps([listing, *key], separators=(",", ":"), allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def _cursor_value(value: Any, kind: str) -> Any:
    """One value of a cursor's key, checked against what the listing stores (kind: id, text, real, real?, time)."""
    if kind == "real?" and value is None:
        return None
    if kind in ("real", "real?"):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else None
    if kind == "id":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**63 - 1
        return value if ok else None
    if kind == "text":
        return value if isinstance(value, str) and len(value) <= MAX_KEY_LENGTH and "\x00" not in value else None
    if kind == "time" and isinstance(value, str) and len(value) <= 64:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def decode_cursor(cursor: Any, listing: str, kinds: tuple[str, ...]) -> list[Any]:
    """The key of a cursor given out by ``listing``, or :class:`CursorError` with a message for anything else."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError(f"cursor: not a cursor ({CURSOR_HELP})")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError(f"cursor: not a cursor ({CURSOR_HELP})") from None
    if not isinstance(data, list) or len(data) != len(kinds) + 1 or data[0] != listing:
        raise CursorError(f"cursor: not a cursor of this listing ({CURSOR_HELP})")
    key = []
    for raw, kind in zip(data[1:], kinds):
        value = _cursor_value(raw, kind)
        if value is None and raw is not None or value is None and kind != "real?":
            raise CursorError(f"cursor: a value of the cursor is not valid ({CURSOR_HELP})")
        key.append(value)
    return key


def _nulls_first_descending(session: Session) -> bool:
    """Whether ``ORDER BY x DESC`` puts NULLs first: PostgreSQL does (NULL is the largest), SQLite does not."""
    return session.get_bind().dialect.name == "postgresql"


def _after_descending(column, value: Any, id_column, last_id: int, nulls_first: bool) -> ColumnElement[bool]:
    """Rows after (``value``, ``last_id``) in ``ORDER BY column DESC, id DESC``, for a column that may be NULL."""
    if value is None:
        after = and_(column.is_(None), id_column < last_id)
        return or_(after, column.is_not(None)) if nulls_first else after
    after = and_(column <= value, or_(column < value, id_column < last_id))
    return after if nulls_first else or_(after, column.is_(None))


def clamp_page(page: Any, per_page: Any) -> tuple[int, int]:
    """Page and page size from whatever a query string or a browser sent: anything that is not a number gives the
    defaults, numbers are bounded (page 1..MAX_PAGE, size 1..MAX_PER_PAGE)."""
    try:
        page = min(MAX_PAGE, max(1, int(page or 1)))
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        page = 1
    try:
        per_page = min(MAX_PER_PAGE, max(1, int(per_page or DEFAULT_PER_PAGE)))
    except (TypeError, ValueError, OverflowError):
        per_page = DEFAULT_PER_PAGE
    return page, per_page


def lookup_key(value: Any) -> str | None:
    """``value`` if it can name a row (a slug or uuid), else None: not text, too long, or holding a NUL character
    (which PostgreSQL refuses in any text parameter, so the query would fail instead of finding nothing)."""
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH or "\x00" in value:
        return None
    return value


def search_text(value: Any, limit: int = 200) -> str:
    """Free text to search for: anything but text counts as empty; NUL characters are dropped (see lookup_key)."""
    return value[:limit].replace("\x00", "") if isinstance(value, str) else ""


def _key_is(column, value: Any) -> ColumnElement[bool]:
    """``column == value``, or a condition nothing meets when ``value`` cannot name a row."""
    key = lookup_key(value)
    return false() if key is None else column == key


LIKE_ESCAPE = "\\"


def _like(text: str) -> str:
    """A LIKE pattern for "contains ``text``" (lower case), with the wildcards ``%`` and ``_`` and the escape
    character itself escaped by a backslash: they are matched as themselves (PostgreSQL's default escape)."""
    needle = search_text(text).strip().lower()
    for char in (LIKE_ESCAPE, "%", "_"):
        needle = needle.replace(char, LIKE_ESCAPE + char)
    return f"%{needle}%"


def _loose_like(text: str) -> str:
    """A pattern that every match of :func:`_like` also matches, without escapes: each wildcard or escape character
    of ``text`` becomes ``_`` (any one character), so SQLite's FTS5 trigram index can serve it (it cannot serve a
    LIKE with an ESCAPE clause); the exact pattern then filters the few rows it finds."""
    needle = search_text(text).strip().lower()
    for char in (LIKE_ESCAPE, "%"):
        needle = needle.replace(char, "_")
    return f"%{needle}%"


def active_reference_id(session: Session) -> int | None:
    return session.scalar(select(ReferenceSet.id).where(ReferenceSet.active.is_(True)))


def _visible_components(user: Any):
    """Component joined to its collection, restricted to what the user may see."""
    return select(Component).join(Collection, Component.collection_id == Collection.id).where(visible_collections(user))


# --- the viewer's derived counts (store.stats) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """Whose numbers a page shows: a stored scope, plus the live rows of one curator's private collections."""

    scope: str
    own_private: int | None = None  # the curator's user id, when they have private collections

    @property
    def plain(self) -> bool:
        return self.own_private is None


def viewer_scope(session: Session, user: Any) -> Viewer:
    """Anonymous visitors and curators without private collections see "public"; an admin sees "all"; a curator
    with private collections sees "public" plus those (a small query over their own rows)."""
    u = access_user(user)
    if u is None:
        return Viewer("public")
    if u.role == "admin":
        return Viewer("all")
    has_private = session.scalar(select(Collection.id).where(_own_private(u.id)).limit(1))
    return Viewer("public", u.id if has_private is not None else None)


def _own_private(user_id: int) -> ColumnElement[bool]:
    return and_(Collection.owner_id == user_id, Collection.visibility != "public")


def _own_cells(user_id: int):
    """Per (movie, term): the curator's private components decoded to the term."""
    return (
        select(
            Collection.movie_id,
            Component.best_term_id.label("term_id"),
            func.count(func.distinct(Collection.id)).label("n_collections"),
            func.count(Component.id).label("n_components"),
            func.sum(Component.best_r).label("sum_r"),
            func.max(Collection.created).label("newest"),
        )
        .join(Collection, Component.collection_id == Collection.id)
        .where(_own_private(user_id), Component.best_term_id.is_not(None))
        .group_by(Collection.movie_id, Component.best_term_id)
        .subquery()
    )


def _own_movies(user_id: int):
    return (
        select(
            Collection.movie_id,
            func.count(func.distinct(Collection.id)).label("n_collections"),
            func.count(Component.id).label("n_components"),
            func.max(Collection.created).label("newest"),
        )
        .outerjoin(Component, Component.collection_id == Collection.id)
        .where(_own_private(user_id))
        .group_by(Collection.movie_id)
        .subquery()
    )


def _merged(parts: list[Select], keys: tuple[str, ...], sums: tuple[str, ...]):
    """UNION ALL of rows with the same columns, summed per key (``newest``: the latest)."""
    union = union_all(*parts).subquery()
    columns = [union.c[k] for k in keys] + [func.sum(union.c[f]).label(f) for f in sums]
    return select(*columns, func.max(union.c.newest).label("newest")).group_by(*[union.c[k] for k in keys])


def term_view(v: Viewer):
    """Per term: n_movies, n_collections, n_components, sum_r, newest, as the viewer sees them."""
    stored = select(
        TermStats.term_id,
        TermStats.n_movies,
        TermStats.n_collections,
        TermStats.n_components,
        TermStats.sum_r,
        TermStats.newest,
    ).where(TermStats.scope == v.scope)
    if v.plain:
        return stored.subquery()
    own = _own_cells(v.own_private)
    public_cell = aliased(MovieTermStats)
    own_terms = (
        select(
            own.c.term_id,
            func.sum(case((public_cell.movie_id.is_(None), 1), else_=0)).label("n_movies"),
            func.sum(own.c.n_collections).label("n_collections"),
            func.sum(own.c.n_components).label("n_components"),
            func.sum(own.c.sum_r).label("sum_r"),
            func.max(own.c.newest).label("newest"),
        )
        .outerjoin(
            public_cell,
            and_(
                public_cell.scope == "public",
                public_cell.movie_id == own.c.movie_id,
                public_cell.term_id == own.c.term_id,
            ),
        )
        .group_by(own.c.term_id)
    )
    return _merged([stored, own_terms], ("term_id",), ("n_movies", "n_collections", "n_components", "sum_r")).subquery()


def movie_view(v: Viewer):
    """Per movie with a visible collection: n_collections, n_components, newest."""
    stored = select(MovieStats.movie_id, MovieStats.n_collections, MovieStats.n_components, MovieStats.newest).where(
        MovieStats.scope == v.scope
    )
    if v.plain:
        return stored.subquery()
    own = _own_movies(v.own_private)
    return _merged(
        [stored, select(own.c.movie_id, own.c.n_collections, own.c.n_components, own.c.newest)],
        ("movie_id",),
        ("n_collections", "n_components"),
    ).subquery()


def cell_view(v: Viewer, movie_id: int | None = None, term_ids: Any = None):
    """Per movie x term: n_collections, n_components, sum_r, newest (optionally one movie or some terms)."""
    stored = select(
        MovieTermStats.movie_id,
        MovieTermStats.term_id,
        MovieTermStats.n_collections,
        MovieTermStats.n_components,
        MovieTermStats.sum_r,
        MovieTermStats.newest,
    ).where(MovieTermStats.scope == v.scope)
    if movie_id is not None:
        stored = stored.where(MovieTermStats.movie_id == movie_id)
    if term_ids is not None:
        stored = stored.where(MovieTermStats.term_id.in_(term_ids))
    if v.plain:
        return stored.subquery()
    own = _own_cells(v.own_private)
    mine = select(own.c.movie_id, own.c.term_id, own.c.n_collections, own.c.n_components, own.c.sum_r, own.c.newest)
    if movie_id is not None:
        mine = mine.where(own.c.movie_id == movie_id)
    if term_ids is not None:
        mine = mine.where(own.c.term_id.in_(term_ids))
    return _merged([stored, mine], ("movie_id", "term_id"), ("n_collections", "n_components", "sum_r")).subquery()


def _mean_r(view) -> ColumnElement:
    return view.c.sum_r / func.nullif(view.c.n_components, 0)


def _contains(session: Session, column, text: str) -> ColumnElement[bool]:
    """``column`` (movies.title or terms.name) contains ``text``, ignoring case, through the search index: a pg_trgm
    GIN index on PostgreSQL, an FTS5 trigram table on SQLite (migration 0006)."""
    pattern = _like(text)
    if session.get_bind().dialect.name == "sqlite":
        table, name = column.table.name, column.key
        ids = text_clause(
            f"SELECT rowid FROM {table}_fts WHERE {name} LIKE :loose AND {name} LIKE :pattern ESCAPE '{LIKE_ESCAPE}'"
        ).bindparams(loose=_loose_like(text), pattern=pattern)
        return column.table.c.id.in_(ids)
    # PostgreSQL's LIKE escapes with a backslash by default, and pg_trgm reads the escapes: the index still serves.
    return func.lower(column).like(pattern)


def counts(session: Session, user: Any) -> dict[str, int]:
    """Movies, collections and components the user may see, and the active reference's terms."""
    v = viewer_scope(session, user)
    row = session.get(CatalogStats, v.scope)
    out = {
        "movies": row.n_movies if row else 0,
        "collections": row.n_collections if row else 0,
        "components": row.n_components if row else 0,
    }
    if not v.plain:
        own = _own_movies(v.own_private)
        extra = session.execute(
            select(
                func.coalesce(func.sum(own.c.n_collections), 0),
                func.coalesce(func.sum(own.c.n_components), 0),
                func.count(own.c.movie_id).filter(MovieStats.movie_id.is_(None)),
            ).outerjoin(MovieStats, and_(MovieStats.scope == "public", MovieStats.movie_id == own.c.movie_id))
        ).one()
        out["collections"] += int(extra[0])
        out["components"] += int(extra[1])
        out["movies"] += int(extra[2])
    out["terms"] = (
        session.scalar(select(func.count(Term.id)).where(Term.reference_set_id == active_reference_id(session))) or 0
    )
    return out


TERM_SORTS = {"name": "name", "movies": "n_movies", "components": "n_components"}


def list_terms(
    session: Session,
    user: Any,
    search: str = "",
    sort: str = "name",
    descending: bool = False,
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
) -> Page:
    page, per_page = clamp_page(page, per_page)
    search = search_text(search)
    view = term_view(viewer_scope(session, user))
    n_movies = func.coalesce(view.c.n_movies, 0)
    n_components = func.coalesce(view.c.n_components, 0)
    where = [Term.reference_set_id == active_reference_id(session)]
    if search.strip():
        where.append(_contains(session, Term.name, search))
    stmt = (
        select(
            Term.name,
            Term.slug,
            n_movies.label("n_movies"),
            n_components.label("n_components"),
            _mean_r(view).label("mean_r"),
        )
        .outerjoin(view, view.c.term_id == Term.id)
        .where(*where)
    )
    key = {"name": Term.name, "movies": n_movies, "components": n_components}.get(sort, Term.name)
    stmt = stmt.order_by(key.desc() if descending else key.asc(), Term.name)
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    total = session.scalar(select(func.count(Term.id)).where(*where)) or 0
    items = [
        {
            "name": r.name,
            "slug": r.slug,
            "n_movies": int(r.n_movies),
            "n_components": int(r.n_components),
            "mean_r": None if r.mean_r is None else float(r.mean_r),
        }
        for r in rows
    ]
    return Page(items, page, per_page, total)


def get_term(session: Session, slug: str) -> Term | None:
    return session.scalar(
        select(Term).where(_key_is(Term.slug, slug), Term.reference_set_id == active_reference_id(session))
    )


MAX_TERM_MOVIES = 100  # the movies listed on a term's page, most components first


def term_detail(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    term = get_term(session, slug)
    if term is None:
        return None
    v = viewer_scope(session, user)
    cells = cell_view(v, term_ids=[term.id])
    rows = session.execute(
        select(Movie.id, Movie.title, Movie.slug, cells.c.n_components, _mean_r(cells))
        .join(cells, cells.c.movie_id == Movie.id)
        .order_by(cells.c.n_components.desc(), Movie.title)
        .limit(MAX_TERM_MOVIES)
    ).all()
    movie_ids = [r[0] for r in rows]
    merged = {
        tm.movie_id: tm
        for tm in session.scalars(
            select(TermMap).where(
                TermMap.term_id == term.id, or_(TermMap.movie_id.is_(None), TermMap.movie_id.in_(movie_ids))
            )
        )
    }
    view = term_view(v)
    stats = session.execute(select(view).where(view.c.term_id == term.id)).first()
    return {
        "name": term.name,
        "slug": term.slug,
        "reference_set": term.reference_set.name,
        "has_mean_map": None in merged,
        "n_components_mean_map": merged[None].n_components if None in merged else 0,
        "n_movies": int(stats.n_movies) if stats else 0,
        "n_components": int(stats.n_components) if stats else 0,
        "movies": [
            {"title": t, "slug": s, "n_components": int(n), "mean_r": float(r), "has_merged_map": mid in merged}
            for mid, t, s, n, r in rows
        ],
    }


def _component_row(
    c: Component, collection: Collection, movie: Movie, term_name: str | None, term_slug: str | None = None
) -> dict[str, Any]:
    return {
        "uuid": c.uuid,
        "source_file": c.source_file,
        "volume": c.volume_index + 1,
        "best_term": term_name,
        "best_term_slug": term_slug,
        "best_r": c.best_r,
        "qc_warnings": list(c.qc_warnings or []),
        "collection": collection.name,
        "collection_slug": collection.slug,
        "movie": movie.title,
        "movie_slug": movie.slug,
        "is_demo": collection.is_demo,
        "visibility": collection.visibility,
    }


COMPONENT_SORTS = {"r": Component.best_r, "file": Component.source_file, "isc": ComponentISC.isc}


def list_components(
    session: Session,
    user: Any,
    term_slug: str | None = None,
    movie_slug: str | None = None,
    collection_slug: str | None = None,
    sort: str = "r",
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
    cursor: str | None = None,
) -> Page:
    """Visible components, best r first (or by file, or highest ISC first), optionally of one term, movie and/or
    collection. Each row carries its leave-one-out ISC and that ISC's q (None without them), read in the same query.

    Rows come from an indexed ORDER BY ... LIMIT; the total from the derived counts (or, for one collection, a
    count over that collection's rows). With ``cursor`` (a ``next_cursor`` given out before; ``page`` is then
    ignored) the page starts after the row it names instead of at an OFFSET: :class:`CursorError` if it is not
    one."""
    page, per_page = clamp_page(page, per_page)
    by_file = sort == "file"
    by_isc = sort == "isc"
    listing = "components.file" if by_file else ("components.isc" if by_isc else "components.r")
    after = decode_cursor(cursor, listing, ("text", "id", "id") if by_file else ("real?", "id")) if cursor else None
    stmt = (  # at most one ISC row per component (unique component_id): the outer join adds no rows
        select(Component, Collection, Movie, Term.name, Term.slug, ComponentISC.isc, ComponentISC.q)
        .join(Collection, Component.collection_id == Collection.id)
        .join(Movie, Collection.movie_id == Movie.id)
        .outerjoin(Term, Component.best_term_id == Term.id)
        .outerjoin(ComponentISC, ComponentISC.component_id == Component.id)
        .where(visible_collections(user))
    )
    term = get_term(session, term_slug) if term_slug else None
    movie = get_visible_movie(session, user, movie_slug) if movie_slug else None
    collection = get_visible_collection(session, user, collection_slug) if collection_slug else None
    if (term_slug and term is None) or (movie_slug and movie is None) or (collection_slug and collection is None):
        return Page([], None if after else page, per_page, 0, keyset=True)
    if term is not None:
        stmt = stmt.where(Component.best_term_id == term.id)
    if movie is not None:
        stmt = stmt.where(Collection.movie_id == movie.id)
    if collection is not None:
        stmt = stmt.where(Component.collection_id == collection.id)
    total = _component_total(session, user, term, movie, collection, stmt)
    if by_file:
        stmt = stmt.order_by(Component.source_file, Component.volume_index, Component.id)
    elif by_isc:  # highest ISC first, components without one last; (collection_id, isc) serves one collection
        stmt = stmt.order_by(ComponentISC.isc.desc().nulls_last(), Component.id.desc())
    else:  # the order of the indexes (best_r) and (best_term_id, best_r), read backwards
        stmt = stmt.order_by(Component.best_r.desc(), Component.id.desc())
    if after is None:
        stmt = stmt.offset((page - 1) * per_page)
    elif by_file:
        name, volume, last_id = after
        stmt = stmt.where(
            or_(
                Component.source_file > name,
                and_(
                    Component.source_file == name,
                    or_(
                        Component.volume_index > volume,
                        and_(Component.volume_index == volume, Component.id > last_id),
                    ),
                ),
            )
        )
    elif by_isc:
        isc, last_id = after
        stmt = stmt.where(_after_descending(ComponentISC.isc, isc, Component.id, last_id, nulls_first=False))
    else:
        best_r, last_id = after
        stmt = stmt.where(
            _after_descending(Component.best_r, best_r, Component.id, last_id, _nulls_first_descending(session))
        )
    rows = session.execute(stmt.limit(per_page + 1)).all()  # one more: is there a next page?
    next_cursor = None
    if len(rows) > per_page:
        rows = rows[:per_page]
        last = rows[-1][0]
        if by_file:
            key = [last.source_file, last.volume_index, last.id]
        else:
            key = [rows[-1][5] if by_isc else last.best_r, last.id]
        next_cursor = encode_cursor(listing, key)
    items = [
        _component_row(c, col, m, t, ts) | {"isc": _finite(isc), "isc_q": _finite(q)}
        for c, col, m, t, ts, isc, q in rows
    ]
    return Page(items, None if after else page, per_page, total, next_cursor, keyset=True)


def _finite(value: Any) -> float | None:
    """A stored number as pages and JSON show it: None for a missing or non-finite one."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _component_total(
    session: Session, user: Any, term: Term | None, movie: Movie | None, collection: Collection | None, stmt: Select
) -> int:
    if collection is not None:  # one collection's rows: small
        return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    v = viewer_scope(session, user)
    if term is not None and movie is not None:
        cells = cell_view(v, movie_id=movie.id, term_ids=[term.id])
        return int(session.scalar(select(func.sum(cells.c.n_components))) or 0)
    if term is not None:
        view = term_view(v)
        return int(session.scalar(select(view.c.n_components).where(view.c.term_id == term.id)) or 0)
    if movie is not None:
        view = movie_view(v)
        return int(session.scalar(select(view.c.n_components).where(view.c.movie_id == movie.id)) or 0)
    return counts(session, user)["components"]


MOVIE_SORTS = ("title", "newest", "components")


def list_movies(
    session: Session, user: Any, search: str = "", sort: str = "title", page: int = 1, per_page: int = DEFAULT_PER_PAGE
) -> Page:
    page, per_page = clamp_page(page, per_page)
    search = search_text(search)
    v = viewer_scope(session, user)
    view = movie_view(v)
    stmt = select(Movie, view.c.n_collections, view.c.n_components, view.c.newest).join(
        view, view.c.movie_id == Movie.id
    )
    if search.strip():
        stmt = stmt.where(_contains(session, Movie.title, search))
    if sort == "newest":
        stmt = stmt.order_by(view.c.newest.desc(), Movie.title)
    elif sort == "components":
        stmt = stmt.order_by(view.c.n_components.desc(), Movie.title)
    else:
        stmt = stmt.order_by(func.lower(Movie.title), Movie.id)
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    if search.strip():
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    else:
        total = counts(session, user)["movies"]
    return Page(
        [
            {
                "title": m.title,
                "slug": m.slug,
                "year": m.year,
                "n_collections": int(nc),
                "n_components": int(n),
                "latest": _iso(latest),
            }
            for m, nc, n, latest in rows
        ],
        page,
        per_page,
        total,
    )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns a UNION's datetimes as text
        return value.replace(" ", "T")
    return value.isoformat()


def visible_movie_titles(session: Session, user: Any, limit: int = 2000) -> list[str]:
    """Titles of the movies the user may see, A to Z: the suggestions of the collection form, which must not tell
    a curator the titles that only someone else's private collections have."""
    visible = select(Collection.movie_id).where(visible_collections(user))
    return list(session.scalars(select(Movie.title).where(Movie.id.in_(visible)).order_by(Movie.title).limit(limit)))


def get_visible_movie(session: Session, user: Any, slug: str) -> Movie | None:
    """A movie is visible when at least one of its collections is."""
    return session.scalar(
        select(Movie).join(Collection).where(_key_is(Movie.slug, slug), visible_collections(user)).limit(1)
    )


def movie_detail(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    movie = get_visible_movie(session, user, slug)
    if movie is None:
        return None
    v = viewer_scope(session, user)
    mview = movie_view(v)
    total = int(session.scalar(select(mview.c.n_components).where(mview.c.movie_id == movie.id)) or 0)
    cells = cell_view(v, movie_id=movie.id)
    rows = session.execute(
        select(Term.name, Term.slug, cells.c.n_components, _mean_r(cells))
        .join(cells, cells.c.term_id == Term.id)
        .where(Term.reference_set_id == active_reference_id(session))
    ).all()
    merged = set(
        session.scalars(select(Term.slug).join(TermMap, TermMap.term_id == Term.id).where(TermMap.movie_id == movie.id))
    )
    rows = [(name, tslug, int(n), float(r)) for name, tslug, n, r in rows]  # PostgreSQL sums are numeric
    terms = [
        {
            "name": name,
            "slug": tslug,
            "n_components": n,
            "mean_r": r,
            "share": n / total if total else 0.0,
            "score": r * n / total if total else 0.0,
            "has_merged_map": tslug in merged,
        }
        for name, tslug, n, r in rows
    ]
    terms.sort(key=lambda t: (-t["score"], t["name"]))
    n_terms = len(terms)
    terms = terms[:MAX_MOVIE_TERMS]
    vis = and_(visible_collections(user), Collection.movie_id == movie.id)
    collections = session.scalars(
        select(Collection).where(vis).order_by(Collection.created).limit(MAX_MOVIE_COLLECTIONS)
    ).all()
    n_collections = int(session.scalar(select(mview.c.n_collections).where(mview.c.movie_id == movie.id)) or 0)
    return {
        "title": movie.title,
        "slug": movie.slug,
        "year": movie.year,
        "n_components": total,
        "terms": terms,
        "collections": collection_dicts(session, collections),
        "n_collections": n_collections,
        "n_terms": n_terms,
    }


MAX_MOVIE_COLLECTIONS = 100  # listed on a movie's page (oldest first); the count covers all
MAX_MOVIE_TERMS = 100  # the best-scoring terms listed on a movie's page


def collection_dict(session: Session, c: Collection) -> dict[str, Any]:
    return collection_dicts(session, [c])[0]


def collection_dicts(session: Session, collections: list[Collection]) -> list[dict[str, Any]]:
    """The fields pages and the API show of collections, with owners and component counts read in one query
    each."""
    ids = [c.id for c in collections]
    n_components = (
        dict(
            session.execute(
                select(Component.collection_id, func.count(Component.id))
                .where(Component.collection_id.in_(ids))
                .group_by(Component.collection_id)
            ).all()
        )
        if ids
        else {}
    )
    owners = (
        {u.id: u for u in session.scalars(select(User).where(User.id.in_({c.owner_id for c in collections})))}
        if ids
        else {}
    )
    out = []
    for c in collections:
        owner = owners.get(c.owner_id)
        out.append(
            {
                "name": c.name,
                "slug": c.slug,
                "movie": c.movie.title,
                "movie_slug": c.movie.slug,
                "description": c.description,
                "dataset_url": c.dataset_url,
                "doi": c.doi,
                "contributors": c.contributors,
                "license": c.license,
                "visibility": c.visibility,
                "owner": owner.display_name if owner else "",
                "status": c.status,
                "is_demo": c.is_demo,
                "metadata": c.metadata_ or {},
                "created": c.created.isoformat() if c.created else None,
                "n_components": int(n_components.get(c.id, 0)),
            }
        )
    return out


def list_collections(
    session: Session, user: Any, page: int = 1, per_page: int = DEFAULT_PER_PAGE, cursor: str | None = None
) -> Page:
    """Visible collections, newest first; by page number or by ``cursor`` (see :func:`list_components`)."""
    page, per_page = clamp_page(page, per_page)
    after = decode_cursor(cursor, "collections", ("time", "id")) if cursor else None
    stmt = (
        select(Collection)
        .options(joinedload(Collection.movie))
        .where(visible_collections(user))
        .order_by(Collection.created.desc(), Collection.id.desc())
    )
    if after is None:
        stmt = stmt.offset((page - 1) * per_page)
    else:
        created, last_id = after  # created is never NULL
        stmt = stmt.where(Collection.created <= created, or_(Collection.created < created, Collection.id < last_id))
    rows = list(session.scalars(stmt.limit(per_page + 1)).unique().all())
    next_cursor = None
    if len(rows) > per_page:
        rows = rows[:per_page]
        next_cursor = encode_cursor("collections", [rows[-1].created.isoformat(), rows[-1].id])
    total = counts(session, user)["collections"]
    return Page(collection_dicts(session, rows), None if after else page, per_page, total, next_cursor, keyset=True)


def get_visible_collection(session: Session, user: Any, slug: str) -> Collection | None:
    return session.scalar(select(Collection).where(_key_is(Collection.slug, slug), visible_collections(user)))


def movie_term(session: Session, user: Any, movie_slug: str, term_slug: str) -> dict[str, Any] | None:
    movie = get_visible_movie(session, user, movie_slug)
    term = get_term(session, term_slug)
    if movie is None or term is None:
        return None
    merged = session.scalar(select(TermMap).where(TermMap.movie_id == movie.id, TermMap.term_id == term.id))
    comps = list_components(session, user, term_slug=term_slug, movie_slug=movie_slug, per_page=MAX_PER_PAGE)
    return {
        "movie": movie.title,
        "movie_slug": movie.slug,
        "term": term.name,
        "term_slug": term.slug,
        "has_merged_map": merged is not None,
        "n_merged": merged.n_components if merged else 0,
        "components": comps.items,
        "n_components": comps.total,
    }


def get_visible_component(session: Session, user: Any, uuid: str) -> Component | None:
    return session.scalar(_visible_components(user).where(_key_is(Component.uuid, uuid)))


def component_detail(session: Session, user: Any, uuid: str) -> dict[str, Any] | None:
    comp = get_visible_component(session, user, uuid)
    if comp is None:
        return None
    collection = comp.collection
    row = _component_row(comp, collection, collection.movie, comp.best_term.name if comp.best_term else None)
    decodings = session.execute(
        select(Term.name, Term.slug, Decoding.r, Decoding.rank)
        .join(Term, Decoding.term_id == Term.id)
        .where(Decoding.component_id == comp.id)
        .order_by(Decoding.rank)
    ).all()
    row["best_term_slug"] = comp.best_term.slug if comp.best_term else None
    row["decoded_at"] = comp.decoded_at.isoformat() if comp.decoded_at else None
    row["decodings"] = [{"term": n, "slug": s, "r": float(r), "rank": int(k)} for n, s, r, k in decodings]
    row["visibility"] = collection.visibility
    return row


def full_decoding_profile(session: Session, comp: Component) -> list[dict[str, Any]]:
    """Every term's r for a component (from the stored vector), best first."""
    ref_id = active_reference_id(session)
    terms = session.scalars(select(Term).where(Term.reference_set_id == ref_id).order_by(Term.column)).all()
    r = load_vector(comp.decodings_key) if comp.decodings_key else None
    if r is None or len(r) != len(terms):
        return [{"term": d.term.name, "slug": d.term.slug, "r": d.r, "rank": d.rank} for d in comp.decodings]
    order = np.argsort(-r, kind="stable")
    return [
        {"term": terms[i].name, "slug": terms[i].slug, "r": float(r[i]), "rank": rank + 1}
        for rank, i in enumerate(order)
    ]


DEFAULT_HEATMAP_TERMS = 20
DEFAULT_HEATMAP_MOVIES = 20
MAX_HEATMAP = 100  # terms or movies in one heatmap


def heatmap(
    session: Session, user: Any, terms: Any = DEFAULT_HEATMAP_TERMS, movies: Any = DEFAULT_HEATMAP_MOVIES
) -> dict[str, Any]:
    """Term x movie for the ``terms`` most used terms and the ``movies`` movies with most components (both at most
    :data:`MAX_HEATMAP`): number of visible components per cell and their mean r, from the derived counts.

    Terms and movies are listed A to Z; ``n_terms`` and ``n_movies`` say how many there are in all."""
    n_terms = _bounded(terms, DEFAULT_HEATMAP_TERMS)
    n_movies = _bounded(movies, DEFAULT_HEATMAP_MOVIES)
    v = viewer_scope(session, user)
    tview, mview = term_view(v), movie_view(v)
    top_terms = session.execute(
        select(Term.id, Term.name, Term.slug)
        .join(tview, tview.c.term_id == Term.id)
        .where(Term.reference_set_id == active_reference_id(session), tview.c.n_components > 0)
        .order_by(tview.c.n_components.desc(), Term.name)
        .limit(n_terms)
    ).all()
    top_movies = session.execute(
        select(Movie.id, Movie.title, Movie.slug)
        .join(mview, mview.c.movie_id == Movie.id)
        .where(mview.c.n_components > 0)
        .order_by(mview.c.n_components.desc(), Movie.title)
        .limit(n_movies)
    ).all()
    top_terms = sorted(top_terms, key=lambda r: (r.name.lower(), r.id))
    top_movies = sorted(top_movies, key=lambda r: (r.title.lower(), r.id))
    ti = {r.id: i for i, r in enumerate(top_terms)}
    mi = {r.id: j for j, r in enumerate(top_movies)}
    count = [[0] * len(top_movies) for _ in top_terms]
    mean_r: list[list[float | None]] = [[None] * len(top_movies) for _ in top_terms]
    if ti and mi:
        cells = cell_view(v, term_ids=list(ti))
        for movie_id, term_id, n, r in session.execute(
            select(cells.c.movie_id, cells.c.term_id, cells.c.n_components, _mean_r(cells)).where(
                cells.c.movie_id.in_(list(mi))
            )
        ):
            if n:
                count[ti[term_id]][mi[movie_id]] = int(n)
                mean_r[ti[term_id]][mi[movie_id]] = float(r)
    total_terms = (
        session.scalar(
            select(func.count())
            .select_from(tview)
            .join(Term, Term.id == tview.c.term_id)
            .where(Term.reference_set_id == active_reference_id(session), tview.c.n_components > 0)
        )
        or 0
    )
    return {
        "terms": [r.name for r in top_terms],
        "term_slugs": [r.slug for r in top_terms],
        "movies": [r.title for r in top_movies],
        "movie_slugs": [r.slug for r in top_movies],
        "count": count,
        "mean_r": mean_r,
        "n_terms": int(total_terms),
        "n_movies": counts(session, user)["movies"],
    }


def _bounded(value: Any, default: int) -> int:
    try:
        return min(MAX_HEATMAP, max(1, int(value)))
    except (TypeError, ValueError, OverflowError):
        return default


def search(session: Session, user: Any, text: str, limit: int = 8) -> list[dict[str, str]]:
    """Suggestions for the search box: terms and visible movies whose names contain the text (through the search
    indexes, see :func:`_contains`)."""
    text = search_text(text, 100).strip()
    if len(text) < 2:
        return []
    terms = session.execute(
        select(Term.name, Term.slug)
        .where(Term.reference_set_id == active_reference_id(session), _contains(session, Term.name, text))
        .order_by(func.length(Term.name), Term.name)
        .limit(limit)
    ).all()
    visible = movie_view(viewer_scope(session, user))
    movies = session.execute(
        select(Movie.title, Movie.slug)
        .join(visible, visible.c.movie_id == Movie.id)
        .where(_contains(session, Movie.title, text))
        .order_by(Movie.title)
        .limit(limit)
    ).all()
    out = [{"kind": "term", "label": n, "href": f"/terms/{s}"} for n, s in terms]
    out += [{"kind": "movie", "label": t, "href": f"/movies/{s}"} for t, s in movies]
    return out[:limit]


def demo_collection_count(session: Session, user: Any) -> int:
    """Visible collections holding synthetic demo data (the pages label them)."""
    return (
        session.scalar(select(func.count(Collection.id)).where(visible_collections(user), Collection.is_demo.is_(True)))
        or 0
    )


def recent_movies(session: Session, user: Any, limit: int = 5) -> list[dict[str, Any]]:
    """The movies whose newest visible collection is newest."""
    return list_movies(session, user, sort="newest", per_page=limit).items
