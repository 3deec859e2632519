"""Read queries for the browse pages and the JSON API; every one filters through ``store.access``.

They return plain dicts and lists (safe to JSON-encode and to hand to a page), read small indexed tables and
never load an image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from store.access import visible_collections
from store.artifacts import load_vector
from store.models import Collection, Component, Decoding, Movie, ReferenceSet, Term, TermMap, User

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
# Far beyond any real listing (10 million rows at 100 a page), and small enough that the offset it gives stays a
# plain integer for SQLite and PostgreSQL: an address with page=9223372036854775807 shows an empty last page.
MAX_PAGE = 100_000
# Slugs are at most 200 characters and uuids 36; a longer lookup value cannot name anything.
MAX_KEY_LENGTH = 255


@dataclass
class Page:
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "page": self.page, "per_page": self.per_page, "total": self.total,
                "pages": self.pages}


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


def _paginate(session: Session, stmt: Select, page: int, per_page: int) -> tuple[list, int]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return rows, total


def _like(text: str) -> str:
    return "%" + search_text(text).strip().lower().replace("\\", "").replace("%", "").replace("_", " ") + "%"


def active_reference_id(session: Session) -> int | None:
    return session.scalar(select(ReferenceSet.id).where(ReferenceSet.active.is_(True)))


def _visible_components(user: Any):
    """Component joined to its collection, restricted to what the user may see."""
    return select(Component).join(Collection, Component.collection_id == Collection.id).where(
        visible_collections(user))


def counts(session: Session, user: Any) -> dict[str, int]:
    vis = visible_collections(user)
    ref_id = active_reference_id(session)
    return {
        "movies": session.scalar(select(func.count(func.distinct(Collection.movie_id))).where(vis)) or 0,
        "collections": session.scalar(select(func.count(Collection.id)).where(vis)) or 0,
        "components": session.scalar(select(func.count(Component.id)).join(Collection).where(vis)) or 0,
        "terms": session.scalar(select(func.count(Term.id)).where(Term.reference_set_id == ref_id)) or 0,
    }


def _term_stats(user: Any):
    """Per term: movies and components decoded to it (visible ones), mean best r."""
    return (
        select(Component.best_term_id.label("term_id"),
               func.count(func.distinct(Collection.movie_id)).label("n_movies"),
               func.count(Component.id).label("n_components"),
               func.avg(Component.best_r).label("mean_r"))
        .join(Collection, Component.collection_id == Collection.id)
        .where(visible_collections(user))
        .group_by(Component.best_term_id)
        .subquery()
    )


TERM_SORTS = {"name": "name", "movies": "n_movies", "components": "n_components"}


def list_terms(session: Session, user: Any, search: str = "", sort: str = "name", descending: bool = False,
               page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Page:
    page, per_page = clamp_page(page, per_page)
    search = search_text(search)
    stats = _term_stats(user)
    n_movies = func.coalesce(stats.c.n_movies, 0)
    n_components = func.coalesce(stats.c.n_components, 0)
    stmt = (select(Term.name, Term.slug, n_movies.label("n_movies"), n_components.label("n_components"),
                   stats.c.mean_r)
            .outerjoin(stats, stats.c.term_id == Term.id)
            .where(Term.reference_set_id == active_reference_id(session)))
    if search.strip():
        stmt = stmt.where(func.lower(Term.name).like(_like(search)))
    key = {"name": Term.name, "movies": n_movies, "components": n_components}.get(sort, Term.name)
    stmt = stmt.order_by(key.desc() if descending else key.asc(), Term.name)
    rows, total = _paginate(session, stmt, page, per_page)
    items = [{"name": r.name, "slug": r.slug, "n_movies": int(r.n_movies), "n_components": int(r.n_components),
              "mean_r": None if r.mean_r is None else float(r.mean_r)} for r in rows]
    return Page(items, page, per_page, total)


def get_term(session: Session, slug: str) -> Term | None:
    return session.scalar(select(Term).where(_key_is(Term.slug, slug),
                                             Term.reference_set_id == active_reference_id(session)))


def term_detail(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    term = get_term(session, slug)
    if term is None:
        return None
    rows = session.execute(
        select(Movie.title, Movie.slug, func.count(Component.id), func.avg(Component.best_r))
        .join(Collection, Collection.movie_id == Movie.id)
        .join(Component, Component.collection_id == Collection.id)
        .where(visible_collections(user), Component.best_term_id == term.id)
        .group_by(Movie.id).order_by(func.count(Component.id).desc(), Movie.title)).all()
    merged = {tm.movie_id: tm for tm in session.scalars(select(TermMap).where(TermMap.term_id == term.id))}
    slugs = {m.id: m.slug for m in session.scalars(select(Movie).where(Movie.id.in_(
        [k for k in merged if k is not None])))} if merged else {}
    merged_slugs = {slugs[k] for k in merged if k is not None}
    return {
        "name": term.name, "slug": term.slug, "reference_set": term.reference_set.name,
        "has_mean_map": None in merged,
        "n_components_mean_map": merged[None].n_components if None in merged else 0,
        "movies": [{"title": t, "slug": s, "n_components": int(n), "mean_r": float(r),
                    "has_merged_map": s in merged_slugs} for t, s, n, r in rows],
    }


def _component_row(c: Component, collection: Collection, movie: Movie, term_name: str | None,
                   term_slug: str | None = None) -> dict[str, Any]:
    return {"uuid": c.uuid, "source_file": c.source_file, "volume": c.volume_index + 1,
            "best_term": term_name, "best_term_slug": term_slug, "best_r": c.best_r,
            "qc_warnings": list(c.qc_warnings or []),
            "collection": collection.name, "collection_slug": collection.slug,
            "movie": movie.title, "movie_slug": movie.slug, "is_demo": collection.is_demo,
            "visibility": collection.visibility}


COMPONENT_SORTS = {"r": Component.best_r, "file": Component.source_file}


def list_components(session: Session, user: Any, term_slug: str | None = None, movie_slug: str | None = None,
                    collection_slug: str | None = None, sort: str = "r", page: int = 1,
                    per_page: int = DEFAULT_PER_PAGE) -> Page:
    page, per_page = clamp_page(page, per_page)
    stmt = (select(Component, Collection, Movie, Term.name, Term.slug)
            .join(Collection, Component.collection_id == Collection.id)
            .join(Movie, Collection.movie_id == Movie.id)
            .outerjoin(Term, Component.best_term_id == Term.id)
            .where(visible_collections(user)))
    if term_slug:
        stmt = stmt.where(_key_is(Term.slug, term_slug))
    if movie_slug:
        stmt = stmt.where(_key_is(Movie.slug, movie_slug))
    if collection_slug:
        stmt = stmt.where(_key_is(Collection.slug, collection_slug))
    if sort == "file":
        stmt = stmt.order_by(Component.source_file, Component.volume_index)
    else:
        stmt = stmt.order_by(Component.best_r.desc().nulls_last(), Component.uuid)
    rows, total = _paginate(session, stmt, page, per_page)
    return Page([_component_row(c, col, m, t, ts) for c, col, m, t, ts in rows], page, per_page, total)


MOVIE_SORTS = ("title", "newest", "components")


def list_movies(session: Session, user: Any, search: str = "", sort: str = "title", page: int = 1,
                per_page: int = DEFAULT_PER_PAGE) -> Page:
    page, per_page = clamp_page(page, per_page)
    search = search_text(search)
    n_comp = func.count(func.distinct(Component.id))
    stmt = (select(Movie, func.count(func.distinct(Collection.id)).label("n_collections"),
                   n_comp.label("n_components"), func.max(Collection.created).label("latest"))
            .join(Collection, Collection.movie_id == Movie.id)
            .outerjoin(Component, Component.collection_id == Collection.id)
            .where(visible_collections(user))
            .group_by(Movie.id))
    if search.strip():
        stmt = stmt.where(func.lower(Movie.title).like(_like(search)))
    if sort == "newest":
        stmt = stmt.order_by(func.max(Collection.created).desc(), Movie.title)
    elif sort == "components":
        stmt = stmt.order_by(n_comp.desc(), Movie.title)
    else:
        stmt = stmt.order_by(func.lower(Movie.title))
    rows, total = _paginate(session, stmt, page, per_page)
    return Page([{"title": m.title, "slug": m.slug, "year": m.year, "n_collections": int(nc),
                  "n_components": int(n), "latest": latest.isoformat() if latest else None}
                 for m, nc, n, latest in rows], page, per_page, total)


def visible_movie_titles(session: Session, user: Any, limit: int = 2000) -> list[str]:
    """Titles of the movies the user may see, A to Z: the suggestions of the collection form, which must not tell
    a curator the titles that only someone else's private collections have."""
    visible = select(Collection.movie_id).where(visible_collections(user))
    return list(session.scalars(select(Movie.title).where(Movie.id.in_(visible)).order_by(Movie.title)
                                .limit(limit)))


