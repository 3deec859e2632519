"""The background callback manager: Celery on Redis when INCDB_BROKER_URL is set, diskcache otherwise.

One place builds the Celery app and the manager (the web process and ``celery -A app:celery_app worker`` import the
same code, so task names, which Dash derives from the callback source, agree).
"""
from __future__ import annotations

import diskcache
from celery import Celery
from celery.signals import worker_process_init
from dash import CeleryManager, DiskcacheManager

from store.config import get_settings
from store.db import dispose_engine

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
