"""Benchmarks, run by hand (``python bench/<name>.py``); each ends with one line of ``name=value`` pairs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_data_dir(prefix: str) -> Iterator[Path]:
    """``INCDB_DATA_DIR`` when set (kept), else a temporary data directory removed afterwards: a benchmark's
    reference matrix alone is 3 GB, and a few runs left behind fill a disk."""
    if os.environ.get("INCDB_DATA_DIR"):
        yield Path(os.environ["INCDB_DATA_DIR"])
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ["INCDB_DATA_DIR"] = tmp
        try:
            yield Path(tmp)
        finally:
            os.environ.pop("INCDB_DATA_DIR", None)
