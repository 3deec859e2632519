"""Viewer payload: bytes the viewer downloads per map (8-bit display encoding) vs the float32 .nii.gz.

Display copies hold Lorenzo residuals of the codes where that is smaller (pipeline/maps/display.py); the error is
measured after decoding them back, as the viewer does.
Uses the demo data (made in a temporary data directory unless INCDB_DATA_DIR already holds it). For every
component, term reference map and merged map: display bytes / float32 gzip bytes (gzip level 6, the usual
``gzip`` default), and the largest decoding error as a percentage of the map's range.
Run by hand: ``python bench/payload.py``.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from sqlalchemy import select

    from pipeline.curation.demo import load_demo
    from pipeline.maps.display import PREDICTED_INTENT, decode_display, encode_for_display
    from pipeline.maps.files import load_map
    from pipeline.maps.grid import GRID_AFFINE, to_image
    from store.db import session_scope, upgrade_database
    from store.models import Component, Term, TermMap

    upgrade_database()
    load_demo(progress=None)
    with session_scope() as session:
        keys = {
            "component": list(session.scalars(select(Component.storage_key))),
            "term": list(session.scalars(select(Term.storage_key))),
            "merged": list(session.scalars(select(TermMap.storage_key))),
        }
    total_display = total_float = 0
    worst = 0.0
    for kind, kind_keys in keys.items():
        disp = flt = 0
        kind_worst = 0.0
        predicted = 0
        for key in kind_keys:
            data = load_map(key)
            encoded = encode_for_display(data, GRID_AFFINE)
            reference = gzip.compress(to_image(data).to_bytes(), compresslevel=6)
            decoded = decode_display(encoded).get_fdata(dtype=np.float32)
            predicted += gzip.decompress(encoded)[328:344].rstrip(b"\0") == PREDICTED_INTENT
            span = float(data.max() - data.min()) or 1.0
            kind_worst = max(kind_worst, float(np.abs(decoded - data).max()) / span * 100)
            disp += len(encoded)
            flt += len(reference)
        print(
            f"{kind:<10} {len(kind_keys):4d} maps  display {disp / len(kind_keys) / 1024:8.1f} KiB/map  "
            f"float32 gzip {flt / len(kind_keys) / 1024:8.1f} KiB/map  ratio {disp / flt:.3f}  "
            f"max error {kind_worst:.3f}% of range  predicted {predicted}/{len(kind_keys)}"
        )
        total_display += disp
        total_float += flt
        worst = max(worst, kind_worst)
    print(f"payload_ratio={total_display / total_float:.3f} max_err_pct={worst:.3f}")


if __name__ == "__main__":
    from bench import scratch_data_dir

    with scratch_data_dir("incdb-bench-payload-"):
        main()
