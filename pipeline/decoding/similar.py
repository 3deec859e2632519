"""Similar components: the catalogue's components with the highest spatial Pearson r with a map (DESIGN 15).

How r is computed
-----------------
For two maps on the grid, r is Pearson's r over the brain mask, ``r = x . c`` for their centred, unit-norm masked
vectors ``x`` and ``c`` (235,375 values each). Every r that is shown is computed so, in float64, from the query's
vector and the candidate's stored **exact vector**: its masked map as float16 (scaled by the square root of the
voxel count, so that its values are near 1; float16 keeps 11 significant bits, and the rounding errors, spread
over 235,375 voxels, move r by about 1e-6). Dividing by the stored vector's own norm removes the rest.

The index
---------
A 2 mm vector is 0.9 MB, so 200,000 components cannot be scanned per query. A fixed orthonormal basis ``U``
(mask voxels x :data:`DIMS`, the principal directions of a sample of the catalogue's maps and the active
reference's term maps) gives each component a reduced vector ``z_c = U^T c`` (1 KB, a ``ComponentVector`` row in
the database, written in the transaction that stores the component and removed with it by the foreign key) and
its captured share ``q_c = |z_c|^2``. For a query, ``s_c = z_x . z_c`` is the part of r inside the basis, and by
Cauchy-Schwarz the rest is at most ``b_c = sqrt(1 - q_x) sqrt(1 - q_c)``, so ``s_c + b_c`` bounds r from above.

A search computes ``s`` for every component the viewer may see (one float32 matrix-vector product over the
cached matrix: about 10 ms for 200,000 rows), then takes candidates in decreasing order of their bound and
computes their exact r. It stops as soon as the n-th best exact r reaches the next candidate's bound (the list is
then exactly the n best) or after :data:`MAX_EXACT` candidates. Visibility is applied before ranking (a mask over
the rows, from the collections the viewer may see), so other people's private components never take a place,
and again on the final list, by a query through ``store.access``.

Several processes and machines: the rows live in the database, the basis and the exact vectors in storage; each
process keeps a copy of the matrix in memory and reads only the rows added since it last looked (rows are
replaced, never updated, so new rows have larger ids), and drops removed ones when the count tells it to. A
worker that dies leaves either all of an ingest's rows or none (same transaction). ``python -m pipeline similar
rebuild`` fits a new basis, fills its rows, then switches to it in one transaction.

Over 500 lines on purpose: the index (basis, reduced rows, per-process copy) and the exact search with its
Cauchy-Schwarz bound depend on each other's invariants, which this docstring states once for both.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from pipeline.decoding.decode import masked, normalise_rows
from pipeline.maps.files import load_map
from pipeline.maps.grid import mask_flat_indices
from store.access import visible_collections
from store.artifacts import similarity_basis_key, similarity_vector_key
from store.config import get_settings
from store.db import session_scope
from store.models import Collection, Component, ComponentVector, Movie, SimilarityBasis, Term
from store.storage import get_storage

log = logging.getLogger("incdb.similar")

DIMS = 256  # basis columns: 1 KB per component, 200 MB of matrix for 200,000 components
FIT_COMPONENTS = 1200  # catalogue maps a rebuild fits the basis on (a random sample)
FIT_TERMS = 400  # term maps of the active reference added to the fit
MAX_EXACT = 96  # exact vectors read per search, at most
POOL = 2048  # candidates considered in bound order, at most
EXACT_BATCH = 16  # exact vectors read at a time (by threads)
REFRESH_S = 1.0  # how often a process asks the database whether rows changed
LOCK_ID = 7_240_118  # names the advisory lock that serialises basis switches with ingests (PostgreSQL)
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


# --- vectors -------------------------------------------------------------------------------------------------


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Centred, unit-norm masked maps (float32; a constant map gives zeros).

    Parameters
    ----------
    rows : array_like
        ``(n, n_mask_voxels)`` finite values, e.g. from :func:`pipeline.decoding.decode.masked`.

    Returns
    -------
    numpy.ndarray
        ``(n, n_mask_voxels)`` float32.
    """
    return normalise_rows(np.atleast_2d(rows))


