"""Domain model (DESIGN section 1) as SQLAlchemy 2 typed models."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


SLUG_FALLBACK = "untitled"


def slugify(text: str) -> str:
    """Lower-case slug that keeps the letters of every script: 'Forrest Gump (1994)' -> 'forrest-gump-1994',
    'Amélie' -> 'amelie', 'Сталкер' -> 'сталкер', '千と千尋の神隠し' -> '千と千尋の神隠し'.

    A letter whose compatibility decomposition starts with an ASCII letter or digit becomes that (accents go);
    any other letter or digit is kept as it is (browsers percent-encode it in URLs); everything else separates
    words. A text with no letter or digit gives ``SLUG_FALLBACK``.

    Parameters
    ----------
    text : str
        Any text, e.g. a movie title, collection name or term.

    Returns
    -------
    str
        Lower-case letters and digits in words joined by single ``-``, without a leading or trailing ``-``; never
        empty.
    """
    out = []
    for ch in unicodedata.normalize("NFC", text):
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        if base and base.isalnum():
            out.append(base.lower())
        elif ch.isalnum() and ch != "_":
            out.append(ch.lower())
        else:
            out.append("-")
    return re.sub(r"-+", "-", "".join(out)).strip("-") or SLUG_FALLBACK


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


ROLES = ("curator", "admin")
VISIBILITIES = ("public", "private")
LICENSES = ("CC0-1.0", "CC-BY-4.0")
JOB_KINDS = ("ingest", "redecode", "merge", "temporal", "decode", "synchrony")


class JobStatus(StrEnum):
    """A Job row's status; the members are strings, so they compare and store as their values."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_STATUSES = tuple(JobStatus)
ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class CollectionStatus(StrEnum):
    EMPTY = "empty"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


