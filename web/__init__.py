"""Flask side of the web app: sign-in state, file routes, uploads and the JSON API."""
from __future__ import annotations

import flask

from web import api, auth, files, timeline, upload


def register(server: flask.Flask) -> None:
    auth.init_login(server)
    server.register_blueprint(files.blueprint)
    server.register_blueprint(api.blueprint)
    server.register_blueprint(upload.blueprint)
    server.register_blueprint(timeline.blueprint)
