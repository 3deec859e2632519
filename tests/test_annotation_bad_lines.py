"""An events file with bad lines: refused whole with every bad line listed (line numbers and why, the list capped),
and importable with the bad lines skipped and listed, from the pipeline, the command line and the annotations page.
The events reader uses the public parsing module of the time package, not other modules' private helpers.
"""

from __future__ import annotations

import ast
import base64
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from pipeline.curation.catalog import create_collection, get_or_create_movie
from pipeline.temporal.annotations import AnnotationError, add_annotation_set
from pipeline.temporal.events import MAX_LISTED_BAD_LINES, BadLinesError, Event, read_events
from pipeline.temporal.timing import TimeCourseError
from store.db import session_scope
from store.models import AnnotationEvent, AnnotationSet, Movie, User
from tests.conftest import CURATOR_PASSWORD, ROOT
from tests.services import Client

HEADER = "onset\tduration\ttrial_type\n"
# Lines 2-9: three bad ones (3: end before start, 5: onset not a number, 8: no label) among five valid events.
MIXED = HEADER + (
    "0\t2\tspeech\n10\t-2\tspeech\n20\t1\tfaces\nabc\t1\tspeech\n40\t3\tfaces\n\n50\t1\tn/a\n60\t2\tspeech\n"
)
VALID = [
    Event(0.0, 2.0, "speech"),
    Event(20.0, 1.0, "faces"),
    Event(40.0, 3.0, "faces"),
    Event(60.0, 2.0, "speech"),
]


def test_every_bad_line_is_listed_with_its_number_and_why():
    with pytest.raises(BadLinesError) as info:
        read_events(MIXED, "mixed.tsv")
    exc = info.value
    message = str(exc)
    assert message.startswith("mixed.tsv: 3 lines cannot be read: line 3: the duration must be a number of seconds")
    assert "'-2'" in message and "An event cannot end before it starts" in message
    assert "line 5: the onset must be a number of seconds >= 0, not 'abc'" in message
    assert "line 8: the trial_type is missing ('n/a')" in message
    assert "other 4 events are valid" in message
    assert [line.number for line in exc.bad_lines] == [3, 5, 8] and exc.n_bad == 3
    assert exc.events == VALID
    assert isinstance(exc, TimeCourseError)  # callers that catch the file's errors still do


def test_the_list_of_bad_lines_is_capped_and_counts_the_rest():
    rows = "".join(f"{i}\t-1\ts\n" if i % 2 else f"{i}\t1\ts\n" for i in range(200))
    with pytest.raises(BadLinesError) as info:
        read_events(HEADER + rows, "many.tsv")
    message = str(info.value)
    assert message.startswith("many.tsv: 100 lines cannot be read: line 3: ")
    assert message.count("line ") == MAX_LISTED_BAD_LINES  # the listed lines; the others are counted
    assert f"and {100 - MAX_LISTED_BAD_LINES} more lines" in message
    assert info.value.n_bad == 100 and len(info.value.events) == 100


def test_a_file_without_any_valid_line_cannot_be_imported():
    with pytest.raises(BadLinesError, match="No line of the file holds a valid event") as info:
        read_events(HEADER + "1\t-1\ts\n2\tx\ts\n", "bad.tsv")
    assert info.value.events == []


def _movie() -> dict:
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "cora@example.org"))
        film = get_or_create_movie(session, "Bad Lines Movie")
        create_collection(session, user, film, "Bad lines collection")
        return {"id": film.id, "slug": film.slug, "user": user.id}


def _counts() -> tuple[int, int]:
    with session_scope() as session:
        return (
            session.scalar(select(func.count(AnnotationSet.id))),
            session.scalar(select(func.count(AnnotationEvent.id))),
        )