def exact_payload(unit: np.ndarray) -> bytes:
    """The stored exact vector of one unit row: float16 ``.npy`` bytes of ``unit * sqrt(n)``."""
    buf = io.BytesIO()
    np.save(buf, (np.asarray(unit, dtype=np.float32) * np.float32(np.sqrt(unit.shape[-1]))).astype(np.float16))
    return buf.getvalue()


def save_exact(component_uuid: str, unit: np.ndarray) -> None:
    """Store a component's exact vector (see :func:`exact_payload`) under its key, atomically."""
    get_storage().put_bytes(similarity_vector_key(component_uuid), exact_payload(unit))


def load_exact(component_uuid: str) -> np.ndarray | None:
    """A component's exact vector as float32 with norm 1 (any mean: queries are centred), or None when missing."""
    try:
        raw = get_storage().read_bytes(similarity_vector_key(component_uuid))
    except KeyError:
        return None
    vector = np.load(io.BytesIO(raw)).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def exact_r(query: np.ndarray, vectors: Sequence[np.ndarray | None]) -> list[float | None]:
    """Pearson r of a centred, unit-norm query with unit exact vectors, in float64 (None stays None)."""
    present = [v for v in vectors if v is not None]
    if not present:
        return [None] * len(vectors)
    # einsum sums in float64 without a float64 copy of the vectors (and without BLAS threads, whose wake-up
    # costs more than these few products on a busy machine).
    values = iter(np.clip(np.einsum("ij,j->i", np.stack(present), np.asarray(query, dtype=np.float64)), -1, 1))
    return [None if v is None else float(next(values)) for v in vectors]


# --- the basis -----------------------------------------------------------------------------------------------


def fit_basis(rows: np.ndarray, dims: int = DIMS) -> np.ndarray:
    """An orthonormal basis of the principal directions of unit rows (no mean removed: the directions that hold
    most of the rows' squared norm, which is what inner products need).

    Parameters
    ----------
    rows : numpy.ndarray
        ``(n, n_mask_voxels)`` float32 centred unit rows; ``n`` up to a few thousand (its Gram matrix is formed).
    dims : int
        Columns wanted; fewer come back when the rows span fewer directions.

    Returns
    -------
    numpy.ndarray
        ``(n_mask_voxels, k)`` float32 with orthonormal columns, ``1 <= k <= dims``.

    Raises
    ------
    ValueError
        When the rows are all zero.
    """
    rows = np.asarray(rows, dtype=np.float32)
    gram = (rows @ rows.T).astype(np.float64)
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    if not len(values) or values[0] <= 0:
        raise ValueError("no map to fit a similarity basis on")
    keep = int(min(dims, np.count_nonzero(values > values[0] * 1e-7)))
    basis = (rows.T @ (vectors[:, :keep] / np.sqrt(values[:keep])).astype(np.float32)).astype(np.float64)
    # Orthonormal in exact arithmetic already; two Cholesky-QR passes make it so to rounding (a Householder QR of
    # 235,375 x 256 takes 20 s here, these four GEMMs a fraction of a second).
    for _ in range(2):
        basis = basis @ np.linalg.inv(np.linalg.cholesky(basis.T @ basis)).T
    return np.ascontiguousarray(basis, dtype=np.float32)


def _basis_cache_path(key: str) -> Path:
    return get_settings().data_dir / "cache" / "similar" / Path(key).name


_basis_cache: dict[str, np.ndarray] = {}
_basis_lock = threading.Lock()