REFERENCE_SOURCES = ("builtin", "nifti-folder", "neurosynth-v7")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    title: Mapped[str] = mapped_column(String(40), default="")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    affiliation: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default="curator")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Bumped to end every session of the user (sign-out, password change or reset, deactivation, "sign out
    # everywhere"): the session cookie holds the version it was signed in with.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    email_confirmed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())

    collections: Mapped[list[Collection]] = relationship(back_populates="owner")

    @property
    def is_admin(self) -> bool:
        """Whether the user has the admin role."""
        return self.role == "admin"

    # The interface Flask-Login expects of a user object.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Whether the account may sign in (Flask-Login asks); False once deactivated."""
        return self.active

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session cookie: ``"<user id>:<session_version>"``."""
        # Flask-Login stores this in the session; web.auth's loader refuses it once the version moved on.
        return f"{self.id}:{self.session_version}"

    @property
    def display_name(self) -> str:
        """Title, first and last name joined by spaces, or the e-mail address when all three are empty."""
        name = " ".join(p for p in (self.title, self.first_name, self.last_name) if p)
        return name or self.email


class Movie(Base):
    __tablename__ = "movies"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    collections: Mapped[list[Collection]] = relationship(back_populates="movie")


class Collection(Base):
    __tablename__ = "collections"
    __table_args__ = (
        Index("ix_collections_created", "created"),
        Index("ix_collections_movie_visibility", "movie_id", "visibility"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    dataset_url: Mapped[str] = mapped_column(String(1000), default="")
    doi: Mapped[str] = mapped_column(String(255), default="")
    contributors: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(32), default="CC0-1.0")
    visibility: Mapped[str] = mapped_column(String(16), default="public", index=True)
    # The four metadata groups of the upload form (presentation, participants, design, acquisition),
    # validated by the form; stored as one JSON document keyed by group then field.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # pipeline.temporal.timing.Timing.to_dict(): TR, runs (movie start, volumes) and subjects; None until
    # described.
    timing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=CollectionStatus.EMPTY)
    # The uploader's confirmation that they may share the data under ``license``: uploads are refused without it,
    # and changing the license clears it (the confirmation was given for the old license).
    license_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    license_confirmed_by: Mapped[str] = mapped_column(String(254), default="", server_default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(back_populates="collections")
    movie: Mapped[Movie] = relationship(back_populates="collections")
    components: Mapped[list[Component]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )
    uploads: Mapped[list[Upload]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )


class Upload(Base):
    """One file a curator uploaded to a collection (a NIfTI or an archive of them), kept as received."""

    __tablename__ = "uploads"
    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    # 64-bit: uploads reach INCDB_MAX_UPLOAD_BYTES (2 GiB by default). SQLite's INTEGER is 64-bit already.
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    collection: Mapped[Collection] = relationship(back_populates="uploads")


class Component(Base):
    __tablename__ = "components"
    # Lists sort by best r, overall or within one best term, with ORDER BY ... LIMIT on these.
    __table_args__ = (Index("ix_components_term_r", "best_term_id", "best_r"), Index("ix_components_r", "best_r"))
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id", ondelete="SET NULL"), nullable=True)
    source_file: Mapped[str] = mapped_column(String(512))
    volume_index: Mapped[int] = mapped_column(Integer, default=0)
    storage_key: Mapped[str] = mapped_column(String(512))
    best_term_id: Mapped[int | None] = mapped_column(
        ForeignKey("terms.id", ondelete="SET NULL"), nullable=True, index=True
    )
    best_r: Mapped[float | None] = mapped_column(Float, nullable=True)
    decodings_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    qc_warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    decoded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The component's time course is column ``volume_index`` of its map's TimeCourse matrix.
    timecourse_id: Mapped[int | None] = mapped_column(
        ForeignKey("time_courses.id", ondelete="SET NULL"), nullable=True, index=True
    )

    collection: Mapped[Collection] = relationship(back_populates="components")
    timecourse: Mapped[TimeCourse | None] = relationship()
    best_term: Mapped[Term | None] = relationship()
    decodings: Mapped[list[Decoding]] = relationship(
        back_populates="component",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Decoding.rank",
    )


class ReferenceSet(Base):
    __tablename__ = "reference_sets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    voxel_count: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    matrix_key: Mapped[str] = mapped_column(String(512), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    terms: Mapped[list[Term]] = relationship(
        back_populates="reference_set", cascade="all, delete-orphan", order_by="Term.column"
    )


class Term(Base):
    __tablename__ = "terms"
    __table_args__ = (
        UniqueConstraint("reference_set_id", "name"),
        Index("ix_terms_set_slug", "reference_set_id", "slug"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    reference_set_id: Mapped[int] = mapped_column(ForeignKey("reference_sets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    column: Mapped[int] = mapped_column(Integer)  # column of the reference matrix
    storage_key: Mapped[str] = mapped_column(String(512))

    reference_set: Mapped[ReferenceSet] = relationship(back_populates="terms")


class Decoding(Base):
    __tablename__ = "decodings"
    __table_args__ = (
        UniqueConstraint("component_id", "term_id"),
        Index("ix_decodings_term_r", "term_id", "r"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), index=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"))
    r: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)

    component: Mapped[Component] = relationship(back_populates="decodings")
    term: Mapped[Term] = relationship()


class TermMap(Base):
    """Merged map of one movie x term; ``movie_id`` empty means the term across all movies."""

    __tablename__ = "term_maps"
    __table_args__ = (UniqueConstraint("movie_id", "term_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    movie_id: Mapped[int | None] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), nullable=True, index=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"), index=True)
    reference_set_id: Mapped[int] = mapped_column(ForeignKey("reference_sets.id", ondelete="CASCADE"))
    storage_key: Mapped[str] = mapped_column(String(512))
    n_components: Mapped[int] = mapped_column(Integer, default=0)
    # Public maps and "all visible" maps differ once private collections exist: a TermMap only ever
    # merges components of public collections, so it can be shown to anyone.
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    movie: Mapped[Movie | None] = relationship()
    term: Mapped[Term] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: uuid.uuid4().hex)
    kind: Mapped[str] = mapped_column(String(16))
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Written every few seconds by the process running the job (pipeline.jobs.heartbeat.heartbeat); a running job whose
    # heartbeat stopped lost its process (see pipeline.jobs.lifecycle.settle_stalled_jobs).
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The process that runs (or last ran) the job, pipeline.jobs.heartbeat.process_identity(): a message that comes back
    # may take over a running job only when this process is gone (pipeline.jobs.lifecycle.claim_job).
    runner: Mapped[str | None] = mapped_column(String(255), nullable=True)

    collection: Mapped[Collection | None] = relationship()

    def summary(self) -> dict[str, Any]:
        """The fields a page shows of the job, as plain values."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": str(self.status),
            "done": self.progress_done,
            "total": self.progress_total,
            "message": self.message,
            "error": self.error,
            "warnings": list(self.warnings or []),
            "attempts": self.attempts,
            "collection_id": self.collection_id,
        }

    # The movie a temporal-decoding job recomputes (its annotation sets changed).
    movie_id: Mapped[int | None] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), nullable=True)