def test_the_pipeline_refuses_the_file_then_imports_its_valid_lines_on_request(curator):
    movie = _movie()
    with session_scope() as session:
        user, film = session.get(User, movie["user"]), session.get(Movie, movie["id"])
        with pytest.raises(AnnotationError) as info:
            add_annotation_set(session, user, film, "Mixed", MIXED, "mixed.tsv")
    exc = info.value
    assert (exc.n_bad, exc.n_valid, [b.number for b in exc.bad_lines]) == (3, 4, [3, 5, 8])
    assert _counts() == (0, 0)  # nothing changed

    with session_scope() as session:
        user, film = session.get(User, movie["user"]), session.get(Movie, movie["id"])
        added = add_annotation_set(session, user, film, "Mixed", MIXED, "mixed.tsv", skip_bad_lines=True)
        assert [b.number for b in added.skipped_lines] == [3, 5, 8] and added.n_skipped == 3
    assert _counts() == (1, 4)
    with session_scope() as session:
        stored = session.execute(
            select(AnnotationEvent.onset, AnnotationEvent.duration, AnnotationEvent.label).order_by(AnnotationEvent.id)
        ).all()
    assert [Event(*row) for row in stored] == VALID

    # Skipping does not hide the other problems, nor make a file of bad lines only acceptable.
    with session_scope() as session:
        user, film = session.get(User, movie["user"]), session.get(Movie, movie["id"])
        with pytest.raises(AnnotationError, match="already"):
            add_annotation_set(session, user, film, "Mixed", MIXED, "mixed.tsv", skip_bad_lines=True)
        with pytest.raises(AnnotationError, match="No line of the file") as only_bad:
            add_annotation_set(session, user, film, "Bad", HEADER + "1\t-1\ts\n", "bad.tsv", skip_bad_lines=True)
        assert only_bad.value.n_valid == 0
    assert _counts() == (1, 4)


def test_the_command_line_lists_the_bad_lines_and_skips_them_on_request(curator, data_dir, tmp_path):
    movie = _movie()
    path = tmp_path / "mixed.tsv"
    path.write_text(MIXED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env["INCDB_DATA_DIR"] = str(data_dir)

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pipeline", "annotations", "import", "Bad Lines Movie", str(path), *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    refused = cli("--name", "Mixed")
    assert refused.returncode == 1
    for fragment in ("line 3:", "line 5:", "line 8:", "--skip-bad-lines"):
        assert fragment in refused.stderr, refused.stderr
    assert _counts() == (0, 0)

    done = cli("--name", "Mixed", "--skip-bad-lines")
    assert done.returncode == 0, done.stderr
    assert "skipped 3 bad line(s) of mixed.tsv" in done.stdout
    assert "line 5: the onset must be a number" in done.stdout and "4 events" in done.stdout
    assert _counts() == (1, 4)
    assert movie["slug"]


def _add_callback(client: Client) -> str:
    return next(
        d["output"]
        for d in client._deps
        if any(i["id"] == "annot-submit" for i in d["inputs"]) and "annot-sets" in d["output"]
    )


def test_the_upload_panel_lists_the_bad_lines_and_offers_the_valid_ones(web, curator):
    movie = _movie()
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", CURATOR_PASSWORD)
    client.open_page(f"/movies/{movie['slug']}/annotations")
    values = {
        "annot-movie.data": movie["slug"],
        "annot-name.value": "Mixed",
        "annot-file.contents": "data:text/tab-separated-values;base64," + base64.b64encode(MIXED.encode()).decode(),
        "annot-file.filename": "mixed.tsv",
        "annotjob-nonce.data": "n1",
        "annot-submit.n_clicks": 1,
    }
    out = client.callback(_add_callback(client), values, ["annot-submit.n_clicks"])
    shown = str(out["annot-message"]["children"])
    for fragment in (
        "3 lines of the events file cannot be read",
        "line 3:",
        "line 5:",
        "line 8:",
        "4 events are valid",
    ):
        assert fragment in shown, shown
    assert out["annot-skip"]["style"] == {} and "Import the 4 valid events" in out["annot-skip"]["children"]
    assert _counts() == (0, 0)

    values["annot-skip.n_clicks"] = 1
    out = client.callback(_add_callback(client), values, ["annot-skip.n_clicks"])
    shown = str(out["annot-message"]["children"])
    assert "Added “Mixed” with 4 events" in shown and "Skipped 3 bad line(s) of mixed.tsv" in shown, shown
    assert "line 8: the trial_type is missing" in shown
    assert out["annot-skip"]["style"] == {"display": "none"}
    assert _counts() == (1, 4)


def test_the_events_reader_imports_no_private_helpers():
    tree = ast.parse((ROOT / "pipeline" / "temporal" / "events.py").read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline.")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []
