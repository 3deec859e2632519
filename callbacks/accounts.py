"""Account callbacks: sign in/out, register, profile, password change and reset.

They are normal (not background) Dash callbacks, so they run inside the web request and can set the session with
``flask_login.login_user``; the page then reloads (``dcc.Location(refresh=True)``) so that everything on it is
rendered for the signed-in user.
"""
from __future__ import annotations

import dash
from dash import Input, Output, State, no_update

from accounts.reset import request_password_reset, reset_password
from accounts.users import AccountError, authenticate, change_password, confirm_email, register, update_profile
from callbacks.common import alert, safe_next, user
from store.db import session_scope
from store.models import User
from web.auth import client_address, sign_in, sign_out, sign_out_elsewhere


@dash.callback(
    Output("signin-message", "children"), Output("signin-go", "href"),
    Input("signin-form", "n_submit"),
    State("signin-email", "value"), State("signin-password", "value"), State("signin-next", "data"),
    prevent_initial_call=True,
)
def _sign_in(_n, email, password, nxt):
    with session_scope() as session:
        try:
            account = authenticate(session, _text(email), _text(password), client_address())
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.expunge(account)
    sign_in(account)
    return alert("Signed in.", "success"), safe_next(nxt)


@dash.callback(
    Output("register-message", "children"), Output("register-form", "className"),
    Input("register-form", "n_submit"),
    State("register-email", "value"), State("register-title", "value"), State("register-first-name", "value"),
    State("register-last-name", "value"), State("register-affiliation", "value"),
    State("register-password", "value"), State("register-password2", "value"),
    prevent_initial_call=True,
)
def _register(_n, email, title, first, last, affiliation, password, repeat):
    if user() is not None:
        return alert("You are signed in already. Sign out to register another account.", "warning"), no_update
    with session_scope() as session:
        try:
            sent_to = register(session, _text(email), _text(password), _text(repeat), address=client_address(),
                               title=_text(title), first_name=_text(first), last_name=_text(last),
                               affiliation=_text(affiliation))
        except AccountError as exc:
            return alert(exc.messages), no_update
    # The same answer whether or not the address had an account: the form does not tell who is registered.
    return alert([f"Check your mail: we sent a message to {sent_to}. Open the link in it within 48 hours to "
                  "finish your registration. (In the embedded mode, without mail, it is written to the server's "
                  "log.)"], "info"), "d-none"


@dash.callback(
    Output("confirm-message", "children"), Output("confirm-go", "href"),
    Input("confirm-submit", "n_clicks"), State("confirm-token", "data"),
    prevent_initial_call=True,
)
def _confirm(_n, token):
    # A button, not the page load: mail scanners that open links must not finish anybody's registration.
    with session_scope() as session:
        try:
            account = confirm_email(session, _text(token))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Welcome to INcDb. Your account is ready.", "success"), "/contribute"


@dash.callback(
    Output("signout-go", "href"), Output("signout-message", "children"),
    Input("signout-submit", "n_clicks"),
    prevent_initial_call=True,
)
def _sign_out(_n):
    # A click on the page's button: a Dash callback is a POST carrying the CSRF header, which a cross-site page
    # cannot send, so a link or redirect to /account/sign-out signs nobody out.
    if user() is None:
        return "/", "You are signed out."
    sign_out()
    return "/", "Signed out."


@dash.callback(
    Output("signout-everywhere-message", "children"),
    Input("signout-everywhere", "n_clicks"),
    prevent_initial_call=True,
)
def _sign_out_elsewhere(_n):
    if user() is None:
        return alert("Your session has ended; sign in again.")
    sign_out_elsewhere()
    return alert("Every other session of your account is signed out. This one stays signed in.", "success",
                 duration=6000)


def _text(value) -> str:
    """A form value as text: forged callback bodies may send numbers, lists or objects."""
    return value if isinstance(value, str) else ""


@dash.callback(
    Output("profile-message", "children"),
    Input("profile-form", "n_submit"),
    State("profile-title", "value"), State("profile-first-name", "value"), State("profile-last-name", "value"),
    State("profile-affiliation", "value"),
    prevent_initial_call=True,
)
def _save_profile(_n, title, first, last, affiliation):
    u = user()
    if u is None:
        return alert("Your session has ended; sign in again.")
    with session_scope() as session:
        try:
            update_profile(session, u.id, title=_text(title), first_name=_text(first), last_name=_text(last),
                           affiliation=_text(affiliation))
        except AccountError as exc:
            return alert(exc.messages)
    return alert("Profile saved.", "success", duration=4000)


@dash.callback(
    Output("password-message", "children"), Output("password-form", "className"),
    Input("password-form", "n_submit"),
    State("password-current", "value"), State("password-new", "value"), State("password-new2", "value"),
    prevent_initial_call=True,
)
def _change_password(_n, current, new, repeat):
    u = user()
    if u is None:
        return alert("Your session has ended; sign in again."), no_update
    with session_scope() as session:
        try:
            change_password(session, u.id, _text(current), _text(new), _text(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        account = session.get(User, u.id)
        session.expunge(account)
    sign_in(account)  # the change ended every session; this one goes on with the new session version
    return alert("Password changed. Your other sessions are signed out.", "success"), "d-none"


@dash.callback(
    Output("forgot-message", "children"), Output("forgot-form", "className"),
    Input("forgot-form", "n_submit"),
    State("forgot-email", "value"),
    prevent_initial_call=True,
)
def _forgot(_n, email):
    with session_scope() as session:
        try:
            request_password_reset(session, _text(email), client_address())
        except AccountError as exc:
            return alert(exc.messages), no_update
    return alert("If an account exists for this address, a link to reset its password is on its way. It works "
                 "for one hour. (In the embedded mode, without mail, the link is written to the server's log.)",
                 "info"), "d-none"


@dash.callback(
    Output("reset-message", "children"), Output("reset-go", "href"),
    Input("reset-form", "n_submit"),
    State("reset-token", "data"), State("reset-password", "value"), State("reset-password2", "value"),
    prevent_initial_call=True,
)
def _reset(_n, token, new, repeat):
    with session_scope() as session:
        try:
            account = reset_password(session, _text(token), _text(new), _text(repeat))
        except AccountError as exc:
            return alert(exc.messages), no_update
        session.flush()
        session.expunge(account)
    sign_in(account)
    return alert("Your password is changed and you are signed in.", "success"), "/contribute"