def load_basis(key: str) -> np.ndarray:
    """A basis as a read-only memory map of this machine's copy (fetched from storage once), cached per process.

    Raises
    ------
    KeyError
        When the basis is in neither the cache folder nor storage.
    """
    with _basis_lock:
        if key in _basis_cache:
            return _basis_cache[key]
        path = _basis_cache_path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{uuid_module.uuid4().hex}")
            try:
                with get_storage().open(key) as src, open(tmp, "wb") as out:
                    while chunk := src.read(8 * 1024 * 1024):
                        out.write(chunk)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        _basis_cache.clear()  # one basis at a time: the previous one was switched away from
        _basis_cache[key] = np.load(path, mmap_mode="r")
        return _basis_cache[key]


def save_basis(basis: np.ndarray) -> str:
    """Store a new basis under a fresh key (and this machine's cache); returns the key."""
    key = similarity_basis_key(uuid_module.uuid4().hex)
    buf = io.BytesIO()
    np.save(buf, np.asarray(basis, dtype=np.float32))
    get_storage().put_bytes(key, buf.getvalue())
    path = _basis_cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return key


def lock_index(session: Session) -> None:
    """Serialise a basis switch with the ingests that write rows, until this transaction ends (an advisory lock
    on PostgreSQL; SQLite's write lock, taken now by a no-op UPDATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
    else:
        session.execute(text("UPDATE similarity_bases SET active = active WHERE 1 = 0"))


def active_basis(session: Session) -> SimilarityBasis | None:
    """The basis searches use, or None before the first component was stored."""
    return session.scalar(
        select(SimilarityBasis).where(SimilarityBasis.active.is_(True)).order_by(SimilarityBasis.id.desc())
    )


def _term_rows(session: Session, limit: int = FIT_TERMS) -> np.ndarray:
    """Up to ``limit`` columns of the active reference matrix (centred unit term maps), spread over the set."""
    from pipeline.decoding.reference import active_reference, load_matrix

    reference = active_reference(session)
    if reference is None:
        return np.empty((0, len(mask_flat_indices())), dtype=np.float32)
    matrix, _ = load_matrix(session, reference)
    columns = np.unique(np.linspace(0, matrix.shape[1] - 1, min(limit, matrix.shape[1])).astype(int))
    rows = np.ascontiguousarray(np.asarray(matrix[:, columns]).T)
    return rows[np.linalg.norm(rows, axis=1) > 0]


def create_basis(session: Session, rows: np.ndarray, active: bool) -> SimilarityBasis:
    """Fit a basis on ``rows`` plus the active reference's term maps, store it, add its row (flushed)."""
    fit = np.concatenate([np.asarray(rows, dtype=np.float32), _term_rows(session)])
    basis = fit_basis(fit)
    row = SimilarityBasis(storage_key=save_basis(basis), dims=basis.shape[1], fitted_on=len(fit), active=active)
    session.add(row)
    session.flush()
    return row


