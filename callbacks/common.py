"""Pieces the curator pages share: who is signed in, messages, prompts, safe redirects, the custom_data bridge."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import dash_bootstrap_components as dbc
import flask
from dash import hooks, html

from web.auth import signed_in_user


@hooks.custom_data("incdb")
def _identity(_ctx) -> dict[str, Any]:
    """Runs in the web request before every callback; its value reaches a background job (also on a Celery worker,
    which has no request and no ``current_user``) as ``callback_context.custom_data["incdb"]``. Only an id
    crosses: the job looks the user up and checks the permission again. The id comes from the signed session
    cookie; no database query for callbacks of anonymous visitors."""
    try:
        raw = flask.session.get("_user_id")
    except RuntimeError:  # no request (never expected here)
        return {"user_id": None}
    user = signed_in_user() if raw else None
    return {"user_id": user.id if user is not None else None}


def user():
    return signed_in_user()


def alert(messages: str | list[str] | None, color: str = "danger", **kwargs) -> Any:
    if not messages:
        return None
    if isinstance(messages, str):
        messages = [messages]
    body = messages[0] if len(messages) == 1 else html.Ul([html.Li(m) for m in messages], className="mb-0")
    return dbc.Alert(body, color=color, className="mt-3", **kwargs)


def safe_next(target: str | None, default: str = "/contribute") -> str:
    """``target`` when it is a path on this site, else ``default``.

    The value is read as a browser reads a URL: C0 control characters and spaces at the ends are dropped, tabs
    and newlines anywhere are dropped, and a backslash counts as a slash. So '/x' passes, while
    '//evil.example', 'https://evil.example', '/\\evil.example' and '/<tab>\\evil.example' do not."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return default
    cleaned = "".join(ch for ch in target.strip("".join(map(chr, range(33)))) if ch not in "\t\n\r")
    cleaned = cleaned.replace("\\", "/")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        return default
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not cleaned.startswith("/") or cleaned.startswith("//"):
        return default
    if cleaned.startswith("/account/sign-"):
        return default
    return cleaned


def sign_in_prompt(path: str, what: str = "this page") -> dbc.Card:
    nxt = quote(path or "/contribute", safe="/")
    return dbc.Card(dbc.CardBody([
        html.H1("Sign in", className="h4"),
        html.P(f"Sign in with your curator account to see {what}."),
        dbc.Button("Sign in", href=f"/account/sign-in?next={nxt}", color="primary", className="me-2",
                   external_link=True),
        dbc.Button("Register", href="/account/register", color="secondary", outline=True, external_link=True),
    ]), className="mx-auto", style={"maxWidth": "560px"})


def not_found(what: str = "page") -> html.Div:
    return html.Div([html.H1(f"No such {what}", className="h3"),
                     html.P(f"This {what} does not exist, or you may not see it."),
                     dbc.Button("My collections", href="/contribute", color="primary", outline=True)])


def form_row(label: str, control, help_text: str | None = None, width: int = 12) -> dbc.Col:
    parts = [dbc.Label(label, html_for=getattr(control, "id", None) if isinstance(getattr(control, "id", None),
                                                                                      str) else None), control]
    if help_text:
        parts.append(dbc.FormText(help_text))
    return dbc.Col(html.Div(parts, className="mb-3"), md=width)


STATUS_COLORS = {"empty": "secondary", "processing": "info", "ready": "success", "failed": "danger",
                 "queued": "secondary", "running": "info", "succeeded": "success", "cancelled": "warning"}


def badge(status: str) -> dbc.Badge:
    return dbc.Badge(status, color=STATUS_COLORS.get(status, "secondary"), className="text-uppercase")
