"""Gunicorn settings for INcDb (``gunicorn -c gunicorn.conf.py app:server``).

Starting a worker. Each worker imports the app itself (``preload_app`` is off, so a reload loads new code) and then,
in ``post_worker_init``, finishes Dash's first-request set-up before it accepts a connection: Dash does that set-up
lazily and without a lock, and the parallel first requests of a fresh worker raced through it (500s for the page's
scripts, a blank page; ``dashboard.startup``).

Reloading without downtime (``systemctl reload incdb-web`` sends HUP). Gunicorn re-reads this file, keeps the
listening socket and starts new workers; by itself it would stop the old workers at once, so that every request
arriving while the new ones import the app (seconds, more on a busy machine) waited in the socket's queue. Here the
old workers hand over instead: ``on_reload`` raises the number of workers the master keeps by the old workers'
number, each new worker stops "its" old worker (SIGTERM, which lets the worker finish what it is serving) once it
is ready to serve, and ``child_exit`` lowers the number again as the old workers go. Some workers serve at every
moment. The state lives on the master object, because the master re-reads this module on every reload.
"""

import multiprocessing
import os
import signal
from typing import Any

import psutil

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
# A full stop (SIGTERM to the master) waits this long for the requests in flight, then kills the workers, with the
# socket closed all the while. An old worker stopped by a reload's hand-over stops accepting at once but lets a
# request in flight (an upload) run on, until `timeout` after this at most (docs/deploy.md, "Deploying").
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
# Gunicorn's control socket (gunicornc) would be one more way to reload and to add or remove workers, in the home
# directory; systemd's reload (HUP) is the way here.
control_socket_disable = True


def post_fork(server: Any, worker: Any) -> None:
    """Cap the uploads in flight in this worker at half its threads, unless INCDB_UPLOADS_PER_PROCESS is set; note
    which old workers this one stops once it is ready, when it starts during a reload's hand-over."""
    os.environ.setdefault("INCDB_UPLOADS_PER_PROCESS", str(max(1, worker.cfg.threads // 2)))
    worker.incdb_retires = _old_workers_for(server, worker)


def post_worker_init(worker: Any) -> None:
    """Finish Dash's set-up, then (during a reload) stop the old workers this one replaces: it serves from now on."""
    from dashboard.startup import finish_dash_setup  # the master never imports the app

    finish_dash_setup(worker.wsgi)
    for pid in worker.incdb_retires:
        if _is_worker_of(pid, worker.ppid):  # not a process that took the PID of a worker gone meanwhile
            worker.log.info("Worker %s ready: stopping old worker %s", worker.pid, pid)
            os.kill(pid, signal.SIGTERM)


def on_reload(server: Any) -> None:
    """HUP: keep the current workers until new ones replace them (the master would otherwise stop them now)."""
    current = sorted(server.WORKERS.items(), key=lambda item: item[1].age)
    server.incdb_handover = {
        "after_age": server.worker_age,
        "old": [pid for pid, _ in current],
        "left": {pid for pid, _ in current},
    }
    server.num_workers = server.cfg.workers + len(current)


def child_exit(server: Any, worker: Any) -> None:
    """An old worker has ended: the master keeps one worker fewer, and the hand-over ends with the last of them."""
    handover = getattr(server, "incdb_handover", None)
    if handover and worker.pid in handover["left"]:
        handover["left"].discard(worker.pid)
        server.num_workers = server.cfg.workers + len(handover["left"])
        if not handover["left"]:
            server.incdb_handover = None


def _old_workers_for(server: Any, worker: Any) -> list[int]:
    """The old workers that ``worker`` (just forked) stops when it is ready: the k-th new worker of a reload stops the
    k-th old one, the last new worker all old ones beyond; a worker started later in the hand-over (one replacing a
    new worker that died) stops every old one still there. Empty outside a hand-over."""
    handover = getattr(server, "incdb_handover", None)
    if not handover:
        return []
    index, last = worker.age - handover["after_age"] - 1, server.cfg.workers - 1
    old = handover["old"]
    mine = old[index : index + 1] if index < last else old[index:] if index == last else old
    return [pid for pid in mine if pid in server.WORKERS]


def _is_worker_of(pid: int, master: int) -> bool:
    try:
        return psutil.Process(pid).ppid() == master
    except psutil.Error:
        return False
