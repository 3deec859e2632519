"""The background callback manager: Celery on Redis when INCDB_BROKER_URL is set, diskcache otherwise; and the
identity that background jobs receive from the web request that started them.

One place builds the Celery app and the manager (the web process and ``celery -A app:celery_app worker`` import the
same code, so task names, which Dash derives from the callback source, agree).
"""
from __future__ import annotations

from typing import Any

import diskcache
import flask
from celery import Celery
from celery.signals import worker_process_init
from dash import CeleryManager, DiskcacheManager, hooks

from store.config import get_settings
from store.db import dispose_engine
from web.auth import signed_in_user

# Above the longest job: a redelivered message must never find its first run still going.
VISIBILITY_TIMEOUT_S = 6 * 3600
RESULT_EXPIRES_S = 24 * 3600


def make_celery() -> Celery:
    settings = get_settings()
    celery_app = Celery("incdb", broker=settings.broker_url or "memory://",
                        backend=settings.result_backend or "cache+memory://")
    celery_app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
    )
    return celery_app


@worker_process_init.connect
def _fresh_engine_in_worker(**_kwargs) -> None:
    # A forked worker child must not reuse the parent's pooled connections.
    dispose_engine()


def make_background_manager(celery_app: Celery):
    settings = get_settings()
    if settings.broker_url:
        return CeleryManager(celery_app, expire=RESULT_EXPIRES_S)

    cache_dir = settings.data_dir / "cache" / "background"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return DiskcacheManager(diskcache.Cache(str(cache_dir)), expire=RESULT_EXPIRES_S)


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