def get_visible_movie(session: Session, user: Any, slug: str) -> Movie | None:
    """A movie is visible when at least one of its collections is."""
    return session.scalar(select(Movie).join(Collection).where(_key_is(Movie.slug, slug), visible_collections(user))
                          .limit(1))


def movie_detail(session: Session, user: Any, slug: str) -> dict[str, Any] | None:
    movie = get_visible_movie(session, user, slug)
    if movie is None:
        return None
    vis = and_(visible_collections(user), Collection.movie_id == movie.id)
    total = session.scalar(select(func.count(Component.id)).join(Collection).where(vis)) or 0
    rows = session.execute(
        select(Term.name, Term.slug, func.count(Component.id), func.avg(Component.best_r))
        .join(Component, Component.best_term_id == Term.id)
        .join(Collection, Component.collection_id == Collection.id)
        .where(vis).group_by(Term.id)).all()
    merged = set(session.scalars(select(Term.slug).join(TermMap, TermMap.term_id == Term.id)
                                 .where(TermMap.movie_id == movie.id)))
    terms = [{"name": name, "slug": tslug, "n_components": int(n), "mean_r": float(r),
              "share": n / total if total else 0.0, "score": float(r) * n / total if total else 0.0,
              "has_merged_map": tslug in merged} for name, tslug, n, r in rows]
    terms.sort(key=lambda t: (-t["score"], t["name"]))
    collections = session.scalars(select(Collection).where(vis).order_by(Collection.created)).all()
    return {"title": movie.title, "slug": movie.slug, "year": movie.year, "n_components": total, "terms": terms,
            "collections": [collection_dict(session, c) for c in collections]}


