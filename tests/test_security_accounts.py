"""Regression tests for the account-side attacks: poisoned reset links, open redirects, sessions that outlive
sign-out, the registration form as an account oracle (by its text or its timing), a second registration taking
over a pending one, a stranger blocking someone's reset, reset mails flooding one mailbox, weak passwords and
hostile email addresses, non-Latin movie titles merging into one movie, text that PostgreSQL refuses, and the
per-curator collection limit. The browser-visible ones (redirect, sign-out) are in test_security_browser.py."""

from __future__ import annotations

import json
import logging
import re
import statistics
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from accounts import reset, users
from accounts.users import AccountError, create_user, normalise_email
from pipeline.curation.catalog import QuotaExceeded, create_collection, get_or_create_movie
from store.config import reset_settings
from store.db import session_scope, upgrade_database
from store.models import Movie, User
from tests.conftest import use_environment
from tests.services import Client
from tests.test_accounts import PASSWORD, _register, confirm, confirm_link

FORGOT = "..forgot-message.children...forgot-form.className.."


def _forgot(client: Client, email: str, headers: dict[str, str] | None = None):
    client.open_page("/account/forgot-password")
    body = client._body(FORGOT, {"forgot-form.n_submit": 1, "forgot-email.value": email}, ["forgot-form.n_submit"])
    return client.post(client._url(), json_body=body, headers=headers)


# --- 1. reset links come from the configuration only ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}]
)
def test_reset_link_ignores_forged_host_headers(web, curator, caplog, monkeypatch, headers):
    monkeypatch.setenv("INCDB_BASE_URL", "https://incdb.example.org/")
    reset_settings()
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        response = _forgot(Client(flask_app=web.server), "cora@example.org", headers)
    assert response.status_code == 200
    assert "https://incdb.example.org/account/reset-password?token=" in caplog.text
    assert "evil.example" not in caplog.text


def test_reset_link_in_development_uses_host_and_port(web, curator, caplog, monkeypatch):
    monkeypatch.delenv("INCDB_BASE_URL", raising=False)
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "8123")
    reset_settings()
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        _forgot(Client(flask_app=web.server), "cora@example.org", {"Host": "evil.example:8123"})
    assert "http://127.0.0.1:8123/account/reset-password?token=" in caplog.text
    assert "evil.example" not in caplog.text


def test_proxy_fix_does_not_take_the_forwarded_host():
    import app as app_module

    source = Path(app_module.__file__).read_text()
    assert "x_host=0" in source and "x_host=_proxies" not in source


# --- 2. open redirects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t\\evil.example/phish",
        "/\r\\evil.example",
        "/\n\\evil.example",
        "\t/\\evil.example",
        " //evil.example",
        "/\\/evil.example",
        "\x00//evil.example",
        "/\t/evil.example",
        "\\\\evil.example",
        "https:/\\evil.example",
    ],
)
def test_next_parameters_a_browser_reads_as_another_site_are_refused(target):
    from web.auth import safe_next

    assert safe_next(target) == "/contribute"


def test_next_parameters_on_this_site_survive_normalisation():
    from web.auth import safe_next

    assert safe_next("/movies/\tstalker") == "/movies/stalker"
    assert safe_next("/terms?sort=name&order=desc#x") == "/terms?sort=name&order=desc#x"


# --- 3. revocable sessions -------------------------------------------------------------------------------------


def _copy_of(client: Client, web) -> Client:
    thief = Client(flask_app=web.server)
    for name in ("session", "_csrf_token"):
        thief._flask.set_cookie(name, client.cookie(name))
    thief.open_page("/")
    return thief


