"""Creating movies, collections, uploads and users: the validated entry points the web app and CLI share."""
from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from pipeline.archives import file_kind, storage_suffix
from pipeline.heartbeat import settle_stalled_jobs
from store.models import (
    LICENSES,
    ROLES,
    SLUG_FALLBACK,
    VISIBILITIES,
    Collection,
    Component,
    Job,
    Movie,
    Upload,
    User,
    slugify,
    utcnow,
)
from store.config import get_settings
from store.storage import get_storage

PASSWORD_MIN_LENGTH = 10


def hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"the password must have at least {PASSWORD_MIN_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")


EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a forward path, and the column's length
_EMAIL_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_email(email: str) -> str:
    """The address in lower case, or ValueError when it is not one a mail server would take.

    One ``@``; a local part of the usual characters (no quoting, no spaces, no control characters: a CR/LF in an
    address could add header lines to a mail); a domain of at least two dot-separated labels (internationalised
    domains are taken in their IDNA form)."""
    email = (email or "").strip().lower()
    if not email or len(email) > EMAIL_MAX_LENGTH or email.count("@") != 1:
        raise ValueError(f"{email[:80]!r} is not an email address")
    local, domain = email.split("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{email[:80]!r} is not an email address") from None
    labels = domain.split(".")
    if (not _EMAIL_LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local
            or len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise ValueError(f"{email[:80]!r} is not an email address")
    return f"{local}@{domain}"


def create_user(session: Session, email: str, password: str | None, role: str = "curator", **profile) -> User:
    email = normalise_email(email)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise ValueError(f"a user with the email {email} already exists")
    user = User(email=email, role=role, password_hash=hash_password(password) if password else "", **profile)
    session.add(user)
    session.flush()
    return user


def get_or_create_movie(session: Session, title: str, year: int | None = None) -> Movie:
    """The movie with this title, made if new.

    Titles with the same slug are one movie ('Amélie' and 'amelie'), except titles without any letter or digit,
    whose slug is the fallback: those match only an equal title, and a new one gets a numbered slug."""
    title = " ".join(title.split())
    if not title:
        raise ValueError("the movie title is empty")
    base = slugify(title)[:200]
    if base != SLUG_FALLBACK:
        movie = session.scalar(select(Movie).where(Movie.slug == base))
    else:
        movie = session.scalar(select(Movie).where(Movie.title == title,
                                                   Movie.slug.like(f"{SLUG_FALLBACK}%")))
    if movie is None:
        movie = Movie(title=title, slug=_free_slug(session, Movie, base), year=year)
        session.add(movie)
        session.flush()
    return movie


def _free_slug(session: Session, model: type, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever no row of ``model`` has yet."""
    slug, n = base, 2
    while session.scalar(select(model.id).where(model.slug == slug)) is not None:
        slug, n = f"{base}-{n}", n + 1
    return slug


# Slugs that name pages under /contribute/ and so cannot name a collection.
RESERVED_SLUGS = frozenset({"new"})


def unique_collection_slug(session: Session, name: str) -> str:
    base = slugify(name)[:200]
    if base in RESERVED_SLUGS:
        base = f"{base}-collection"
    return _free_slug(session, Collection, base)


class QuotaExceeded(ValueError):
    """A per-user limit is reached; the message says which and what to do."""


def check_collection_quota(session: Session, owner: User) -> None:
    """Raise QuotaExceeded when a curator has ``INCDB_MAX_COLLECTIONS_PER_USER`` collections already
    (administrators have no limit)."""
    limit = get_settings().max_collections_per_user
    if owner.is_admin:
        return
    have = session.scalar(select(func.count(Collection.id)).where(Collection.owner_id == owner.id)) or 0
    if have >= limit:
        raise QuotaExceeded(f"You have {have} collections, the most one curator may have here ({limit}). Delete "
                            "one you no longer need, or ask an administrator to raise the limit.")


def create_collection(session: Session, owner: User, movie: Movie, name: str, visibility: str = "public",
                      license: str = "CC0-1.0", **fields) -> Collection:
    name = " ".join(name.split())
    if not name:
        raise ValueError("the collection needs a name")
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if license not in LICENSES:
        raise ValueError(f"license must be one of {', '.join(LICENSES)}")
    check_collection_quota(session, owner)
    collection = Collection(owner_id=owner.id, movie_id=movie.id, name=name,
                            slug=unique_collection_slug(session, name), visibility=visibility, license=license,
                            **fields)
    session.add(collection)
    session.flush()
    return collection


def upload_key(collection_id: int, upload_uuid: str, filename: str) -> str:
    return f"uploads/{collection_id}/{upload_uuid}{storage_suffix(filename)}"


def add_upload(session: Session, collection: Collection, path: Path, filename: str,
               sha256: str | None = None) -> Upload:
    """Keep an uploaded file (already on local disk) in storage and record it on the collection.
    ``sha256``: the digest when the caller computed it already (the upload endpoint does, while streaming)."""
    file_kind(filename)  # refuses unsupported types with a clear message
    path = Path(path)
    if sha256 is None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    key = upload_key(collection.id, str(uuid.uuid4()), filename)
    get_storage().put_file(key, path)
    upload = Upload(collection_id=collection.id, filename=Path(filename).name[:255], storage_key=key,
                    size=path.stat().st_size, sha256=sha256)
    session.add(upload)
    session.flush()
    return upload


EDITABLE_TEXT_FIELDS = {"description": 20000, "dataset_url": 1000, "doi": 255, "contributors": 5000}
ACTIVE_JOB_STATUSES = ("queued", "running")


def active_job(session: Session, collection_id: int) -> Job | None:
    """The collection's queued or running job, if any (a job whose process died no longer counts)."""
    settle_stalled_jobs(session)
    return session.scalar(select(Job).where(Job.collection_id == collection_id,
                                            Job.status.in_(ACTIVE_JOB_STATUSES)).order_by(Job.id.desc()))


def update_collection(session: Session, collection: Collection, *, name: str | None = None,
                      movie: Movie | None = None, visibility: str | None = None, license: str | None = None,
                      metadata: dict | None = None, **fields: str) -> Collection:
    """Change a collection's description and metadata. The slug stays (links keep working). Merged maps hold
    public components only, so a change of visibility or movie rebuilds the maps of the collection's terms."""
    from pipeline.reference import active_reference
    from pipeline.termmaps import rebuild_term_maps

    if name is not None:
        name = " ".join(name.split())
        if not name:
            raise ValueError("the collection needs a name")
        collection.name = name[:255]
    for field, value in fields.items():
        if field not in EDITABLE_TEXT_FIELDS:
            raise ValueError(f"unknown collection field {field!r}")
        value = (value or "").strip()
        if len(value) > EDITABLE_TEXT_FIELDS[field]:
            raise ValueError(f"{field.replace('_', ' ')} is longer than {EDITABLE_TEXT_FIELDS[field]} characters")
        setattr(collection, field, value)
    if license is not None and license != collection.license:
        if license not in LICENSES:
            raise ValueError(f"license must be one of {', '.join(LICENSES)}")
        collection.license = license
        collection.license_confirmed_at, collection.license_confirmed_by = None, ""
    if metadata is not None:
        collection.metadata_ = metadata
    remerge = False
    if visibility is not None and visibility != collection.visibility:
        if visibility not in VISIBILITIES:
            raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}")
        collection.visibility, remerge = visibility, True
    if movie is not None and movie.id != collection.movie_id:
        collection.movie_id, remerge = movie.id, True
    session.flush()
    if remerge:
        terms = set(session.scalars(select(Component.best_term_id).where(
            Component.collection_id == collection.id, Component.best_term_id.is_not(None))))
        reference = active_reference(session)
        if terms and reference is not None:
            rebuild_term_maps(session, reference, terms)
    return collection


def confirm_license(session: Session, collection: Collection, user: User) -> None:
    collection.license_confirmed_at = utcnow()
    collection.license_confirmed_by = user.email
    session.flush()


def delete_upload(session: Session, collection: Collection, upload_id: int) -> str:
    """Forget one uploaded file (its components go at the next processing). Returns the storage key to delete
    once the transaction is committed."""
    upload = session.get(Upload, upload_id)
    if upload is None or upload.collection_id != collection.id:
        raise ValueError("no such upload in this collection")
    if active_job(session, collection.id) is not None:
        raise ValueError("processing is running; wait for it to finish or cancel it first")
    key = upload.storage_key
    session.delete(upload)
    session.flush()
    return key


def delete_collection(collection_id: int) -> int:
    """Delete a collection with its uploads, components, decodings and jobs, rebuild the merged maps its
    components were part of, then remove its files. Returns the number of components removed.

    Rows go first, in one transaction with the rebuilt maps; files are removed only after the commit, so a failure
    leaves at worst unreferenced files, never rows pointing at missing ones."""
    from pipeline.reference import active_reference
    from pipeline.termmaps import rebuild_term_maps
    from store.db import session_scope

    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            raise ValueError("no such collection")
        if active_job(session, collection_id) is not None:
            raise ValueError("processing is running; cancel it before deleting the collection")
        comps = session.scalars(select(Component).where(Component.collection_id == collection_id)).all()
        terms = {c.best_term_id for c in comps if c.best_term_id is not None}
        keys = [k for c in comps for k in (c.storage_key, c.decodings_key) if k]
        keys += [u.storage_key for u in session.scalars(select(Upload).where(Upload.collection_id == collection_id))]
        session.delete(collection)
        session.flush()
        reference = active_reference(session)
        if terms and reference is not None:
            rebuild_term_maps(session, reference, terms)
    storage = get_storage()
    for key in keys:
        storage.delete(key)
    storage.delete_prefix(f"uploads/{collection_id}")
    return len(comps)