class TimeCourse(Base):
    """The time courses of one uploaded 4D map: a float32 (rows x components) artifact in storage; rows follow
    the collection's timing (``Collection.timing``), columns the map's volumes."""

    __tablename__ = "time_courses"
    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id", ondelete="SET NULL"), nullable=True)
    source_file: Mapped[str] = mapped_column(String(512))  # the map the time courses belong to
    mix_file: Mapped[str] = mapped_column(String(512))
    storage_key: Mapped[str] = mapped_column(String(512))
    spectra_key: Mapped[str | None] = mapped_column(String(512), nullable=True)  # melodic_FTmix, when given
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnnotationSet(Base):
    """A set of events of one movie (BIDS-style: onset, duration in movie seconds, label, amplitude)."""

    __tablename__ = "annotation_sets"
    __table_args__ = (UniqueConstraint("movie_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    source_url: Mapped[str] = mapped_column(String(1000), default="")
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    movie: Mapped[Movie] = relationship()
    owner: Mapped[User | None] = relationship()
    events: Mapped[list[AnnotationEvent]] = relationship(
        back_populates="annotation_set",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="AnnotationEvent.onset",
    )


class AnnotationEvent(Base):
    __tablename__ = "annotation_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True)
    onset: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(200), index=True)
    amplitude: Mapped[float] = mapped_column(Float, default=1.0)

    annotation_set: Mapped[AnnotationSet] = relationship(back_populates="events")


class TemporalDecoding(Base):
    """How well one annotation label's HRF-convolved regressor follows a component's time course: Pearson r,
    p from a circular-shift null, Benjamini-Hochberg q over the component's labels; rank 1 is the best."""

    __tablename__ = "temporal_decodings"
    __table_args__ = (Index("ix_temporal_decodings_label_q", "label", "q"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), index=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200), index=True)
    r: Mapped[float] = mapped_column(Float)
    p: Mapped[float] = mapped_column(Float)
    q: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)

    annotation_set: Mapped[AnnotationSet] = relationship()


# --- derived counts (DESIGN section 16) ---------------------------------------------------------------------------
# Aggregates kept by ``store.stats`` in the transaction that changes their inputs. ``scope`` is "public" (public
# collections only: what anonymous visitors see) or "all" (every collection: what an admin sees); a curator sees
# "public" plus a live query over their own private collections. A row exists only while its count is above zero.

STATS_SCOPES = ("public", "all")

# Search indexes made by migration 0006 outside the ORM's metadata (they depend on the database): PostgreSQL
# trigram (pg_trgm) indexes, and SQLite FTS5 trigram tables (with their shadow tables) kept by triggers.
SEARCH_INDEXES = ("ix_movies_title_trgm", "ix_terms_name_trgm")
SEARCH_TABLES = ("movies_fts", "terms_fts")


def is_search_object(name: str | None) -> bool:
    """Whether a database object is one of the search indexes above (not described by the models)."""
    return bool(name) and (name in SEARCH_INDEXES or name.startswith(SEARCH_TABLES))


class CatalogStats(Base):
    __tablename__ = "stats_catalog"
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    n_movies: Mapped[int] = mapped_column(Integer, default=0)
    n_collections: Mapped[int] = mapped_column(Integer, default=0)
    n_components: Mapped[int] = mapped_column(Integer, default=0)


class MovieStats(Base):
    __tablename__ = "stats_movies"
    __table_args__ = (
        Index("ix_stats_movies_newest", "scope", "newest"),
        Index("ix_stats_movies_components", "scope", "n_components"),
    )
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True)
    n_collections: Mapped[int] = mapped_column(Integer, default=0)
    n_components: Mapped[int] = mapped_column(Integer, default=0)
    newest: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # newest collection