def project(basis: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Reduced vectors ``units @ basis`` (float32, one row per unit row)."""
    return np.asarray(units, dtype=np.float32) @ basis


# --- writing rows ----------------------------------------------------------------------------------------------


@dataclass
class NewVector:
    """What :func:`store_vectors` needs of one stored component: its ids and uuid (its exact vector is in
    storage already), and its reduced vector in ``basis_id`` (None when there was no basis)."""

    component_id: int
    collection_id: int
    uuid: str
    reduced: np.ndarray | None = None
    basis_id: int | None = None


def store_vectors(session: Session, vectors: list[NewVector]) -> None:
    """Replace the rows of these components in the active basis, in the caller's transaction (after the lock).

    Creates the first basis (fitted on these maps and the term maps) when there is none; re-projects vectors made
    with a basis that was switched away from meanwhile (from their stored exact vectors).

    Raises
    ------
    KeyError
        When the exact vector of a component that must be projected again is missing from storage.
    """
    if not vectors:
        return
    lock_index(session)
    basis_row = active_basis(session)
    stale = [v for v in vectors if basis_row is None or v.basis_id != basis_row.id or v.reduced is None]
    if stale:
        units = []
        for v in stale:
            unit = load_exact(v.uuid)
            if unit is None:
                raise KeyError(f"the exact vector of component {v.uuid} is missing")
            units.append(unit)
        units = np.stack(units)
        if basis_row is None:
            basis_row = create_basis(session, units[:FIT_COMPONENTS], active=True)
        for v, z in zip(stale, project(load_basis(basis_row.storage_key), units)):
            v.reduced, v.basis_id = z, basis_row.id
    ids = [v.component_id for v in vectors]
    session.execute(delete(ComponentVector).where(ComponentVector.component_id.in_(ids)))
    session.execute(
        insert(ComponentVector),
        [
            dict(
                basis_id=basis_row.id,
                component_id=v.component_id,
                collection_id=v.collection_id,
                vector=np.asarray(v.reduced, dtype=np.float32).tobytes(),
                captured=_captured(v.reduced),
            )
            for v in vectors
        ],
    )


def _captured(reduced: np.ndarray) -> float:
    z = np.asarray(reduced, dtype=np.float64)
    return float(min(1.0, z @ z))


def reduced_for_ingest(session: Session) -> tuple[int | None, np.ndarray | None]:
    """(id, basis) of the active basis for an ingest to project with before it stores rows; (None, None)."""
    row = active_basis(session)
    if row is None:
        return None, None
    return row.id, load_basis(row.storage_key)


# --- the per-process search matrix ---------------------------------------------------------------------------


@dataclass
class _Index:
    database: str = ""  # the database the rows come from (a process that switches databases starts afresh)
    basis_id: int = -1
    basis_key: str = ""
    row_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    component_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    collection_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    spare: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))  # sqrt(1 - captured)
    size: int = 0
    checked: float = -1e9

    @property
    def max_row_id(self) -> int:
        return int(self.row_ids[: self.size].max()) if self.size else 0

    def append(self, rows: list) -> None:
        if not rows:
            return
        dims = len(rows[0].vector) // 4
        need = self.size + len(rows)
        if self.vectors.shape[1] != dims or need > len(self.row_ids):
            capacity = max(need, 2 * len(self.row_ids), 1024)
            self._grow(capacity, dims)
        sl = slice(self.size, need)
        self.row_ids[sl] = [r.id for r in rows]
        self.component_ids[sl] = [r.component_id for r in rows]
        self.collection_ids[sl] = [r.collection_id for r in rows]
        self.vectors[sl] = np.frombuffer(b"".join(r.vector for r in rows), dtype=np.float32).reshape(-1, dims)
        self.spare[sl] = np.sqrt(np.clip(1.0 - np.array([r.captured for r in rows]), 0.0, 1.0))
        self.size = need

    def _grow(self, capacity: int, dims: int) -> None:
        def grown(old: np.ndarray, shape: tuple, dtype) -> np.ndarray:
            new = np.zeros(shape, dtype=dtype)
            if self.size and old.shape[1:] == shape[1:]:
                new[: self.size] = old[: self.size]
            return new

        self.row_ids = grown(self.row_ids, (capacity,), np.int64)
        self.component_ids = grown(self.component_ids, (capacity,), np.int64)
        self.collection_ids = grown(self.collection_ids, (capacity,), np.int64)
        self.vectors = grown(self.vectors, (capacity, dims), np.float32)
        self.spare = grown(self.spare, (capacity,), np.float32)

    def keep(self, alive: np.ndarray) -> None:
        """Drop the rows whose ids are not in ``alive`` (into new arrays: views taken before stay valid)."""
        mask = np.isin(self.row_ids[: self.size], alive)
        for name in ("row_ids", "component_ids", "collection_ids", "vectors", "spare"):
            setattr(self, name, getattr(self, name)[: self.size][mask].copy())
        self.size = int(mask.sum())

    def view(self) -> IndexView:
        """The rows as they are now. Later refreshes write only past ``size`` or into new arrays, so a view
        stays valid (and unchanged) while a search reads it without the lock."""
        n = self.size
        return IndexView(
            self.basis_id,
            self.basis_key,
            self.component_ids[:n],
            self.collection_ids[:n],
            self.vectors[:n],
            self.spare[:n],
        )


@dataclass(frozen=True)
class IndexView:
    """A search's snapshot of the per-process matrix (see :meth:`_Index.view`)."""

    basis_id: int
    basis_key: str
    component_ids: np.ndarray
    collection_ids: np.ndarray
    vectors: np.ndarray  # (n, dims) float32 reduced vectors
    spare: np.ndarray  # (n,) sqrt(1 - captured share)

    @property
    def size(self) -> int:
        return len(self.component_ids)


_index = _Index()
_index_lock = threading.Lock()
LOAD_CHUNK = 20_000


def _load_rows(session: Session, basis_id: int, after_id: int) -> list:
    rows: list = []
    while True:
        chunk = session.execute(
            select(
                ComponentVector.id,
                ComponentVector.component_id,
                ComponentVector.collection_id,
                ComponentVector.vector,
                ComponentVector.captured,
            )
            .where(ComponentVector.basis_id == basis_id, ComponentVector.id > after_id)
            .order_by(ComponentVector.id)
            .limit(LOAD_CHUNK)
        ).all()
        rows += chunk
        if len(chunk) < LOAD_CHUNK:
            return rows
        after_id = chunk[-1].id


def current_index(session: Session, max_age_s: float = REFRESH_S) -> IndexView | None:
    """This process's search matrix, brought up to date with the database when older than ``max_age_s``.

    Returns
    -------
    IndexView or None
        A snapshot of the rows, or None when there is no basis yet.
    """
    global _index
    database = get_settings().database_url
    with _index_lock:
        now = time.monotonic()
        if now - _index.checked < max_age_s and _index.database == database:
            return _index.view() if _index.basis_id >= 0 else None
        basis = active_basis(session)
        if basis is None:
            _index = _Index(database=database, checked=now)
            return None
        if basis.id != _index.basis_id or _index.database != database:
            _index = _Index(database=database, basis_id=basis.id, basis_key=basis.storage_key)
        top, count = session.execute(
            select(func.max(ComponentVector.id), func.count(ComponentVector.id)).where(
                ComponentVector.basis_id == basis.id
            )
        ).one()
        if (top or 0) > _index.max_row_id:
            _index.append(_load_rows(session, basis.id, _index.max_row_id))
        if _index.size != count:
            alive = np.fromiter(
                session.scalars(select(ComponentVector.id).where(ComponentVector.basis_id == basis.id)), dtype=np.int64
            )
            _index.keep(alive)
        _index.checked = now
        return _index.view()


def forget_index() -> None:
    """Drop this process's search matrix (tests; a rebuild in this process)."""
    global _index
    with _index_lock:
        _index = _Index()


# --- searching -----------------------------------------------------------------------------------------------


@dataclass
class Match:
    component_id: int
    r: float


@dataclass
class SearchStats:
    exact_read: int = 0
    certain: bool = False  # the list is provably the n best (the bound stopped the search)


def search(
    index: IndexView,
    unit: np.ndarray,
    reduced: np.ndarray,
    allowed: np.ndarray,
    limit: int,
    exact: Callable[[list[int]], list[np.ndarray | None]],
    max_exact: int = MAX_EXACT,
    stats: SearchStats | None = None,
) -> list[Match]:
    """The ``limit`` best components among the rows ``allowed``, with exact r, best first.

    Parameters
    ----------
    index : IndexView
        The search matrix.
    unit : numpy.ndarray
        The query's centred unit vector over the mask.
    reduced : numpy.ndarray
        Its reduced vector in the index's basis.
    allowed : numpy.ndarray
        ``(index.size,)`` bool: the rows that may be returned.
    limit : int
        How many to return.
    exact : callable
        Component ids -> their exact unit vectors (None for one that is gone).
    max_exact : int
        Exact vectors read at most.
    stats : SearchStats or None
        Filled with what the search did.

    Returns
    -------
    list of Match
        At most ``limit``, by descending exact r.
    """
    n = index.size
    if n == 0 or limit <= 0 or not allowed.any():
        return []
    reduced = np.asarray(reduced, dtype=np.float32)
    spare_q = float(np.sqrt(max(0.0, 1.0 - float(np.dot(reduced.astype(np.float64), reduced)))))
    scores = index.vectors[:n] @ reduced
    bound = scores + spare_q * index.spare[:n]
    bound[~allowed] = -np.inf
    n_allowed = int(allowed.sum())
    pool = min(max(POOL, max_exact), n_allowed)
    top = np.argpartition(-bound, pool - 1)[:pool] if pool < n else np.arange(n)
    top = top[np.argsort(-bound[top], kind="stable")]
    top = top[np.isfinite(bound[top])]
    found: list[Match] = []
    read = 0
    stats = stats if stats is not None else SearchStats()
    for start in range(0, len(top), EXACT_BATCH):
        if read >= max_exact:
            break
        rows = top[start : min(start + EXACT_BATCH, start + max_exact - read)]
        ids = [int(index.component_ids[i]) for i in rows]
        vectors = exact(ids)
        read += len(rows)
        for cid, r in zip(ids, exact_r(unit, vectors)):
            if r is not None:
                found.append(Match(cid, r))
        found.sort(key=lambda m: -m.r)
        del found[limit:]
        following = start + EXACT_BATCH
        if len(found) >= limit and (following >= len(top) or found[-1].r >= bound[top[following]]):
            stats.certain = True
            break
    else:
        stats.certain = read >= n_allowed  # every allowed row was read
    stats.exact_read = read
    return found


def _exact_from_storage(session: Session) -> Callable[[list[int]], list[np.ndarray | None]]:
    """Reads the exact vectors of components by id (their uuids in one query per batch; files by threads)."""

    def read(ids: list[int]) -> list[np.ndarray | None]:
        uuids = dict(session.execute(select(Component.id, Component.uuid).where(Component.id.in_(ids))).all())
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="incdb-similar") as pool:
            return list(pool.map(lambda cid: load_exact(uuids[cid]) if cid in uuids else None, ids))

    return read


