"""Gunicorn settings for INcDb (``gunicorn -c gunicorn.conf.py app:server``)."""
import multiprocessing
import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8050')}")
# Browse callbacks are short and I/O bound; jobs run on Celery workers, not here.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# Threads (gthread), many per process: an upload holds its thread for as long as its body takes to arrive, and with
# 2 threads per process a few slow uploads once left no thread for anything else. Idle keep-alive connections wait
# in the worker's poller, not in a thread. gevent would make waiting on slow clients cheaper still, but it needs
# every library monkey-patched (psycopg, redis, diskcache, Celery's client) and the NIfTI checks of an upload run
# numpy and zlib code that would stall all its other connections; threads keep all of that as it is. Uploads may
# hold half of a process's threads (post_fork below), so pages and the API always have some.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# With gthread this is how long a worker's main loop may be silent before the master restarts it; a long upload
# does not count against it (INCDB_UPLOAD_DEADLINE_S and INCDB_UPLOAD_MIN_RATE bound uploads).
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


def post_fork(server: Any, worker: Any) -> None:
    """Cap the uploads in flight in this worker at half its threads, unless INCDB_UPLOADS_PER_PROCESS is set."""
    os.environ.setdefault("INCDB_UPLOADS_PER_PROCESS", str(max(1, worker.cfg.threads // 2)))
