"""Accounts: registration, sign-in with throttling, sessions and CSRF, profile and password changes, reset links,
mail, roles, and the CLI's first admin. Pipeline functions directly, the web side through Dash's HTTP protocol on
Flask's test client."""

from __future__ import annotations

import contextlib
import json
import logging
import re

import pytest
from sqlalchemy import select

from accounts import mail, reset, throttle, users
from accounts.users import AccountError, create_user
from store.config import reset_settings
from store.db import session_scope
from store.models import User
from tests.conftest import CURATOR_PASSWORD
from tests.services import Client

PASSWORD = CURATOR_PASSWORD


def _register(client: Client, **overrides) -> dict | None:
    values = {
        "register-form.n_submit": 1,
        "register-email.value": "new@example.org",
        "register-title.value": "Dr.",
        "register-first-name.value": "Nia",
        "register-last-name.value": "New",
        "register-affiliation.value": "Lab",
        "register-password.value": PASSWORD,
        "register-password2.value": PASSWORD,
    }
    values.update(overrides)
    client.open_page("/account/register")
    return client.callback(
        "..register-message.children...register-form.className..", values, ["register-form.n_submit"]
    )


def confirm_link(log_text: str) -> str:
    """The token of the last confirmation link in the mail log."""
    found = re.findall(r"/account/confirm-email\?token=(\S+)", log_text)
    assert found, log_text
    return found[-1]


def confirm(client: Client, token: str) -> dict | None:
    client.open_page(f"/account/confirm-email?token={token}")
    return client.callback(
        "..confirm-message.children...confirm-go.href..",
        {"confirm-submit.n_clicks": 1, "confirm-token.data": token},
        ["confirm-submit.n_clicks"],
    )


def test_register_mails_a_link_that_signs_in_and_shows_the_name_in_the_navbar(web, caplog):
    client = Client(flask_app=web.server)
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        out = _register(client)
    assert "Check your mail" in json.dumps(out) and client.cookie("session") is None
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == "new@example.org"))
        assert (user.role, user.title, user.affiliation, user.active) == ("curator", "Dr.", "Lab", True)
        assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash
        assert not user.email_confirmed
        with pytest.raises(AccountError, match="Confirm your email address first"):
            users.authenticate(session, "new@example.org", PASSWORD, "10.0.0.1")
    out = confirm(client, confirm_link(caplog.text))
    assert out["confirm-go"]["href"] == "/contribute"
    nav = client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"])
    assert "Nia New" in json.dumps(nav) and "Sign out" in json.dumps(nav)


def test_registration_messages(web, curator):
    client = Client(flask_app=web.server)
    out = json.dumps(
        _register(
            client,
            **{
                "register-email.value": "not-an-email",
                "register-first-name.value": "",
                "register-password2.value": "something else",
            },
        )
    )
    assert "valid email" in out and "first name" in out and "passwords differ" in out
    out = json.dumps(_register(client, **{"register-password.value": "short", "register-password2.value": "short"}))
    assert "at least 10 characters" in out
    assert client.cookie("session") is None  # nothing signed in


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it(web, curator):
    client = Client(flask_app=web.server)
    out = client.sign_in("Cora@Example.org ", PASSWORD)
    assert out["signin-go"]["href"] == "/contribute"
    cookie = client._flask.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert client.cookie("_csrf_token")
    assert "Cora Curator" in json.dumps(
        client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"])
    )
    client.open_page("/account/sign-out")
    client.callback(
        "..signout-go.href...signout-message.children..", {"signout-submit.n_clicks": 1}, ["signout-submit.n_clicks"]
    )
    nav = json.dumps(client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"]))
    assert "Sign in" in nav and "Cora" not in nav


def test_open_redirects_are_refused(web, curator):
    from web.auth import safe_next

    assert safe_next("/contribute/x?y=1") == "/contribute/x?y=1"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "", None):
        assert safe_next(bad) == "/contribute"
    client = Client(flask_app=web.server)
    client.open_page("/account/sign-in")
    out = client.callback(
        "..signin-message.children...signin-go.href..",
        {
            "signin-email.value": "cora@example.org",
            "signin-password.value": PASSWORD,
            "signin-next.data": "https://evil.example",
            "signin-form.n_submit": 1,
        },
        ["signin-form.n_submit"],
    )
    assert out["signin-go"]["href"] == "/contribute"


