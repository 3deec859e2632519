"""Finish Dash's set-up in a web process before it serves its first request.

Dash (4.4) completes an app on its first request, in two ``before_request`` hooks of the Flask server: ``_setup_server``
registers the script and style sheet paths it will serve (``registered_paths``), builds the script tags and copies the
pages' ``dash.callback`` callbacks into the callback map; the pages router then adds its own callback. Each hook marks
itself done *before* it does its work, without a lock. With several threads (gunicorn's gthread workers, the threaded
development server) the first requests arrive together: one thread starts the set-up, the others skip it and are
served from a half-built app. A script request then fails (``"dash" is not a registered library``, so the page stays
blank with ``DashRenderer is not defined``), ``/_dash-dependencies`` may list the callbacks without the router's, and
a request that starts the router while ``_setup_server`` validates the callback map ends in ``dictionary changed
size during iteration``.

:func:`finish_dash_setup` runs those hooks once, in a request context made for it, before the process accepts
connections: from gunicorn's ``post_worker_init`` (``gunicorn.conf.py``) in every worker, and before the
development server starts (``python app.py``). Every later request finds them done; they return at once. The hooks
are found on the server rather than called by name because the router is a closure Dash keeps nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask

DASH_HOOK_MODULE = "dash.dash"  # where Dash defines _setup_server and the pages router


def dash_setup_hooks(server: flask.Flask) -> list[Callable[[], Any]]:
    """Dash's first-request hooks on ``server``, in the order a request runs them.

    Raises
    ------
    RuntimeError
        When the server has none: no Dash app is attached, or Dash no longer sets itself up this way (then this
        module needs a look at the new ``dash.py``).
    """
    hooks = [
        hook
        for hook in server.before_request_funcs.get(None, [])
        if getattr(hook, "__module__", None) == DASH_HOOK_MODULE
    ]
    if not hooks:
        raise RuntimeError(f"no Dash set-up hooks ({DASH_HOOK_MODULE}) among the server's before_request functions")
    return hooks


def finish_dash_setup(server: flask.Flask) -> None:
    """Run Dash's first-request set-up on ``server`` now, in this thread (idempotent: a second call does nothing).

    Call it in each process after the app is imported and before it serves; the server's other ``before_request``
    hooks (sign-in, CSRF, callback checks) are per-request work and are not run.
    """
    hooks = dash_setup_hooks(server)
    with server.test_request_context("/"):
        for hook in hooks:
            hook()
