"""Creating movies, collections, uploads and users: the validated entry points the web app and CLI share."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from pipeline.archives import file_kind, storage_suffix
from pipeline.heartbeat import settle_stalled_jobs
from store.models import (
    LICENSES,
    ROLES,
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
from store.storage import get_storage

PASSWORD_MIN_LENGTH = 10


def hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"the password must have at least {PASSWORD_MIN_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        raise ValueError(f"{email!r} is not an email address")
    return email


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
    title = " ".join(title.split())
    if not title:
        raise ValueError("the movie title is empty")
    slug = slugify(title)
    movie = session.scalar(select(Movie).where(Movie.slug == slug))
    if movie is None:
        movie = Movie(title=title, slug=slug, year=year)
        session.add(movie)
        session.flush()
    return movie


# Slugs that name pages under /contribute/ and so cannot name a collection.
RESERVED_SLUGS = frozenset({"new"})


def unique_collection_slug(session: Session, name: str) -> str:
    base = slugify(name)[:200]
    if base in RESERVED_SLUGS:
        base = f"{base}-collection"
    slug, n = base, 2
    while session.scalar(select(Collection.id).where(Collection.slug == slug)) is not None:
        slug, n = f"{base}-{n}", n + 1
    return slug


def create_collection(session: Session, owner: User, movie: Movie, name: str, visibility: str = "public",
                      license: str = "CC0-1.0", **fields) -> Collection:
    name = " ".join(name.split())
    if not name:
        raise ValueError("the collection needs a name")
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if license not in LICENSES:
        raise ValueError(f"license must be one of {', '.join(LICENSES)}")
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