def _signed_in_as(client: Client) -> str:
    return json.dumps(client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"]))


def test_a_copied_cookie_stops_working_after_sign_out(web, curator):
    owner = Client(flask_app=web.server)
    owner.sign_in("cora@example.org", PASSWORD)
    thief = _copy_of(owner, web)
    assert "Cora Curator" in _signed_in_as(thief)
    owner.open_page("/account/sign-out")
    owner.callback(
        "..signout-go.href...signout-message.children..", {"signout-submit.n_clicks": 1}, ["signout-submit.n_clicks"]
    )
    assert "Cora" not in _signed_in_as(thief)
    assert "Sign in with your curator account" in thief.page_layout("/contribute")


def test_password_change_ends_other_sessions_but_keeps_this_one(web, curator):
    owner = Client(flask_app=web.server)
    owner.sign_in("cora@example.org", PASSWORD)
    thief = _copy_of(owner, web)
    owner.open_page("/account/password")
    out = owner.callback(
        "..password-message.children...password-form.className..",
        {
            "password-form.n_submit": 1,
            "password-current.value": PASSWORD,
            "password-new.value": "a fresh passphrase",
            "password-new2.value": "a fresh passphrase",
        },
        ["password-form.n_submit"],
    )
    assert "Password changed" in json.dumps(out)
    assert "Cora Curator" in _signed_in_as(owner)
    assert "Cora" not in _signed_in_as(thief)


def test_password_reset_ends_every_session(web, curator, caplog):
    owner = Client(flask_app=web.server)
    owner.sign_in("cora@example.org", PASSWORD)
    thief = _copy_of(owner, web)
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        _forgot(Client(flask_app=web.server), "cora@example.org")
    token = re.search(r"reset-password\?token=(\S+)", caplog.text).group(1)
    with session_scope() as session:
        reset.reset_password(session, token, "a fresh passphrase", "a fresh passphrase")
    assert "Cora" not in _signed_in_as(thief) and "Cora" not in _signed_in_as(owner)


def test_sign_out_everywhere_else_from_the_profile(web, curator):
    owner = Client(flask_app=web.server)
    owner.sign_in("cora@example.org", PASSWORD)
    thief = _copy_of(owner, web)
    assert "signout-everywhere" in owner.page_layout("/account/profile")
    out = owner.callback(
        "signout-everywhere-message.children", {"signout-everywhere.n_clicks": 1}, ["signout-everywhere.n_clicks"]
    )
    assert "Every other session" in json.dumps(out)
    assert "Cora Curator" in _signed_in_as(owner)
    assert "Cora" not in _signed_in_as(thief)
    # the fresh session has a fresh CSRF token, and it works
    assert owner.cookie("_csrf_token") != thief.cookie("_csrf_token")
    assert "Profile saved" in json.dumps(
        owner.callback(
            "profile-message.children",
            {"profile-form.n_submit": 1, "profile-first-name.value": "Cora", "profile-last-name.value": "Curator"},
            ["profile-form.n_submit"],
        )
    )


def test_deactivation_ends_sessions_for_good(web, curator):
    owner = Client(flask_app=web.server)
    owner.sign_in("cora@example.org", PASSWORD)
    with session_scope() as session:
        admin = create_user(session, "root@example.org", PASSWORD, role="admin")
        users.set_user_active(session, admin, curator, False)
        users.set_user_active(session, admin, curator, True)  # reactivated: the old cookie stays dead
    assert "Cora" not in _signed_in_as(owner)


# --- 7. registration is no account oracle ----------------------------------------------------------------------


def test_registration_answers_the_same_for_known_and_new_addresses(web, curator, caplog):
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        known = _register(Client(flask_app=web.server), **{"register-email.value": "CORA@example.org"})
        new = _register(Client(flask_app=web.server), **{"register-email.value": "fresh@example.org"})
    strip = re.compile(r"(cora|fresh)@example\.org")
    assert strip.sub("X", json.dumps(known)) == strip.sub("X", json.dumps(new))
    assert "Check your mail" in json.dumps(known) and "exists" not in json.dumps(known)
    # the owner of the known address is told by mail, and nothing about the account changed
    assert "you have an account already" in caplog.text
    with session_scope() as session:
        cora = session.get(User, curator)
        assert (cora.first_name, cora.email_confirmed) == ("Cora", True)
        assert users.authenticate(session, "cora@example.org", PASSWORD, "10.0.0.1")


@pytest.mark.parametrize(
    ("env", "smtp_host", "mentioned"),
    [("development", "", True), ("production", "", False), ("development", "smtp.example.org", False)],
)
def test_the_server_log_is_mentioned_only_in_the_embedded_mode_without_mail(
    web, curator, monkeypatch, env, smtp_host, mentioned
):
    monkeypatch.setenv("INCDB_ENV", env)
    monkeypatch.setenv("INCDB_SECRET_KEY", "a test secret key of enough length for production")
    monkeypatch.setenv("INCDB_BASE_URL", "https://incdb.example.org")
    monkeypatch.setenv("INCDB_SMTP_HOST", smtp_host)
    reset_settings()
    sent = []
    monkeypatch.setattr(users, "send_mail", lambda *args: sent.append(args))
    monkeypatch.setattr(reset, "send_mail", lambda *args: sent.append(args))
    registered = json.dumps(_register(Client(flask_app=web.server)))
    forgot = _forgot(Client(flask_app=web.server), "cora@example.org").text
    assert "Check your mail" in registered and "a link to reset its password is on its way" in forgot
    assert ("server's log" in registered) is mentioned and ("server's log" in forgot) is mentioned
    assert len(sent) == 2


def test_registration_is_throttled_per_address(web):
    for n in range(users.REGISTER_PER_ADDRESS.attempts):
        with session_scope() as session:
            users.register(
                session,
                f"probe{n}@example.org",
                PASSWORD,
                PASSWORD,
                address="198.51.100.9",
                first_name="P",
                last_name="Robe",
            )
    with session_scope() as session, pytest.raises(AccountError, match="Too many registrations"):
        users.register(
            session, "cora@example.org", PASSWORD, PASSWORD, address="198.51.100.9", first_name="P", last_name="Robe"
        )


def _confirm_choosing(client: Client, token: str, password: str) -> dict | None:
    """Open a confirmation link and confirm it, typing ``password`` into the password fields (which only a
    pending registration that was registered more than once reads)."""
    client.open_page(f"/account/confirm-email?token={token}")
    return client.callback(
        "..confirm-message.children...confirm-go.href..",
        {
            "confirm-submit.n_clicks": 1,
            "confirm-token.data": token,
            "confirm-password.value": password,
            "confirm-password2.value": password,
        },
        ["confirm-submit.n_clicks"],
    )


def test_a_squatted_registration_is_taken_over_by_the_mailbox_owner(web, caplog):
    """Someone registers another person's address first: the owner registers again, the squatter's link stops
    working, and the owner's link (mailed to the owner) finishes the registration with a password chosen there."""
    client = Client(flask_app=web.server)
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        _register(
            client,
            **{
                "register-email.value": "victim@example.org",
                "register-password.value": "squatter password",
                "register-password2.value": "squatter password",
            },
        )
        squatter_token = confirm_link(caplog.text)
        caplog.clear()
        _register(client, **{"register-email.value": "victim@example.org"})
        owner_token = confirm_link(caplog.text)
    assert "invalid or was replaced" in json.dumps(confirm(Client(flask_app=web.server), squatter_token))
    owner = Client(flask_app=web.server)
    assert "Choose the password and sign in" in owner.page_layout("/account/confirm-email", f"?token={owner_token}")
    assert _confirm_choosing(owner, owner_token, PASSWORD)["confirm-go"]["href"] == "/contribute"
    with session_scope() as session:
        assert users.authenticate(session, "victim@example.org", PASSWORD, "10.0.0.1")
        with pytest.raises(AccountError):
            users.authenticate(session, "victim@example.org", "squatter password", "10.0.0.2")


def test_a_second_registration_cannot_set_the_password_of_a_pending_one(web, caplog):
    """The owner registers; an attacker registers the same address with their own password. Whichever link the
    owner opens, the account never gets the attacker's password: the newest link asks the owner to choose one."""
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        _register(Client(flask_app=web.server), **{"register-email.value": "victim@example.org"})
        caplog.clear()
        _register(
            Client(flask_app=web.server),
            **{
                "register-email.value": "victim@example.org",
                "register-password.value": "attacker passphrase",
                "register-password2.value": "attacker passphrase",
            },
        )
        newest = confirm_link(caplog.text)
        mail = caplog.text
    owner = Client(flask_app=web.server)
    out = confirm(owner, newest)  # one click, as the old link worked: not enough any more
    assert "at least 10 characters" in json.dumps(out) and out.get("confirm-go") is None
    assert owner.cookie("session") is None
    assert _confirm_choosing(owner, newest, "the owner's own choice")["confirm-go"]["href"] == "/contribute"
    with session_scope() as session:
        assert users.authenticate(session, "victim@example.org", "the owner's own choice", "10.0.0.1")
        with pytest.raises(AccountError, match="Wrong email address or password"):
            users.authenticate(session, "victim@example.org", "attacker passphrase", "10.0.0.2")
    assert "choose your password" in mail
    # used once, the link is dead: nobody sets the password a second time with it
    assert "invalid or was replaced" in json.dumps(
        _confirm_choosing(Client(flask_app=web.server), newest, "attacker passphrase")
    )


def test_registration_takes_as_long_for_known_pending_and_new_addresses(web, curator):
    """A known address used to answer in milliseconds and a new one after a scrypt hash. The median of seven
    registrations of each kind must be within a factor of two of the new addresses' (the one timed assertion
    of this suite, asked for by the finding; every branch hashes once, so the true ratio is near 1)."""

    def timed(email: str) -> float:
        started = time.perf_counter()
        with session_scope() as session:
            users.register(session, email, "a long passphrase", "a long passphrase", first_name="T", last_name="Ime")
        return time.perf_counter() - started

    timed("pending@example.org")
    timed("warm-up@example.org")
    new = statistics.median(timed(f"new{n}@example.org") for n in range(7))
    known = statistics.median(timed("cora@example.org") for _ in range(7))
    pending = statistics.median(timed("pending@example.org") for _ in range(7))
    assert 0.5 <= known / new <= 2, (known, new)
    assert 0.5 <= pending / new <= 2, (pending, new)


# --- 8. a stranger cannot block someone's reset ----------------------------------------------------------------


def test_reset_requests_from_another_address_do_not_block_the_owner(data_dir, curator, caplog):
    with session_scope() as session:
        for _ in range(reset.RESET_PER_ACCOUNT_AND_ADDRESS.attempts):
            reset.request_password_reset(session, "cora@example.org", "203.0.113.66")
        with pytest.raises(AccountError, match="Too many password reset requests"):
            reset.request_password_reset(session, "cora@example.org", "203.0.113.66")
        with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
            reset.request_password_reset(session, "cora@example.org", "192.0.2.10")
    assert "reset-password?token=" in caplog.text


def _mails_to_cora(caplog) -> int:
    return sum(
        "To: cora@example.org" in r.getMessage() and "reset your password" in r.getMessage() for r in caplog.records
    )


def test_reset_mails_to_one_account_are_capped_across_client_addresses(data_dir, curator, caplog):
    """30 requests from 30 client addresses: each is answered as usual, and five mails go out. The count lives in
    the shared throttle storage, so a fresh handle on it (as another web process has) sees the same count."""
    from accounts import throttle

    with caplog.at_level(logging.INFO, logger="incdb.accounts"), session_scope() as session:
        for n in range(15):
            reset.request_password_reset(session, "cora@example.org", f"203.0.113.{n}")
        throttle._caches.clear()  # what another process would open: the same directory, nothing in memory
        for n in range(15, 30):
            reset.request_password_reset(session, "cora@example.org", f"203.0.113.{n}")
    assert _mails_to_cora(caplog) == 5
    assert "not sent: 5 sent in the last hour already" in caplog.text


def test_the_reset_mail_cap_is_a_setting(data_dir, curator, caplog, monkeypatch):
    monkeypatch.setenv("INCDB_RESET_MAILS_PER_HOUR", "2")
    reset_settings()
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"), session_scope() as session:
        for n in range(4):
            reset.request_password_reset(session, "cora@example.org", f"198.51.100.{n}")
    assert _mails_to_cora(caplog) == 2


def test_one_address_is_limited_across_accounts(data_dir):
    with session_scope() as session:
        for n in range(reset.RESET_PER_ADDRESS.attempts):
            reset.request_password_reset(session, f"someone{n}@example.org", "203.0.113.77")
        with pytest.raises(AccountError, match="Too many password reset requests"):
            reset.request_password_reset(session, "another@example.org", "203.0.113.77")


# --- 12. email syntax and password policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "cora@example.org\r\nbcc: everyone@example.org",
        "a@b",
        "a@@example.org",
        "a b@example.org",
        "a@example..org",
        "a@-example.org",
        ".a@example.org",
        "a\x00@example.org",
        "a@example.org\x00",
        "x" * 300 + "@example.org",
        "@example.org",
        "a@",
        "a@1.2.3.4",
    ],
)
def test_malformed_email_addresses_are_refused(email):
    with pytest.raises(ValueError):
        normalise_email(email)