def visible_collection_ids(session: Session, user: Any) -> np.ndarray:
    """Ids of the collections ``user`` may see (``store.access``)."""
    return np.fromiter(session.scalars(select(Collection.id).where(visible_collections(user))), dtype=np.int64)


def similar_components(
    session: Session,
    user: Any,
    unit: np.ndarray,
    limit: int = DEFAULT_LIMIT,
    *,
    of_component: int | None = None,
    exclude_component_id: int | None = None,
    exclude_collection_id: int | None = None,
    stats: SearchStats | None = None,
    exact: Callable[[list[int]], list[np.ndarray | None]] | None = None,
) -> list[dict]:
    """The components ``user`` may see that correlate best with a map, best first.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    user : Any
        The viewer (anonymous: public collections only; see :mod:`store.access`).
    unit : numpy.ndarray
        The map's centred unit vector over the mask (:func:`unit_rows`).
    limit : int
        How many, at most (clipped to 1..:data:`MAX_LIMIT`).
    of_component : int or None
        Id of the catalogue component the map is: its reduced vector is then read, not computed.
    exclude_component_id, exclude_collection_id : int or None
        A component (the page's own) and a collection to leave out.
    stats : SearchStats or None
        Filled with what the search did.
    exact : callable or None
        Component ids -> exact unit vectors; None reads the stored ones (a benchmark passes its own).

    Returns
    -------
    list of dict
        ``uuid``, ``r`` (exact, float64), ``movie``, ``movie_slug``, ``collection``, ``collection_slug``,
        ``best_term``, ``best_term_slug``, ``is_demo`` and ``visibility`` of each.
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    index = current_index(session)
    if index is None or index.size == 0:
        return []
    unit = np.asarray(unit, dtype=np.float64) - float(np.mean(unit))
    norm = float(np.sqrt(np.einsum("i,i->", unit, unit)))
    if norm == 0:
        return []
    unit /= norm
    reduced = None
    if of_component is not None:
        raw = session.scalar(
            select(ComponentVector.vector).where(
                ComponentVector.component_id == of_component, ComponentVector.basis_id == index.basis_id
            )
        )
        reduced = np.frombuffer(raw, dtype=np.float32) if raw else None
    if reduced is None:
        reduced = project(load_basis(index.basis_key), unit[np.newaxis])[0]
    allowed = np.isin(index.collection_ids, visible_collection_ids(session, user))
    if exclude_component_id is not None:
        allowed &= index.component_ids != exclude_component_id
    if exclude_collection_id is not None:
        allowed &= index.collection_ids != exclude_collection_id
    matches = search(index, unit, reduced, allowed, limit, exact or _exact_from_storage(session), stats=stats)
    return describe(session, user, matches)


def describe(session: Session, user: Any, matches: list[Match]) -> list[dict]:
    """The shown fields of matched components, keeping only those ``user`` may (still) see.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    user : Any
        The viewer (``store.access.visible_collections`` decides).
    matches : list of Match
        Component ids with their r, in the order to show.

    Returns
    -------
    list of dict
        In the matches' order: ``uuid``, ``r``, ``movie``, ``movie_slug``, ``collection``, ``collection_slug``,
        ``best_term``, ``best_term_slug``, ``is_demo``, ``visibility``.
    """
    if not matches:
        return []
    ids = [m.component_id for m in matches]
    rows = session.execute(
        select(
            Component.id,
            Component.uuid,
            Movie.title,
            Movie.slug,
            Collection.name,
            Collection.slug,
            Collection.is_demo,
            Collection.visibility,
            Term.name,
            Term.slug,
        )
        .join(Collection, Component.collection_id == Collection.id)
        .join(Movie, Collection.movie_id == Movie.id)
        .outerjoin(Term, Component.best_term_id == Term.id)
        .where(Component.id.in_(ids), visible_collections(user))
    ).all()
    by_id = {row[0]: row for row in rows}
    out = []
    for m in matches:
        row = by_id.get(m.component_id)
        if row is None:
            continue
        _, cuuid, movie, movie_slug, collection, collection_slug, is_demo, visibility, term, term_slug = row
        out.append(
            {
                "uuid": cuuid,
                "r": m.r,
                "movie": movie,
                "movie_slug": movie_slug,
                "collection": collection,
                "collection_slug": collection_slug,
                "best_term": term,
                "best_term_slug": term_slug,
                "is_demo": bool(is_demo),
                "visibility": visibility,
            }
        )
    return out


def similar_to_component(
    session: Session, user: Any, component: Component, limit: int = DEFAULT_LIMIT, other_collections_only: bool = False
) -> list[dict] | None:
    """The components most similar to a catalogue component, itself left out.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    user : Any
        The viewer.
    component : Component
        A component the viewer may see (the caller checked).
    limit : int
        How many, at most.
    other_collections_only : bool
        True: leave out the component's own collection too.

    Returns
    -------
    list of dict or None
        As :func:`similar_components`; None when the component has no exact vector (stored before the index
        existed: ``python -m pipeline similar rebuild`` makes it).
    """
    unit = load_exact(component.uuid)
    if unit is None:
        return None
    return similar_components(
        session,
        user,
        unit,
        limit,
        of_component=component.id,
        exclude_component_id=component.id,
        exclude_collection_id=component.collection_id if other_collections_only else None,
    )


# --- rebuilding --------------------------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    basis_id: int
    dims: int
    components: int
    fitted_on: int
    exact_written: int = 0


def _unit_of(comp_uuid: str, storage_key: str, written: list[int]) -> np.ndarray:
    """A component's exact unit vector, made from its map (and stored) when it has none yet."""
    unit = load_exact(comp_uuid)
    if unit is not None:
        return unit
    unit = unit_rows(masked(load_map(storage_key)))[0]
    save_exact(comp_uuid, unit)
    written.append(1)
    return unit


