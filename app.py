"""INcDb web application: ``app`` (Dash), ``server`` (Flask) and ``celery_app``.

python app.py                          # embedded default: SQLite, diskcache, local files, demo data
gunicorn app:server                    # production web process
celery -A app:celery_app worker        # production worker (imports this module, so every callback)
"""

from __future__ import annotations

import logging
import os

import dash
import flask
from sqlalchemy import func, select
from werkzeug.middleware.proxy_fix import ProxyFix

import callbacks
import web
from dashboard.background import make_background_manager, make_celery
from dashboard.layout import shell
from dashboard.startup import finish_dash_setup
from dashboard.theme import register_theme_route
from dashboard.viewer import register_viewer_routes
from pipeline.check import production_problems
from pipeline.curation.demo import load_demo
from pipeline.decoding.reference import active_reference, ensure_default_reference
from pipeline.jobs.tasks import run_job
from store.config import get_settings
from store.db import session_scope, upgrade_database
from store.models import Collection

_problems = production_problems()
if _problems:  # refuse to serve (or to work) with an unsafe production configuration
    raise SystemExit("INcDb refuses to start in production:\n- " + "\n- ".join(_problems))

celery_app = make_celery()
# Background decodings of visitors' maps are plain Celery tasks (no page waits on them; they have a Job row).
celery_app.task(name=web.decode.DECODE_TASK)(run_job)
web.decode.use_celery(celery_app)
server = flask.Flask(__name__)
_proxies = get_settings().trusted_proxies
if _proxies:
    # Behind nginx every request comes from 127.0.0.1: take the client address (used by the sign-in throttle) and
    # scheme from the X-Forwarded-* headers that this many trusted proxies add. Never the host: nothing here
    # builds links from it (mails use INCDB_BASE_URL), and a forwarded host is whatever the client sent.
    server.wsgi_app = ProxyFix(server.wsgi_app, x_for=_proxies, x_proto=_proxies, x_host=0)
NIIVUE_URL = register_viewer_routes(server)
THEME_URL = register_theme_route(server)
web.register(server)

app = dash.Dash(
    __name__,
    server=server,
    use_pages=True,
    external_scripts=[NIIVUE_URL],
    pages_folder="dashboard/pages",
    external_stylesheets=[THEME_URL],
    background_callback_manager=make_background_manager(celery_app),
    suppress_callback_exceptions=True,
    title="INcDb",
    update_title=None,
)
# Dash's default page without its <footer> around the scripts (a second "contentinfo" landmark next to the site's
# footer) and with the page language, which screen readers need (WCAG 3.1.1).
app.index_string = """<!DOCTYPE html>
<html lang="en">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
    </head>
    <body>
        {%app_entry%}
        {%config%}
        {%scripts%}
        {%renderer%}
    </body>
</html>"""
web.register_dash(app)  # checks in front of Dash's callback and script routes
server.config.update(
    SECRET_KEY=get_settings().secret_key,
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_SECURE=get_settings().env == "production",
    MAX_CONTENT_LENGTH=None,  # uploads stream under their own caps; web.limits caps every other body, per request
)
app.layout = shell
callbacks.register(app)


def prepare_embedded() -> None:
    """Create/upgrade the database, build the default reference when no set is active (Neurosynth v7 topics from
    the shipped files, with progress in the log; ``pipeline init`` does the same and also switches a database
    still on the built-in set) and load the demo data when the database holds no collection."""
    upgrade_database()
    log = logging.getLogger("incdb")
    with session_scope() as session:
        if active_reference(session) is None:
            log.warning("no reference set: building the default one (about 20 s)")
            ensure_default_reference(
                session, progress=lambda done, total: done == total and log.warning("reference built: %d maps", total)
            )
        empty = not session.scalar(select(func.count(Collection.id)))
    if empty and get_settings().demo:
        logging.getLogger("incdb").warning("empty database: loading the synthetic demo data (about 30 s)")
        load_demo(progress=logging.getLogger("incdb").warning)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_embedded()
    finish_dash_setup(server)  # before the threaded server takes parallel first requests
    app.run(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8050")),
        debug=os.environ.get("INCDB_DEBUG") == "1",
    )
