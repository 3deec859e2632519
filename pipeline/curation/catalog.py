"""Creating movies, collections, uploads and users: the validated entry points the web app and CLI share."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.curation.archives import file_kind, storage_suffix
from pipeline.curation.metadata import validate_metadata
from pipeline.curation.uploads import check_file_name
from pipeline.decoding.reference import active_reference
from pipeline.decoding.termmaps import rebuild_term_maps
from pipeline.jobs.lifecycle import active_job
from pipeline.synchrony.jobs import clear_collection_synchrony, relabel_collection
from pipeline.temporal.timing import TimeCourseError, Timing
from store.artifacts import map_and_thumbnail, similarity_vector_key
from store.config import get_settings
from store.db import session_scope
from store.models import (
    LICENSES,
    SLUG_FALLBACK,
    VISIBILITIES,
    Collection,
    Component,
    Movie,
    Upload,
    User,
    slugify,
    utcnow,
)
from store.storage import get_storage
from store.validation import TEXT_LIMITS, check_choice, has_control_characters


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
        movie = session.scalar(select(Movie).where(Movie.title == title, Movie.slug.like(f"{SLUG_FALLBACK}%")))
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
        raise QuotaExceeded(
            f"You have {have} collections, the most one curator may have here ({limit}). Delete "
            "one you no longer need, or ask an administrator to raise the limit."
        )


def create_collection(
    session: Session,
    owner: User,
    movie: Movie,
    name: str,
    visibility: str = "public",
    license: str = "CC0-1.0",
    **fields,
) -> Collection:
    name = " ".join(name.split())
    if not name:
        raise ValueError("the collection needs a name")
    check_choice(visibility, VISIBILITIES, "visibility")
    check_choice(license, LICENSES, "license")
    check_collection_quota(session, owner)
    collection = Collection(
        owner_id=owner.id,
        movie_id=movie.id,
        name=name,
        slug=unique_collection_slug(session, name),
        visibility=visibility,
        license=license,
        **fields,
    )
    session.add(collection)
    session.flush()
    return collection


def upload_key(collection_id: int, upload_uuid: str, filename: str) -> str:
    return f"uploads/{collection_id}/{upload_uuid}{storage_suffix(filename)}"


def add_upload(
    session: Session, collection: Collection, path: Path, filename: str, sha256: str | None = None
) -> Upload:
    """Keep an uploaded file (already on local disk) in storage and record it on the collection.
    ``sha256``: the digest when the caller computed it already (the upload endpoint does, while streaming)."""
    filename = check_file_name(filename)  # the upload route's rule: no control characters, at most 255
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
    upload = Upload(
        collection_id=collection.id, filename=filename, storage_key=key, size=path.stat().st_size, sha256=sha256
    )
    session.add(upload)
    session.flush()
    return upload


EDITABLE_TEXT_FIELDS = {name: TEXT_LIMITS[name] for name in ("description", "dataset_url", "doi", "contributors")}


def update_collection(
    session: Session,
    collection: Collection,
    *,
    name: str | None = None,
    movie: Movie | None = None,
    visibility: str | None = None,
    license: str | None = None,
    metadata: dict | None = None,
    timing: dict | None | bool = False,
    **fields: str,
) -> Collection:
    """Change a collection's description and metadata. The slug stays (links keep working). Merged maps hold
    public components only, so a change of visibility or movie rebuilds the maps of the collection's terms."""
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
        check_choice(license, LICENSES, "license")
        collection.license = license
        collection.license_confirmed_at, collection.license_confirmed_by = None, ""
    if metadata is not None:
        collection.metadata_ = metadata
    retimed = timing is not False and timing != collection.timing
    if timing is not False:  # None clears the timing
        collection.timing = timing
    remerge, movies = False, {collection.movie_id}
    if visibility is not None and visibility != collection.visibility:
        check_choice(visibility, VISIBILITIES, "visibility")
        collection.visibility, remerge = visibility, True
    moved = movie is not None and movie.id != collection.movie_id
    if moved:
        collection.movie_id, remerge = movie.id, True
        movies.add(movie.id)
    session.flush()
    if retimed:  # the ISC of another timing is not this one's: computed again at the next processing
        clear_collection_synchrony(session, collection.id)
    elif moved:  # the same ISC, at the same movie times: its moments and rows by label go with it
        relabel_collection(session, collection.id)
    if remerge:
        terms = set(
            session.scalars(
                select(Component.best_term_id).where(
                    Component.collection_id == collection.id, Component.best_term_id.is_not(None)
                )
            )
        )
        reference = active_reference(session)
        if terms and reference is not None:
            rebuild_term_maps(session, reference, terms, movie_ids=movies)
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
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            raise ValueError("no such collection")
        if active_job(session, collection_id) is not None:
            raise ValueError("processing is running; cancel it before deleting the collection")
        comps = session.scalars(select(Component).where(Component.collection_id == collection_id)).all()
        terms = {c.best_term_id for c in comps if c.best_term_id is not None}
        keys = map_and_thumbnail([c.storage_key for c in comps]) + [c.decodings_key for c in comps if c.decodings_key]
        keys += [similarity_vector_key(c.uuid) for c in comps]
        keys += [u.storage_key for u in session.scalars(select(Upload).where(Upload.collection_id == collection_id))]
        movie_id = collection.movie_id
        session.delete(collection)
        session.flush()
        reference = active_reference(session)
        if terms and reference is not None:
            rebuild_term_maps(session, reference, terms, movie_ids=[movie_id])
    storage = get_storage()
    for key in keys:
        storage.delete(key)
    storage.delete_prefix(f"uploads/{collection_id}")
    return len(comps)