def rebuild_index(
    progress: Callable[[int, int], None] | None = None, sample: int = FIT_COMPONENTS, batch: int = 64, seed: int = 0
) -> RebuildResult:
    """Fit a new basis on a sample of the catalogue (and the term maps), fill its rows, then switch to it.

    Components without an exact vector get one from their map. The switch is one transaction under the lock:
    it also fills the rows of components stored meanwhile, makes the basis active and deletes every other basis
    (their rows go with them). Until then searches keep using the old basis; a rebuild that dies leaves an
    inactive basis, which the next rebuild deletes.

    Returns
    -------
    RebuildResult
        The new basis and what was done.
    """
    with session_scope() as session:
        comps = session.execute(
            select(Component.id, Component.uuid, Component.storage_key, Component.collection_id).order_by(Component.id)
        ).all()
    written: list[int] = []
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(comps), size=min(sample, len(comps)), replace=False)) if comps else []
    units = [_unit_of(comps[i].uuid, comps[i].storage_key, written) for i in picked]
    with session_scope() as session:
        fit = np.stack(units) if units else np.empty((0, len(mask_flat_indices())), np.float32)
        row = create_basis(session, fit, active=False)
        basis_id, key, dims, fitted = row.id, row.storage_key, row.dims, row.fitted_on
    del units
    basis = load_basis(key)
    for start in range(0, len(comps), batch):
        part = comps[start : start + batch]
        _store_batch(basis_id, basis, part, written)
        if progress:
            progress(min(start + batch, len(comps)), len(comps))
    with session_scope() as session:
        lock_index(session)
        have = set(session.scalars(select(ComponentVector.component_id).where(ComponentVector.basis_id == basis_id)))
        missing = [
            c
            for c in session.execute(
                select(Component.id, Component.uuid, Component.storage_key, Component.collection_id)
            ).all()
            if c.id not in have
        ]
        _insert_rows(session, basis_id, basis, missing, written)
        old = session.scalars(select(SimilarityBasis).where(SimilarityBasis.id != basis_id)).all()
        old_keys = [b.storage_key for b in old]
        mine = session.get(SimilarityBasis, basis_id)
        if mine is None:
            raise RuntimeError("another rebuild finished meanwhile and replaced this one's basis")
        for b in old:
            session.delete(b)
        mine.active = True
        total = len(have) + len(missing)
    for old_key in old_keys:
        get_storage().delete(old_key)
        _basis_cache_path(old_key).unlink(missing_ok=True)
    forget_index()
    return RebuildResult(basis_id=basis_id, dims=dims, components=total, fitted_on=fitted, exact_written=len(written))


def _store_batch(basis_id: int, basis: np.ndarray, part: Iterable, written: list[int]) -> None:
    with session_scope() as session:
        _insert_rows(session, basis_id, basis, list(part), written)


def _insert_rows(session: Session, basis_id: int, basis: np.ndarray, part: list, written: list[int]) -> None:
    if not part:
        return
    units = np.stack([_unit_of(c.uuid, c.storage_key, written) for c in part])
    reduced = project(basis, units)
    session.execute(
        delete(ComponentVector).where(
            ComponentVector.basis_id == basis_id, ComponentVector.component_id.in_([c.id for c in part])
        )
    )
    session.execute(
        insert(ComponentVector),
        [
            dict(
                basis_id=basis_id,
                component_id=c.id,
                collection_id=c.collection_id,
                vector=z.tobytes(),
                captured=_captured(z),
            )
            for c, z in zip(part, reduced)
        ],
    )
