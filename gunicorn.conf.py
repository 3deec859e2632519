"""Gunicorn settings for INcDb (``gunicorn -c gunicorn.conf.py app:server``)."""
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8050')}")
# Browse callbacks are short and I/O bound; jobs run on Celery workers, not here.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# Uploads of large files stream through the web process: allow slow clients.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "600"))
graceful_timeout = 30
keepalive = 5
# Behind nginx: trust X-Forwarded-* from the proxy on this machine only.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Each worker process opens its own database connections (the engine is created lazily per process).
preload_app = False