def test_signed_in_posts_need_the_csrf_header(web, curator):
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", PASSWORD)
    body = client._body("nav-account.children", {"url.pathname": "/"}, ["url.pathname"])
    refused = client.post("/_dash-update-component", json_body=body, csrf=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    forged = client.post("/_dash-update-component", json_body=body, csrf=False, headers={"X-CSRFToken": "x" * 43})
    assert forged.status_code == 403
    assert client.post("/_dash-update-component", json_body=body).status_code == 200
    anonymous = Client(flask_app=web.server)  # anonymous callbacks carry no privilege and need no token
    assert anonymous.post("/_dash-update-component", json_body=body, csrf=False).status_code == 200


def test_wrong_passwords_are_throttled_per_account_and_address(data_dir, curator):
    with session_scope() as session:
        for _ in range(users.LOGIN_PER_ACCOUNT_AND_ADDRESS.attempts):
            with pytest.raises(AccountError, match="Wrong email address or password"):
                users.authenticate(session, "cora@example.org", "wrong password!", "10.0.0.1")
        with pytest.raises(AccountError, match="Too many failed sign-in attempts"):
            users.authenticate(session, "cora@example.org", PASSWORD, "10.0.0.1")  # even the right one
        assert users.authenticate(session, "cora@example.org", PASSWORD, "10.0.0.2").email == "cora@example.org"
        # unknown accounts fail the same way and count too
        with pytest.raises(AccountError, match="Wrong email address or password"):
            users.authenticate(session, "nobody@example.org", PASSWORD, "10.0.0.3")


def test_a_success_clears_the_failures(data_dir, curator):
    with session_scope() as session:
        for _ in range(users.LOGIN_PER_ACCOUNT_AND_ADDRESS.attempts - 1):
            with pytest.raises(AccountError):
                users.authenticate(session, "cora@example.org", "wrong password!", "10.0.0.9")
        users.authenticate(session, "cora@example.org", PASSWORD, "10.0.0.9")
        for _ in range(users.LOGIN_PER_ACCOUNT_AND_ADDRESS.attempts - 1):
            with pytest.raises(AccountError, match="Wrong"):
                users.authenticate(session, "cora@example.org", "wrong password!", "10.0.0.9")


def test_throttle_is_shared_between_processes(data_dir, curator):
    """gunicorn runs several workers: a failure counted in one process must count in another."""
    import multiprocessing

    def fail_once():
        from store.config import reset_settings
        from store.db import dispose_engine

        reset_settings()
        dispose_engine()
        with session_scope() as session, contextlib.suppress(AccountError):
            users.authenticate(session, "cora@example.org", "wrong password!", "10.1.1.1")

    ctx = multiprocessing.get_context("fork")
    for _ in range(users.LOGIN_PER_ACCOUNT_AND_ADDRESS.attempts):
        p = ctx.Process(target=fail_once)
        p.start()
        p.join(30)
    assert throttle.throttled_for(users.LOGIN_PER_ACCOUNT_AND_ADDRESS, "cora@example.org", "10.1.1.1") > 0


def test_deactivated_accounts_cannot_sign_in_and_lose_their_session(web, curator):
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", PASSWORD)
    with session_scope() as session:
        session.get(User, curator).active = False
    nav = json.dumps(
        client.callback(
            "nav-account.children",
            {"url.pathname": "/"},
            ["url.pathname"],
        )
    )
    assert "Sign in" in nav
    with session_scope() as session, pytest.raises(AccountError, match="deactivated"):
        users.authenticate(session, "cora@example.org", PASSWORD, "10.0.0.5")


def test_profile_and_password_change(web, curator):
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", PASSWORD)
    client.open_page("/account/profile")
    out = client.callback(
        "profile-message.children",
        {
            "profile-form.n_submit": 1,
            "profile-title.value": "Prof.",
            "profile-first-name.value": "C",
            "profile-last-name.value": "Curie",
            "profile-affiliation.value": "Sorbonne",
        },
        ["profile-form.n_submit"],
    )
    assert "saved" in json.dumps(out)
    out = client.callback(
        "profile-message.children",
        {"profile-form.n_submit": 2, "profile-first-name.value": "", "profile-last-name.value": "X"},
        ["profile-form.n_submit"],
    )
    assert "first name" in json.dumps(out)
    with session_scope() as session:
        u = session.get(User, curator)
        assert (u.title, u.first_name, u.last_name, u.affiliation) == ("Prof.", "C", "Curie", "Sorbonne")
    client.open_page("/account/password")
    change = "..password-message.children...password-form.className.."
    out = client.callback(
        change,
        {
            "password-form.n_submit": 1,
            "password-current.value": "wrong one!!",
            "password-new.value": "a new password",
            "password-new2.value": "a new password",
        },
        ["password-form.n_submit"],
    )
    assert "current password is wrong" in json.dumps(out)
    out = client.callback(
        change,
        {
            "password-form.n_submit": 2,
            "password-current.value": PASSWORD,
            "password-new.value": "a new password",
            "password-new2.value": "a new password",
        },
        ["password-form.n_submit"],
    )
    assert "Password changed" in json.dumps(out)
    with session_scope() as session:
        assert users.authenticate(session, "cora@example.org", "a new password", "10.0.0.7")


def test_reset_link_is_logged_without_smtp_works_once_and_expires(web, curator, caplog):
    client = Client(flask_app=web.server)
    client.open_page("/account/forgot-password")
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        out = client.callback(
            "..forgot-message.children...forgot-form.className..",
            {"forgot-form.n_submit": 1, "forgot-email.value": "cora@example.org"},
            ["forgot-form.n_submit"],
        )
    assert "If an account exists" in json.dumps(out)
    link = re.search(r"http://127\.0\.0\.1:8050/account/reset-password\?token=(\S+)", caplog.text)
    assert link, caplog.text
    token = link.group(1)
    # an unknown address gets the same answer and no mail
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="incdb.accounts"):
        out = client.callback(
            "..forgot-message.children...forgot-form.className..",
            {"forgot-form.n_submit": 2, "forgot-email.value": "nobody@example.org"},
            ["forgot-form.n_submit"],
        )
    assert "If an account exists" in json.dumps(out) and "reset-password" not in caplog.text

    assert "Choose a new password" in client.page_layout("/account/reset-password", f"?token={token}")
    client.open_page(f"/account/reset-password?token={token}")
    out = client.callback(
        "..reset-message.children...reset-go.href..",
        {
            "reset-form.n_submit": 1,
            "reset-token.data": token,
            "reset-password.value": "brand new password",
            "reset-password2.value": "brand new password",
        },
        ["reset-form.n_submit"],
    )
    assert out["reset-go"]["href"] == "/contribute"
    assert "Cora" in json.dumps(client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"]))
    # used once: the password changed, so the link no longer works
    assert "invalid or was used already" in client.page_layout("/account/reset-password", f"?token={token}")
    with session_scope() as session:
        user = session.get(User, curator)
        fresh = reset.make_reset_token(user)
        with pytest.raises(AccountError, match="expired"):
            reset.user_for_reset_token(session, fresh, max_age_s=-1)
        with pytest.raises(AccountError, match="invalid"):
            reset.user_for_reset_token(session, fresh[:-3] + "abc")


def test_reset_requests_are_throttled(data_dir, curator):
    with session_scope() as session:
        for _ in range(reset.RESET_PER_ACCOUNT_AND_ADDRESS.attempts):
            reset.request_password_reset(session, "cora@example.org", "10.0.0.1")
        with pytest.raises(AccountError, match="Too many password reset requests"):
            reset.request_password_reset(session, "cora@example.org", "10.0.0.1")


def test_reset_mail_goes_through_smtp_when_configured(data_dir, curator, monkeypatch):
    sent = []

    class FakeSMTP:
        def __init__(self, host, port, timeout=None):
            sent.append(("connect", host, port))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def starttls(self, context=None):
            sent.append(("starttls",))

        def login(self, user, password):
            sent.append(("login", user, password))

        def send_message(self, message):
            sent.append(("message", message["To"], message["Subject"], message.get_content()))

    monkeypatch.setattr(mail.smtplib, "SMTP", FakeSMTP)
    monkeypatch.setenv("INCDB_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("INCDB_SMTP_USER", "mailer")
    monkeypatch.setenv("INCDB_SMTP_PASSWORD", "secret")
    monkeypatch.setenv("INCDB_BASE_URL", "https://incdb.example.org")
    reset_settings()
    with session_scope() as session:
        reset.request_password_reset(session, "cora@example.org", "10.0.0.1")
    assert sent[0] == ("connect", "smtp.example.org", 587) and ("starttls",) in sent
    assert ("login", "mailer", "secret") in sent
    message = sent[-1]
    assert message[1] == "cora@example.org"
    assert "https://incdb.example.org/account/reset-password?token=" in message[3]
    assert "forged-host" not in message[3]


def test_roles_and_activation_by_admins_only(data_dir, curator):
    with session_scope() as session:
        admin = create_user(session, "admin@example.org", PASSWORD, role="admin")
        cora = session.get(User, curator)
        with pytest.raises(AccountError, match="Only administrators"):
            users.set_role(session, cora, admin.id, "curator")
        users.set_role(session, admin, cora.id, "admin")
        assert cora.role == "admin"
        with pytest.raises(AccountError, match="own administrator role"):
            users.set_role(session, admin, admin.id, "curator")
        with pytest.raises(AccountError, match="your own account"):
            users.set_user_active(session, admin, admin.id, False)
        users.set_user_active(session, admin, cora.id, False)
        assert not cora.active


def test_first_admin_from_the_command_line_can_sign_in(web, monkeypatch):
    from pipeline.__main__ import main

    monkeypatch.setenv("INCDB_PASSWORD", "admin password 1")
    assert main(["user", "create", "root@example.org", "--admin", "--first-name", "Ada"]) == 0
    client = Client(flask_app=web.server)
    client.sign_in("root@example.org", "admin password 1")
    nav = json.dumps(client.callback("nav-account.children", {"url.pathname": "/"}, ["url.pathname"]))
    assert "Administration" in nav
    assert "admin-users" in client.page_layout("/admin")


def test_client_address_behind_a_trusted_proxy(tmp_path):
    """With INCDB_TRUSTED_PROXIES=1 (nginx in front) the throttle sees the client, not the proxy."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "from app import server\n"
        "from web.auth import client_address\n"
        "@server.get('/_whoami')\n"
        "def whoami():\n"
        "    return client_address()\n"
        "c = server.test_client()\n"
        "print(c.get('/_whoami', headers={'X-Forwarded-For': '203.0.113.7'},"
        " environ_base={'REMOTE_ADDR': '127.0.0.1'}).get_data(as_text=True))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("INCDB_")}
    out = {}
    for proxies in ("0", "1"):
        env.update(INCDB_DATA_DIR=str(tmp_path / "d"), INCDB_TRUSTED_PROXIES=proxies, INCDB_DEMO="0")
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-2000:]
        out[proxies] = run.stdout.strip().splitlines()[-1]
    assert out == {"0": "127.0.0.1", "1": "203.0.113.7"}
