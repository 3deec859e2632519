"""Throttling of sign-in, registration and reset requests.

Attempts are counted per key (an email and a client address, or an address alone) in a small diskcache under
the data directory. It needs no table and is shared by every process of one machine (gunicorn workers, the
embedded server); several web machines each count on their own, so the limits multiply by the number of
machines. Each module that throttles something defines its own ``Limit``s next to the rule they enforce.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from store.config import get_settings


@dataclass(frozen=True)
class Limit:
    prefix: str
    attempts: int
    window_s: int


_caches: dict[str, Any] = {}
_caches_lock = threading.Lock()


def _throttle_cache() -> diskcache.Cache:
    directory = str(get_settings().data_dir / "cache" / "throttle")
    with _caches_lock:
        cache = _caches.get(directory)
        if cache is None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            cache = _caches[directory] = diskcache.Cache(directory)
        return cache


def _key(limit: Limit, *parts: str) -> str:
    return limit.prefix + ":" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def throttled_for(limit: Limit, *parts: str) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    count, expires = _throttle_cache().get(_key(limit, *parts), default=0, expire_time=True)
    if count < limit.attempts or expires is None:
        return 0
    return max(1, int(expires - time.time()))


def count_attempt(limit: Limit, *parts: str) -> None:
    """Count one attempt; the window restarts at every attempt, so a lock lasts ``window_s`` after the last."""
    cache = _throttle_cache()
    key = _key(limit, *parts)
    with cache.transact():
        cache.set(key, cache.get(key, default=0) + 1, expire=limit.window_s)


def take_allowance(limit: Limit, *parts: str) -> bool:
    """Count one use if fewer than ``limit.attempts`` were counted in the last ``limit.window_s`` (a rolling window
    of the uses' times, not one that restarts at each use); False, counting nothing, when none is left.

    For a ceiling on something this site does rather than on someone's attempts (mails sent to one account): a
    flood cannot keep the window open, so the owner's next allowance comes an hour after the first of the last
    uses, whatever the flood does meanwhile."""
    cache = _throttle_cache()
    key = _key(limit, *parts)
    now = time.time()
    with cache.transact():
        uses = [t for t in cache.get(key, default=()) if t > now - limit.window_s]
        if len(uses) >= limit.attempts:
            return False
        cache.set(key, [*uses, now], expire=limit.window_s)
    return True


def clear_attempts(limit: Limit, *parts: str) -> None:
    _throttle_cache().delete(_key(limit, *parts))


def wait_message(what: str, seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"Too many {what}. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