# --- the collection form ----------------------------------------------------------------------------------------

_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
# form field -> (what the messages call it, its key in store.validation.TEXT_LIMITS)
_FORM_TEXT = {
    "name": ("name", "collection_name"),
    "movie": ("movie title", "movie_title"),
    "contributors": ("contributors", "contributors"),
    "description": ("description", "description"),
    "dataset_url": ("dataset URL", "dataset_url"),
    "doi": ("DOI", "doi"),
}


def validate_collection_form(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The create/edit form's values -> (clean values, messages for the curator).

    Parameters
    ----------
    raw : dict
        The form's fields (``dashboard.components.collection_form.FIELDS``) plus ``metadata`` (group -> field ->
        value). Values may be anything a forged request sends: non-text where text belongs counts as empty.

    Returns
    -------
    clean : dict
        Normalised values, ready for ``create_collection`` / ``update_collection``.
    errors : list of str
        Empty when the form may be saved.
    """
    errors: list[str] = []
    clean = _clean_form_text(raw, errors)
    if not clean["name"]:
        errors.append("Give the collection a name.")
    if not clean["movie"]:
        errors.append("Name the movie the participants watched.")
    clean["year"] = _form_year(raw.get("year"), errors)
    url = clean["dataset_url"]
    if url and not re.match(r"^https?://[^\s/]+\.[^\s]+$", url):
        errors.append("The dataset URL must be a web address starting with https:// (or http://).")
    doi = clean["doi"]
    for prefix in _DOI_PREFIXES:
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix) :]
    if doi and not re.match(r"^10\.\d{4,9}/\S+$", doi):
        errors.append("The DOI must look like 10.1234/abcd (a doi.org link is fine too).")
    clean["doi"] = doi
    for name, allowed, default in (("license", LICENSES, "CC0-1.0"), ("visibility", VISIBILITIES, "public")):
        clean[name] = raw.get(name) or default
        try:
            check_choice(clean[name], allowed, name)
        except ValueError as exc:
            errors.append(str(exc))
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    clean["metadata"], meta_errors = validate_metadata(metadata)
    errors += [m if m.endswith(".") else m + "." for m in meta_errors]
    clean["timing"] = _form_timing(raw, clean["metadata"], errors)
    return clean, errors


def _form_timing(raw: dict[str, Any], metadata: dict[str, Any], errors: list[str]) -> dict[str, Any] | None:
    """The timing of the time courses from the form's runs and subjects, with the acquisition's TR; None when no
    runs are given."""
    runs = raw.get("runs")
    if not isinstance(runs, str) or not runs.strip():
        return None
    tr = (metadata.get("acquisition") or {}).get("tr")
    if tr is None:
        errors.append(
            "Give the repetition time (TR) under Acquisition: the runs' volumes are placed on the movie with it."
        )
        return None
    subjects = raw.get("subjects") if isinstance(raw.get("subjects"), str | int) else 1
    try:
        return Timing.parse(tr, runs, subjects or 1).to_dict()
    except TimeCourseError as exc:
        errors.append(str(exc))
        return None


def _clean_form_text(raw: dict[str, Any], errors: list[str]) -> dict[str, str]:
    """The text fields, stripped (one-line fields also with their inner whitespace collapsed), checked for
    control characters and length."""
    clean = {}
    for key, (label, limit_key) in _FORM_TEXT.items():
        value = raw.get(key)
        value = value if isinstance(value, str) else ""
        multiline = key == "description"
        if has_control_characters(value, allow_newlines=multiline):
            errors.append(f"The {label} contains control characters; type or paste it again as plain text.")
            value = ""
        value = value.strip() if multiline or key in ("dataset_url", "doi") else " ".join(value.split())
        if len(value) > TEXT_LIMITS[limit_key]:
            errors.append(f"The {label} may have at most {TEXT_LIMITS[limit_key]} characters.")
            value = ""
        clean[key] = value
    return clean


def _form_year(value: Any, errors: list[str]) -> int | None:
    year = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not year:
        return None
    if not year.isdigit() or not 1888 <= int(year) <= 2100:
        errors.append("The movie's year must be a year such as 1994.")
        return None
    return int(year)
