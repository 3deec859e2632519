"""Layout pieces of the curator pages (accounts, contributing, administration): messages, the sign-in prompt,
form rows and status badges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
from dash import dcc, html

from accounts.passwords import PASSWORD_MIN_LENGTH
from store.models import CollectionStatus, JobStatus


def alert(messages: str | list[str] | None, color: str = "danger", **kwargs) -> Any:
    """A Bootstrap alert with one message, or a list of them (None for no message)."""
    if not messages:
        return None
    if isinstance(messages, str):
        messages = [messages]
    body = messages[0] if len(messages) == 1 else html.Ul([html.Li(m) for m in messages], className="mb-0")
    return dbc.Alert(body, color=color, className="mt-3", **kwargs)


def sign_in_prompt(path: str, what: str = "this page") -> dbc.Card:
    """What a signed-out visitor sees on a curator page: sign in (and come back to ``path``) or register."""
    nxt = quote(path or "/contribute", safe="/")
    return dbc.Card(
        dbc.CardBody(
            [
                html.H1("Sign in", className="h4"),
                html.P(f"Sign in with your curator account to see {what}."),
                dbc.Button(
                    "Sign in",
                    href=f"/account/sign-in?next={nxt}",
                    color="primary",
                    className="me-2",
                    external_link=True,
                ),
                dbc.Button("Register", href="/account/register", color="secondary", outline=True, external_link=True),
            ]
        ),
        className="mx-auto",
        style={"maxWidth": "560px"},
    )


def form_row(label: str, control, help_text: str | None = None, width: int = 12) -> dbc.Col:
    parts = [
        dbc.Label(
            label, html_for=getattr(control, "id", None) if isinstance(getattr(control, "id", None), str) else None
        ),
        control,
    ]
    if help_text:
        parts.append(dbc.FormText(help_text))
    return dbc.Col(html.Div(parts, className="mb-3"), md=width)


STATUS_COLORS = {
    CollectionStatus.EMPTY: "secondary",
    CollectionStatus.PROCESSING: "info",
    CollectionStatus.READY: "success",
    CollectionStatus.FAILED: "danger",
    JobStatus.QUEUED: "secondary",
    JobStatus.RUNNING: "info",
    JobStatus.SUCCEEDED: "success",
    JobStatus.CANCELLED: "warning",
}


def badge(status: str) -> dbc.Badge:
    return dbc.Badge(status, color=STATUS_COLORS.get(status, "secondary"), className="text-uppercase")


@dataclass(frozen=True)
class TokenFormIds:
    """The component ids of a page that finishes an account action from a mailed link (``?token=``): the
    confirmation of a new account and a password reset. The page and its callback both take them from here."""

    prefix: str

    def __getattr__(self, part: str) -> str:
        if part not in {"message", "go", "token", "password", "password2", "submit", "form", "invalid"}:
            raise AttributeError(part)
        return f"{self.prefix}-{part}"


CONFIRM_IDS = TokenFormIds("confirm")
RESET_IDS = TokenFormIds("reset")


def token_form_parts(ids: TokenFormIds, token: str | None) -> list:
    """Where the callback sends the browser once signed in, and the token it reads."""
    return [dcc.Location(id=ids.go, refresh=True), dcc.Store(id=ids.token, data=token)]


def new_password_fields(first_id: str, second_id: str, label: str = "New password") -> list:
    """The two inputs of a new password (typed twice), with the rule under the first."""
    return [
        dbc.Label(label, html_for=first_id),
        dbc.Input(id=first_id, type="password", autocomplete="new-password"),
        dbc.FormText(f"At least {PASSWORD_MIN_LENGTH} characters; not one of the commonest passwords."),
        html.Div(dbc.Label(f"{label} again", html_for=second_id), className="mt-3"),
        dbc.Input(id=second_id, type="password", autocomplete="new-password", className="mb-3"),
    ]


def narrow_card(children: list, max_width: int = 460) -> dbc.Card:
    """The centred card that holds a short form (sign in, passwords, confirmation)."""
    return dbc.Card(dbc.CardBody(children), className="mx-auto", style={"maxWidth": f"{max_width}px"})
