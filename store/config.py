"""Settings read from ``INCDB_*`` environment variables.

Settings are read when first asked for (not at import), so a test or a command can set the environment first;
``reset_settings()`` forgets the cached values.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
DEFAULT_UPLOAD_MIN_RATE = 10 * 1024  # bytes/s: 80 kbit/s, far below any working connection
DEFAULT_UPLOAD_DEADLINE_S = 4 * 3600  # a 2 GiB file in 4 hours needs about 150 KB/s
DEFAULT_UPLOAD_BYTES_PER_DAY = 50 * 1024**3
# The public decoder (/decode): what one anonymous client address, and one signed-in account, may send.
DEFAULT_DECODE_MAX_BYTES_ANONYMOUS = 100 * 1024**2
DEFAULT_DECODE_MAX_BYTES_ACCOUNT = 1024**3
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024**2  # any request body but uploads' and the decoder's (web.limits)
DEFAULT_ANNOTATION_MAX_BYTES = 8 * 1024**2  # an events file: 20,000 events with long labels fit in 5 MB
# Job heartbeats (pipeline.jobs.heartbeat): a running job beats this often, is taken for dead after this long without a
# beat (at least three beats), and is re-queued at most until it has been started this many times.
DEFAULT_JOB_HEARTBEAT_S = 10
DEFAULT_JOB_STALE_AFTER_S = 300
DEFAULT_JOB_MAX_ATTEMPTS = 3
# Voxel data a decoder file's header may describe (uncompressed): 100 volumes at 2 mm in float32 are 361 MB.
DEFAULT_DECODE_MAX_DATA_BYTES_ANONYMOUS = 512 * 1024**2
DEFAULT_DECODE_MAX_DATA_BYTES_ACCOUNT = 4 * 1024**3


@dataclass(frozen=True)
class SmtpSettings:
    """``INCDB_SMTP_*``: the server for password-reset and confirmation mail (no host: mails go to the log)."""

    host: str | None
    port: int
    user: str | None
    password: str | None
    sender: str | None
    starttls: bool


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    result_backend: str | None
    storage_url: str
    merge_backend: str
    max_upload_bytes: int
    env: str
    base_url: str
    max_collections_per_user: int
    smtp: SmtpSettings
    trusted_proxies: int
    demo: bool
    s3_endpoint_url: str | None
    # Uploads (web.upload): a request body must arrive at upload_min_rate bytes/s or more, measured over each
    # upload_rate_window_s (the first window is the grace period), and be complete within upload_deadline_s.
    upload_min_rate: int
    upload_rate_window_s: int
    upload_deadline_s: int
    # Concurrent uploads of one user (on one machine) and of one web process; 0 means no limit.
    uploads_per_user: int
    uploads_per_process: int
    # Quotas per user over the last hour and the last 24 hours (administrators are exempt); 0 means no limit.
    uploads_per_hour: int
    upload_bytes_per_day: int
    # Visitors' decoded maps (/decode): kept this many days; caps per anonymous client address and per account
    # (file size, volumes of one file, files per hour; 0: no limit); 4D files with more volumes than
    # decode_inline_volumes run as a background job.
    decode_retention_days: int = 7
    decode_max_bytes_anonymous: int = DEFAULT_DECODE_MAX_BYTES_ANONYMOUS
    decode_max_bytes_account: int = DEFAULT_DECODE_MAX_BYTES_ACCOUNT
    decode_max_volumes_anonymous: int = 100
    decode_max_volumes_account: int = 1000
    decode_max_data_bytes_anonymous: int = DEFAULT_DECODE_MAX_DATA_BYTES_ANONYMOUS
    decode_max_data_bytes_account: int = DEFAULT_DECODE_MAX_DATA_BYTES_ACCOUNT
    decode_per_hour_anonymous: int = 30
    decode_per_hour_account: int = 200
    decode_inline_volumes: int = 4
    # Annotation sets (pipeline.temporal.annotations): caps checked before an events file is stored and decoded in time,
    # generous for a real film; 0: no limit (administrators are exempt from the per-user cap only).
    annotation_max_bytes: int = DEFAULT_ANNOTATION_MAX_BYTES
    annotation_max_events: int = 20_000
    annotation_max_labels: int = 1000
    annotation_sets_per_movie: int = 50
    annotation_sets_per_user: int = 200
    # Unfinished resumable uploads (web.upload) are kept this many hours after their last byte arrived.
    upload_resume_hours: int = 24
    # A job queued this many seconds while no worker took any job is shown as waiting for a background worker.
    queue_warn_s: int = 60
    # Password reset mails to one account in any hour (accounts.reset); 0 means no limit.
    reset_mails_per_hour: int = 5
    job_heartbeat_s: int = DEFAULT_JOB_HEARTBEAT_S
    job_stale_after_s: int = DEFAULT_JOB_STALE_AFTER_S
    job_max_attempts: int = DEFAULT_JOB_MAX_ATTEMPTS
    # Request bodies (web.limits): every body but uploads' and the decoder's; the callback endpoint's, whose default
    # (None) follows the annotation cap. 0 turns a limit off.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_callback_bytes: int | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret_key(self) -> str:
        return secret_key(self)


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _anchored(raw: str) -> Path:
    """An absolute path; a relative one is taken relative to the project, never to the working directory: a web
    process and a worker started in different directories must find the same files and the same database."""
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else PROJECT_ROOT / path).resolve()


def _data_dir() -> Path:
    return _anchored(os.environ.get("INCDB_DATA_DIR") or "data")


def _sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'incdb.sqlite3'}"


def _normalise_database_url(url: str) -> str:
    """Make relative SQLite paths absolute (relative to the project): resolved against each process's working
    directory, they are how the original INcDb's worker ended up with an empty database ("no such table")."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        return f"sqlite:///{_anchored(url[len('sqlite:///') :])}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    data_dir = _data_dir()
    database_url = _normalise_database_url(os.environ.get("INCDB_DATABASE_URL") or _sqlite_url(data_dir))
    broker = os.environ.get("INCDB_BROKER_URL") or None
    env = (os.environ.get("INCDB_ENV") or "development").lower()
    # The broker doubles as result backend unless one is named (Dash's background results are small and expire).
    backend = os.environ.get("INCDB_RESULT_BACKEND") or broker
    storage = os.environ.get("INCDB_STORAGE_URL") or (data_dir / "files").as_uri()
    merge_backend = (os.environ.get("INCDB_MERGE_BACKEND") or "auto").lower()
    if merge_backend not in {"auto", "afni", "numpy"}:
        raise ValueError(f"INCDB_MERGE_BACKEND must be auto, afni or numpy, not {merge_backend!r}")
    max_upload = int(os.environ.get("INCDB_MAX_UPLOAD_BYTES") or DEFAULT_MAX_UPLOAD_BYTES)
    heartbeat_s = max(1, _int_env("INCDB_JOB_HEARTBEAT_S", DEFAULT_JOB_HEARTBEAT_S))
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker,
        result_backend=backend,
        storage_url=storage,
        merge_backend=merge_backend,
        max_upload_bytes=max_upload,
        env=env,
        base_url=_base_url(),
        max_collections_per_user=int(os.environ.get("INCDB_MAX_COLLECTIONS_PER_USER") or 200),
        smtp=SmtpSettings(
            host=os.environ.get("INCDB_SMTP_HOST") or None,
            port=int(os.environ.get("INCDB_SMTP_PORT") or 587),
            user=os.environ.get("INCDB_SMTP_USER") or None,
            password=os.environ.get("INCDB_SMTP_PASSWORD") or None,
            sender=os.environ.get("INCDB_SMTP_FROM") or None,
            starttls=os.environ.get("INCDB_SMTP_STARTTLS", "1") != "0",
        ),
        trusted_proxies=int(os.environ.get("INCDB_TRUSTED_PROXIES") or 0),
        demo=os.environ.get("INCDB_DEMO", "1") != "0",
        s3_endpoint_url=os.environ.get("INCDB_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None,
        upload_min_rate=_int_env("INCDB_UPLOAD_MIN_RATE", DEFAULT_UPLOAD_MIN_RATE),
        upload_rate_window_s=max(1, _int_env("INCDB_UPLOAD_RATE_WINDOW_S", 30)),
        upload_deadline_s=_int_env("INCDB_UPLOAD_DEADLINE_S", DEFAULT_UPLOAD_DEADLINE_S),
        uploads_per_user=_int_env("INCDB_UPLOADS_PER_USER", 3),
        uploads_per_process=_int_env("INCDB_UPLOADS_PER_PROCESS", 0),
        uploads_per_hour=_int_env("INCDB_UPLOADS_PER_HOUR", 500),
        upload_bytes_per_day=_int_env("INCDB_UPLOAD_BYTES_PER_DAY", DEFAULT_UPLOAD_BYTES_PER_DAY),
        decode_retention_days=max(1, _int_env("INCDB_DECODE_RETENTION_DAYS", 7)),
        decode_max_bytes_anonymous=_int_env("INCDB_DECODE_MAX_BYTES_ANONYMOUS", DEFAULT_DECODE_MAX_BYTES_ANONYMOUS),
        decode_max_bytes_account=_int_env("INCDB_DECODE_MAX_BYTES_ACCOUNT", DEFAULT_DECODE_MAX_BYTES_ACCOUNT),
        decode_max_volumes_anonymous=_int_env("INCDB_DECODE_MAX_VOLUMES_ANONYMOUS", 100),
        decode_max_volumes_account=_int_env("INCDB_DECODE_MAX_VOLUMES_ACCOUNT", 1000),
        decode_max_data_bytes_anonymous=_int_env(
            "INCDB_DECODE_MAX_DATA_BYTES_ANONYMOUS", DEFAULT_DECODE_MAX_DATA_BYTES_ANONYMOUS
        ),
        decode_max_data_bytes_account=_int_env(
            "INCDB_DECODE_MAX_DATA_BYTES_ACCOUNT", DEFAULT_DECODE_MAX_DATA_BYTES_ACCOUNT
        ),
        decode_per_hour_anonymous=_int_env("INCDB_DECODE_PER_HOUR_ANONYMOUS", 30),
        decode_per_hour_account=_int_env("INCDB_DECODE_PER_HOUR_ACCOUNT", 200),
        decode_inline_volumes=_int_env("INCDB_DECODE_INLINE_VOLUMES", 4),
        annotation_max_bytes=_int_env("INCDB_ANNOTATION_MAX_BYTES", DEFAULT_ANNOTATION_MAX_BYTES),
        max_request_bytes=_int_env("INCDB_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
        max_callback_bytes=_int_env("INCDB_MAX_CALLBACK_BYTES", -1) if _is_set("INCDB_MAX_CALLBACK_BYTES") else None,
        annotation_max_events=_int_env("INCDB_ANNOTATION_MAX_EVENTS", 20_000),
        annotation_max_labels=_int_env("INCDB_ANNOTATION_MAX_LABELS", 1000),
        annotation_sets_per_movie=_int_env("INCDB_ANNOTATION_SETS_PER_MOVIE", 50),
        annotation_sets_per_user=_int_env("INCDB_ANNOTATION_SETS_PER_USER", 200),
        upload_resume_hours=_int_env("INCDB_UPLOAD_RESUME_HOURS", 24),
        queue_warn_s=max(1, _int_env("INCDB_QUEUE_WARN_S", 60)),
        reset_mails_per_hour=_int_env("INCDB_RESET_MAILS_PER_HOUR", 5),
        job_heartbeat_s=heartbeat_s,
        job_stale_after_s=max(3 * heartbeat_s, _int_env("INCDB_JOB_STALE_AFTER_S", DEFAULT_JOB_STALE_AFTER_S)),
        job_max_attempts=max(1, _int_env("INCDB_JOB_MAX_ATTEMPTS", DEFAULT_JOB_MAX_ATTEMPTS)),
    )


def _base_url() -> str:
    """The site's address for links in mails: ``INCDB_BASE_URL``, else where ``python app.py`` listens (``HOST``
    and ``PORT``; a wildcard host becomes 127.0.0.1). Never taken from a request: production refuses to start
    without ``INCDB_BASE_URL`` (``pipeline.check``)."""
    configured = (os.environ.get("INCDB_BASE_URL") or "").strip().rstrip("/")
    if configured:
        return configured
    host = os.environ.get("HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('PORT') or '8050'}"


def _is_set(name: str) -> bool:
    return bool((os.environ.get(name) or "").strip())


def _int_env(name: str, default: int) -> int:
    """A whole number of at least 0 from the environment, or ``default`` when unset or empty."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return value


def reset_settings() -> None:
    get_settings.cache_clear()


def secret_key(settings: Settings | None = None) -> str:
    """``INCDB_SECRET_KEY``, or in the embedded mode a key generated once and kept in the data directory."""
    settings = settings or get_settings()
    key = os.environ.get("INCDB_SECRET_KEY")
    if key:
        return key
    if settings.env == "production":
        raise RuntimeError("INCDB_SECRET_KEY must be set when INCDB_ENV=production")
    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins; others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