def collection_dict(session: Session, c: Collection) -> dict[str, Any]:
    owner = session.get(User, c.owner_id)
    return {"name": c.name, "slug": c.slug, "movie": c.movie.title, "movie_slug": c.movie.slug,
            "description": c.description, "dataset_url": c.dataset_url, "doi": c.doi,
            "contributors": c.contributors, "license": c.license, "visibility": c.visibility,
            "owner": owner.display_name if owner else "", "status": c.status, "is_demo": c.is_demo,
            "metadata": c.metadata_ or {}, "created": c.created.isoformat() if c.created else None,
            "n_components": session.scalar(select(func.count(Component.id))
                                           .where(Component.collection_id == c.id)) or 0}


def list_collections(session: Session, user: Any, page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Page:
    page, per_page = clamp_page(page, per_page)
    stmt = select(Collection).where(visible_collections(user)).order_by(Collection.created.desc(), Collection.id)
    rows, total = _paginate(session, stmt, page, per_page)
    return Page([collection_dict(session, c) for (c,) in rows], page, per_page, total)


def get_visible_collection(session: Session, user: Any, slug: str) -> Collection | None:
    return session.scalar(select(Collection).where(_key_is(Collection.slug, slug), visible_collections(user)))


def movie_term(session: Session, user: Any, movie_slug: str, term_slug: str) -> dict[str, Any] | None:
    movie = get_visible_movie(session, user, movie_slug)
    term = get_term(session, term_slug)
    if movie is None or term is None:
        return None
    merged = session.scalar(select(TermMap).where(TermMap.movie_id == movie.id, TermMap.term_id == term.id))
    comps = list_components(session, user, term_slug=term_slug, movie_slug=movie_slug, per_page=MAX_PER_PAGE)
    return {"movie": movie.title, "movie_slug": movie.slug, "term": term.name, "term_slug": term.slug,
            "has_merged_map": merged is not None, "n_merged": merged.n_components if merged else 0,
            "components": comps.items, "n_components": comps.total}


def get_visible_component(session: Session, user: Any, uuid: str) -> Component | None:
    return session.scalar(_visible_components(user).where(_key_is(Component.uuid, uuid)))


def component_detail(session: Session, user: Any, uuid: str) -> dict[str, Any] | None:
    comp = get_visible_component(session, user, uuid)
    if comp is None:
        return None
    collection = comp.collection
    row = _component_row(comp, collection, collection.movie, comp.best_term.name if comp.best_term else None)
    decodings = session.execute(select(Term.name, Term.slug, Decoding.r, Decoding.rank)
                                .join(Term, Decoding.term_id == Term.id)
                                .where(Decoding.component_id == comp.id).order_by(Decoding.rank)).all()
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
    return [{"term": terms[i].name, "slug": terms[i].slug, "r": float(r[i]), "rank": rank + 1}
            for rank, i in enumerate(order)]


def heatmap(session: Session, user: Any) -> dict[str, Any]:
    """Term x movie: number of visible components per cell and their mean r."""
    rows = session.execute(
        select(Term.name, Term.slug, Movie.title, Movie.slug, func.count(Component.id), func.avg(Component.best_r))
        .join(Component, Component.best_term_id == Term.id)
        .join(Collection, Component.collection_id == Collection.id)
        .join(Movie, Collection.movie_id == Movie.id)
        .where(visible_collections(user)).group_by(Term.id, Movie.id)).all()
    terms = sorted({(r[0], r[1]) for r in rows})
    movies = sorted({(r[2], r[3]) for r in rows})
    ti = {t[1]: i for i, t in enumerate(terms)}
    mi = {m[1]: i for i, m in enumerate(movies)}
    count = [[0] * len(movies) for _ in terms]
    mean_r = [[None] * len(movies) for _ in terms]
    for _, tslug, _, mslug, n, r in rows:
        count[ti[tslug]][mi[mslug]] = int(n)
        mean_r[ti[tslug]][mi[mslug]] = float(r)
    return {"terms": [t[0] for t in terms], "term_slugs": [t[1] for t in terms],
            "movies": [m[0] for m in movies], "movie_slugs": [m[1] for m in movies],
            "count": count, "mean_r": mean_r}


def search(session: Session, user: Any, text: str, limit: int = 8) -> list[dict[str, str]]:
    """Suggestions for the search box: terms and visible movies whose names contain the text."""
    text = search_text(text, 100).strip()
    if len(text) < 2:
        return []
    like = _like(text)
    terms = session.execute(select(Term.name, Term.slug).where(
        Term.reference_set_id == active_reference_id(session), func.lower(Term.name).like(like))
        .order_by(func.length(Term.name), Term.name).limit(limit)).all()
    movies = session.execute(select(Movie.title, Movie.slug).join(Collection).where(
        visible_collections(user), or_(func.lower(Movie.title).like(like))).group_by(Movie.id)
        .order_by(Movie.title).limit(limit)).all()
    out = [{"kind": "term", "label": n, "href": f"/terms/{s}"} for n, s in terms]
    out += [{"kind": "movie", "label": t, "href": f"/movies/{s}"} for t, s in movies]
    return out[:limit]


def demo_collection_count(session: Session, user: Any) -> int:
    """Visible collections holding synthetic demo data (the pages label them)."""
    return session.scalar(select(func.count(Collection.id)).where(visible_collections(user),
                                                                  Collection.is_demo.is_(True))) or 0


def recent_movies(session: Session, user: Any, limit: int = 5) -> list[dict[str, Any]]:
    """The movies whose newest visible collection is newest."""
    return list_movies(session, user, sort="newest", per_page=limit).items
