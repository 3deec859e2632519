"""Creating movies, collections, uploads and users: the validated entry points the web app and CLI share."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from pipeline.archives import file_kind, storage_suffix
from store.models import LICENSES, ROLES, VISIBILITIES, Collection, Movie, Upload, User, slugify
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


def unique_collection_slug(session: Session, name: str) -> str:
    base = slugify(name)[:200]
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


def add_upload(session: Session, collection: Collection, path: Path, filename: str) -> Upload:
    """Keep an uploaded file (already on local disk) in storage and record it on the collection."""
    file_kind(filename)  # refuses unsupported types with a clear message
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    key = upload_key(collection.id, str(uuid.uuid4()), filename)
    get_storage().put_file(key, path)
    upload = Upload(collection_id=collection.id, filename=Path(filename).name[:255], storage_key=key,
                    size=path.stat().st_size, sha256=digest.hexdigest())
    session.add(upload)
    session.flush()
    return upload


