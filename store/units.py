"""How INcDb writes quantities for people (one formatter, used by messages and pages alike)."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """A byte count in binary units: '512 bytes', '3.5 KiB', '2.0 GiB'."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"
