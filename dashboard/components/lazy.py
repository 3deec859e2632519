"""Sections drawn when they come into view, so that a page's header, viewer and main figure come first.

A lazy section is an element with the class ``incdb-lazy`` holding a ``dcc.Store`` that is empty until
``assets/incdb-lazy.js`` sees the element in the viewport (and the page's brain viewers have loaded their maps); the
asset then sets the store to ``True`` (the store's id is in the element's ``data-lazy`` attribute), which is what
the section's callback waits for. Nothing of the section is asked of the server before that.

Two uses:

- :func:`lazy_section` draws its body with a loader registered by the page (:func:`register_loader`): the page
  sends only the loader's arguments, and ``callbacks/components/lazy.py`` calls the loader once the section is seen.
- :func:`watch` wraps a section whose own callbacks already fill it (similar components, the cluster table): those
  callbacks take its ``lazy_id("shown", key)`` store as an input and wait for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from dash import dcc, html

from dashboard.components.common import Child, empty_state, section

PREFIX = "incdb-lazy-"
KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
MAX_ARGS_CHARS = 2000

Loader = Callable[[Mapping[str, Any]], Child]
LOADERS: dict[str, Loader] = {}


def lazy_id(kind: str, key: str) -> dict[str, str]:
    """The id of a watched section's ``shown`` store, or of a loaded section's ``load``, ``args`` or ``body``."""
    return {"type": PREFIX + kind, "section": key}


def _check_key(key: str) -> str:
    if not key or len(key) > 40 or not set(key) <= KEY_CHARS:
        raise ValueError(f"lazy section key {key!r}: use 1-40 lower-case letters, digits and '-'")
    return key


def register_loader(key: str, loader: Loader) -> None:
    """Name the function that draws the body of the lazy sections called ``key`` (one per key, at import)."""
    LOADERS[_check_key(key)] = loader


def watch(key: str, content: Child, kind: str = "shown") -> html.Div:
    """``content`` inside an element that ``assets/incdb-lazy.js`` watches; the store ``lazy_id(kind, key)`` turns
    ``True`` when it comes into view."""
    store = lazy_id(kind, _check_key(key))
    # False, not None: a dcc.Store whose data is None sets its data again when it mounts, which would fire the
    # section's callback at once.
    return html.Div(
        [dcc.Store(id=store, data=False), content],
        className="incdb-lazy",
        **{"data-lazy": json.dumps(store, sort_keys=True)},
    )


def lazy_section(key: str, title: Child, args: Mapping[str, Any], placeholder: str = "Loading…") -> html.Div:
    """A page section titled ``title`` whose body the loader registered as ``key`` draws from ``args`` (plain
    JSON) when the section comes into view."""
    body = [
        dcc.Store(id=lazy_id("args", key), data=dict(args)),
        dcc.Loading(
            html.Div(html.P(placeholder, className="text-muted"), id=lazy_id("body", key)),
            type="dot",
            delay_show=300,
        ),
    ]
    return watch(key, section(title, body), kind="load")


def load(key: Any, args: Any) -> Child:
    """The body of lazy section ``key`` from the browser's ``args``: a clear message for anything forged."""
    loader = LOADERS.get(key) if isinstance(key, str) else None
    if loader is None:
        return empty_state("This section cannot be shown.")
    if not isinstance(args, dict) or len(repr(args)) > MAX_ARGS_CHARS:
        return empty_state("This section cannot be shown.")
    return loader(args)