def test_well_formed_addresses_are_kept():
    assert normalise_email(" Ada.Lovelace+incdb@Example.ORG ") == "ada.lovelace+incdb@example.org"
    assert normalise_email("b@müller.de") == "b@xn--mller-kva.de"


def test_crlf_in_an_email_adds_no_mail_header(web, caplog):
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        out = _register(
            Client(flask_app=web.server), **{"register-email.value": "new@example.org\r\nbcc: everyone@example.org"}
        )
    assert "valid email" in json.dumps(out) and "bcc" not in caplog.text.lower()


@pytest.mark.parametrize(
    "password",
    [
        "1234567890",
        "Password123",
        "qwertyuiop",
        "aaaaaaaaaaaa",
        "ababababab",
        "abcdefghijkl",
        "9876543210",
        "  iloveyou123 ",
    ],
)
def test_guessable_passwords_are_refused(data_dir, password):
    with session_scope() as session, pytest.raises(AccountError, match="among the first that attackers try"):
        users.register(session, "new@example.org", password, password, first_name="N", last_name="W")


def test_a_password_equal_to_the_address_name_is_refused(data_dir):
    with session_scope() as session, pytest.raises(AccountError, match="must not be your email"):
        users.register(
            session, "marie.curie.lab@example.org", "marie.curie.lab", "marie.curie.lab", first_name="M", last_name="C"
        )