class TermStats(Base):
    __tablename__ = "stats_terms"
    __table_args__ = (
        Index("ix_stats_terms_components", "scope", "n_components"),
        Index("ix_stats_terms_movies", "scope", "n_movies"),
    )
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"), primary_key=True)
    n_movies: Mapped[int] = mapped_column(Integer, default=0)
    n_collections: Mapped[int] = mapped_column(Integer, default=0)
    n_components: Mapped[int] = mapped_column(Integer, default=0)
    sum_r: Mapped[float] = mapped_column(Float, default=0.0)
    newest: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MovieTermStats(Base):
    __tablename__ = "stats_movie_terms"
    __table_args__ = (
        Index("ix_stats_movie_terms_term", "scope", "term_id", "n_components"),
        Index("ix_stats_movie_terms_newest", "scope", "term_id", "newest"),
    )
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), primary_key=True)
    term_id: Mapped[int] = mapped_column(ForeignKey("terms.id", ondelete="CASCADE"), primary_key=True)
    n_collections: Mapped[int] = mapped_column(Integer, default=0)
    n_components: Mapped[int] = mapped_column(Integer, default=0)
    sum_r: Mapped[float] = mapped_column(Float, default=0.0)
    newest: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SimilarityBasis(Base):
    """The fixed linear projection of the similarity index (``pipeline.decoding.similar``): an orthonormal basis of
    ``dims`` columns over the brain mask, stored as a float32 (mask voxels x dims) ``.npy`` under ``storage_key``.
    Exactly one basis is active; a rebuild fills the rows of a new one, then switches in one transaction."""

    __tablename__ = "similarity_bases"
    id: Mapped[int] = mapped_column(primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(512))
    dims: Mapped[int] = mapped_column(Integer)
    fitted_on: Mapped[int] = mapped_column(Integer, default=0)  # maps the basis was fitted on
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ComponentVector(Base):
    """A component's reduced vector in one basis: the projection of its centred, unit-norm masked map, float32
    bytes, and the share of its variance that the basis holds (``captured`` = squared norm of the vector). Rows
    are replaced, never updated, so new rows always have larger ids (the search cache reads only those)."""

    __tablename__ = "component_vectors"
    __table_args__ = (UniqueConstraint("basis_id", "component_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    basis_id: Mapped[int] = mapped_column(ForeignKey("similarity_bases.id", ondelete="CASCADE"), index=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    captured: Mapped[float] = mapped_column(Float)


DECODE_STATUSES = ("queued", "running", "done", "failed")
DECODE_MASKS = ("brain", "nonzero")


class DecodeResult(Base):
    """A visitor's map decoded on ``/decode``: private, reachable only through its unguessable ``token``, never
    part of the catalogue, removed after ``expires`` by ``python -m pipeline sweep``. Files live under
    ``storage_prefix`` (the map's volumes on the grid and the result)."""

    __tablename__ = "decode_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    client_hash: Mapped[str] = mapped_column(String(64), index=True)  # keyed hash of the client's address
    reference_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("reference_sets.id", ondelete="SET NULL"), nullable=True
    )
    reference_name: Mapped[str] = mapped_column(String(255), default="")
    mask: Mapped[str] = mapped_column(String(16), default="brain")
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    volumes: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    storage_prefix: Mapped[str] = mapped_column(String(512))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# --- synchrony (DESIGN section 18) --------------------------------------------------------------------------------
# Inter-subject correlation of a collection's components, computed by ``pipeline.synchrony.jobs`` from the
# subjects' blocks of the time courses. Arrays that pages draw whole (windowed ISC, ISFC) are float32 artifacts;
# the rows hold what lists sort and filter on.


class ComponentISC(Base):
    """ISC of one component: leave-one-out (``isc``) and pairwise (``isc_pairwise``) Fisher-z means over subjects,
    one-sided p from a phase-randomisation null, Benjamini-Hochberg q over the collection's components. Values the
    data cannot give (one subject; two subjects have no leave-one-out ISC; a constant series) are NULL and ``note``
    says why. ``subjects`` holds each subject's leave-one-out r (NULL where undefined)."""

    __tablename__ = "component_isc"
    __table_args__ = (Index("ix_component_isc_collection_isc", "collection_id", "isc"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), unique=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    isc: Mapped[float | None] = mapped_column(Float, nullable=True)
    isc_pairwise: Mapped[float | None] = mapped_column(Float, nullable=True)
    p: Mapped[float | None] = mapped_column(Float, nullable=True)
    q: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_subjects: Mapped[int] = mapped_column(Integer, default=0)
    n_resamples: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    subjects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Column of this component in its collection's windowed-ISC artifact (CollectionSynchrony.windowed_key).
    column: Mapped[int | None] = mapped_column(Integer, nullable=True)

    component: Mapped[Component] = relationship()


class CollectionSynchrony(Base):
    """What a synchrony run computed for a whole collection: the order of its components in the artifacts, the
    ISFC matrix (float32 components x components, ``isfc_key``) and the windowed leave-one-out ISC (float32
    windows x (1 + components), ``windowed_key``: column 0 is the movie time in seconds of each window's centre)."""

    __tablename__ = "collection_synchrony"
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    n_subjects: Mapped[int] = mapped_column(Integer, default=0)
    n_resamples: Mapped[int] = mapped_column(Integer, default=0)
    window_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)  # component uuids, artifact order
    isfc_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    windowed_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    median_isc: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    computed: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SynchronyMoment(Base):
    """A moment of synchrony of one collection: a peak of the across-component mean of windowed ISC above its
    phase-randomised 95th percentile, at the movie time of the window's centre, with the annotation labels of the
    movie active then."""

    __tablename__ = "synchrony_moments"
    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), index=True)
    time_s: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)


class SynchronyLabel(Base):
    """Windowed ISC of one component during the events of one annotation label (``inside``) and outside them,
    with p from circular shifts of the events."""

    __tablename__ = "synchrony_labels"
    __table_args__ = (Index("ix_synchrony_labels_set_label", "set_id", "label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    inside: Mapped[float] = mapped_column(Float)
    outside: Mapped[float] = mapped_column(Float)
    p: Mapped[float] = mapped_column(Float)

    annotation_set: Mapped[AnnotationSet] = relationship()
