"""Pieces the curator pages share: who is signed in, messages, prompts, safe redirects, the custom_data bridge."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
from dash import html

from web.auth import signed_in_user


def user():
    return signed_in_user()


def alert(messages: str | list[str] | None, color: str = "danger", **kwargs) -> Any:
    if not messages:
        return None
    if isinstance(messages, str):
        messages = [messages]
    body = messages[0] if len(messages) == 1 else html.Ul([html.Li(m) for m in messages], className="mb-0")
    return dbc.Alert(body, color=color, className="mt-3", **kwargs)


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