# --- 9. movie titles in every script ----------------------------------------------------------------------------


def test_titles_in_three_scripts_are_three_movies(demo_dir):
    titles = ["Сталкер", "千と千尋の神隠し", "Οδύσσεια του Διαστήματος"]
    with session_scope() as session:
        movies = [get_or_create_movie(session, t) for t in titles]
        assert len({m.id for m in movies}) == 3
        assert [m.slug for m in movies] == ["сталкер", "千と千尋の神隠し", "οδύσσεια-του-διαστήματος"]
        assert get_or_create_movie(session, "  СТАЛКЕР ").id == movies[0].id  # same title, other case
        assert get_or_create_movie(session, "Amélie").slug == "amelie"
        owner = session.scalar(select(User))
        for movie in movies:
            create_collection(session, owner, movie, f"Collection of {movie.title}")


def test_titles_without_letters_get_numbered_slugs(data_dir):
    with session_scope() as session:
        first, second = get_or_create_movie(session, "???"), get_or_create_movie(session, "!!!")
        assert first.id != second.id and {first.slug, second.slug} == {"untitled", "untitled-2"}
        assert get_or_create_movie(session, "???").id == first.id


def test_a_non_latin_movie_is_reachable_by_its_slug(demo_dir):
    from urllib.parse import quote

    import app as app_module

    with session_scope() as session:
        movie = get_or_create_movie(session, "Сталкер", 1979)
        owner = session.scalar(select(User).where(User.email.like("demo-curator%")))
        create_collection(session, owner, movie, "Stalker viewers")
    response = app_module.server.test_client().get("/api/movies/" + quote("сталкер"))
    assert response.status_code == 200 and response.get_json()["title"] == "Сталкер"


