"""The movie-title suggestions of the collection form list only movies the curator may see.

A movie that only a private collection of another curator has is private too: its title must not appear in the
form of an unrelated curator, while its owner and an administrator still get it suggested.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import use_environment
from tests.services import Client

PASSWORD = "suggestion-password-1"
SECRET = "The Secret Screening"
OPEN = "An Open Movie"
OTHERS_OPEN = "Everybody's Film"


@pytest.fixture(scope="module")
def world(tmp_path_factory, reference_template):
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from store.db import session_scope

    path = tmp_path_factory.mktemp("suggestions") / "data"
    shutil.copytree(reference_template, path)
    use_environment(path)
    with session_scope() as session:
        a = create_user(session, "a@example.org", PASSWORD)
        b = create_user(session, "b@example.org", PASSWORD)
        create_user(session, "admin@example.org", PASSWORD, role="admin")
        create_collection(session, a, get_or_create_movie(session, SECRET), "A's private study", visibility="private")
        create_collection(session, a, get_or_create_movie(session, OPEN), "A's public study")
        create_collection(session, b, get_or_create_movie(session, OTHERS_OPEN), "B's public study")
    import app

    clients = {}
    for who in ("a", "b", "admin"):
        clients[who] = Client(flask_app=app.server)
        clients[who].sign_in(f"{who}@example.org", PASSWORD)
    return {"path": path, "clients": clients}


@pytest.fixture(autouse=True)
def _environment(world):
    use_environment(world["path"])


def suggestions(client: Client, page: str) -> list[str]:
    """The titles in the movie datalist of the form on ``page``, as the browser receives them."""
    layout = json.loads(client.page_layout(page))
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Datalist":
                found.extend(option["props"]["value"] for option in node["props"]["children"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(layout)
    return found


def test_new_collection_form_hides_other_curators_private_movies(world) -> None:
    titles = suggestions(world["clients"]["b"], "/contribute/new")
    assert OPEN in titles and OTHERS_OPEN in titles
    assert SECRET not in titles


def test_owner_and_admin_are_offered_the_private_movie(world) -> None:
    for who in ("a", "admin"):
        titles = suggestions(world["clients"][who], "/contribute/new")
        assert {SECRET, OPEN, OTHERS_OPEN} <= set(titles), who


def test_edit_form_hides_other_curators_private_movies(world) -> None:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Collection

    with session_scope() as session:
        slug = session.scalar(select(Collection.slug).where(Collection.name == "B's public study"))
    titles = suggestions(world["clients"]["b"], f"/contribute/{slug}")
    assert OTHERS_OPEN in titles and SECRET not in titles