# --- 10. text PostgreSQL refuses gets a message, not a 500 -------------------------------------------------------


@pytest.fixture
def pg_web(tmp_path, postgres_url):
    from pipeline.decoding.reference import ensure_builtin_reference

    use_environment(tmp_path / "data", database_url=postgres_url)
    upgrade_database()
    with session_scope() as session:
        ensure_builtin_reference(session)
        create_user(session, "cora@example.org", PASSWORD, first_name="Cora", last_name="Curator")
    import app as app_module

    return app_module


@pytest.mark.parametrize("email", ["x" * 300 + "@example.org", "cora\x00@example.org"])
def test_hostile_emails_on_postgresql_get_messages(pg_web, email):
    client = Client(flask_app=pg_web.server)
    out = json.dumps(_register(client, **{"register-email.value": email}))
    assert "valid email" in out
    out = json.dumps(client.sign_in(email, PASSWORD))
    assert "Enter the email address of your account" in out
    response = _forgot(client, email)
    assert response.status_code == 200 and "Enter the email address" in response.text


def test_hostile_collection_fields_on_postgresql_get_messages(pg_web):
    from pipeline.curation.catalog import validate_collection_form

    _, errors = validate_collection_form(
        {"name": "Bad\x00name", "movie": "Film", "dataset_url": "https://example.org/" + "a" * 2000}
    )
    assert any("control characters" in e for e in errors) and any("at most 1000" in e for e in errors)
    _, errors = validate_collection_form({"name": ["a", "list"], "movie": {"a": 1}})
    assert "Give the collection a name." in errors and "Name the movie the participants watched." in errors
    client = Client(flask_app=pg_web.server)
    client.sign_in("cora@example.org", PASSWORD)
    client.open_page("/contribute/new")
    deps = [d for d in client._deps if d["output"].startswith("..new-message.children")]
    assert deps, "the new-collection form's callback"
    dep = deps[0]
    values = {
        "new-name.value": "Bad\x00name",
        "new-movie.value": "Film\x00",
        "new-form.n_submit": 1,
        "new-dataset-url.value": "https://example.org/" + "a" * 2000,
    }
    body = {
        "output": dep["output"],
        "outputs": client._outputs(dep["output"]),
        "inputs": [
            {"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
            for i in dep["inputs"]
        ],
        "state": [
            {"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
            if not str(i["id"]).startswith("{")
            else []
            for i in dep.get("state", [])
        ],
        "changedPropIds": ["new-form.n_submit"],
    }
    response = client.post(client._url(), json_body=body)
    assert response.status_code == 200, response.text[:500]
    assert "control characters" in response.text
    with session_scope() as session:
        assert session.scalar(select(Movie).where(Movie.title.like("Film%"))) is None


# --- 12. per-curator collection limit ----------------------------------------------------------------------------


def test_curators_have_a_collection_limit_and_admins_none(data_dir, monkeypatch):
    monkeypatch.setenv("INCDB_MAX_COLLECTIONS_PER_USER", "2")
    reset_settings()
    with session_scope() as session:
        cora = create_user(session, "cora2@example.org", PASSWORD)
        admin = create_user(session, "root2@example.org", PASSWORD, role="admin")
        movie = get_or_create_movie(session, "Limits")
        create_collection(session, cora, movie, "one")
        create_collection(session, cora, movie, "two")
        with pytest.raises(QuotaExceeded, match=r"You have 2 collections.*\(2\)"):
            create_collection(session, cora, movie, "three")
        for n in range(3):
            create_collection(session, admin, movie, f"admin {n}")
