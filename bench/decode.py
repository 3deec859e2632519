"""Decoding speed: the library, and the command line end to end against NiMARE's CorrelationDecoder.

1. Library throughput: a synthetic reference of 3,228 terms on the full 2 mm brain mask (as a memory-mapped
   float32 .npy, the way the app keeps it) and 100 random smooth components; components/s of the project's decoder,
   the Neurosynth per-image method and a bare numpy matmul, measured in one run, and the ratios.
2. ``python -m pipeline decode`` end to end (process start, imports, reading, resampling, decoding, printing) on one
   3D map and on one 70-volume 4D file, against NiMARE's ``CorrelationDecoder`` given the same term maps
   (``load_imgs``) and the same brain mask, one volume per ``transform`` as NiMARE decodes, also end to end in its
   own process. The maps are demo-like components (``pipeline.curation.demo``) of the reference used. NiMARE is an
   optional peer in its own virtual environment, never in the project's::

       python3.11 -m venv /tmp/nimare-venv && /tmp/nimare-venv/bin/pip install nimare==0.22.1

   The reference is the active set of ``--data-dir`` (e.g. a data directory where ``pipeline init`` built the
   Neurosynth topics), or else the built-in 22-term set in a temporary data directory. Each command is timed
   ``--repeat`` times (median; the files are in the page cache after the first).

Run by hand: ``python bench/decode.py [--terms 3228] [--components 100] [--data-dir DIR]
[--nimare-python /tmp/nimare-venv/bin/python]``. The last line is ``name=value`` pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.decoding.decode import decode, open_reference_matrix  # noqa: E402
from pipeline.maps.grid import mask_flat_indices  # noqa: E402


def synthetic_reference(path: Path, n_vox: int, n_terms: int, seed: int = 0) -> None:
    """Centred, unit-norm random columns written in chunks (the normalised matrix the app builds)."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_vox, n_terms))
    for start in range(0, n_terms, 256):
        block = rng.standard_normal((n_vox, min(256, n_terms - start)), dtype=np.float32)
        block -= block.mean(axis=0)
        block /= np.linalg.norm(block, axis=0)
        mm[:, start : start + block.shape[1]] = block
    mm.flush()
    del mm


def neurosynth_method(components: np.ndarray, ref_t: np.ndarray) -> np.ndarray:
    """Neurosynth's decoder: per image, z-score it, then a dot product with every (z-scored) term image."""
    n = components.shape[1]
    out = np.empty((len(components), ref_t.shape[0]), dtype=np.float32)
    for i, x in enumerate(components):
        z = (x - x.mean()) / x.std()
        out[i] = ref_t @ z.astype(np.float32) / n
    return out


NIMARE_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import nibabel as nib
from nimare.decode.continuous import CorrelationDecoder
imported = time.perf_counter()
terms, mask, path = json.loads(sys.argv[1])
decoder = CorrelationDecoder()
decoder.load_imgs(dict(terms), mask=mask)
loaded = time.perf_counter()
img = nib.load(path)
volumes = [img] if img.ndim == 3 else [img.slicer[..., v] for v in range(img.shape[3])]
r = [decoder.transform(v)["r"].reindex([name for name, _ in terms]).tolist() for v in volumes]
done = time.perf_counter()
print(json.dumps({"r": r, "import_s": imported - started, "load_s": loaded - imported, "decode_s": done - loaded}))
"""


def _median_seconds(command: list[str], env: dict, repeat: int) -> tuple[float, str]:
    """Median wall time of a command run ``repeat`` times, and its last standard output."""
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command[:4])} ... failed: {proc.stderr.strip()[-500:]}")
        out = proc.stdout
    return statistics.median(times), out


def _bench_files(tmp: Path, data_dir: Path | None) -> tuple[Path, list[tuple[str, str]], Path, Path, Path, np.ndarray]:
    """The data directory, the term maps as files (name, path), the mask file, a 3D and a 70-volume map, and the
    library's r for the 70 volumes."""
    from pipeline.curation.demo import DEMO_COLLECTIONS, DemoCollection, DemoReference, demo_component_maps
    from pipeline.decoding.decode import decode
    from pipeline.decoding.reference import ensure_builtin_reference, load_matrix, require_active_reference
    from pipeline.maps.files import load_map
    from pipeline.maps.grid import brain_mask, to_image
    from store.config import reset_settings
    from store.db import dispose_engine, session_scope, upgrade_database

    if data_dir is None:
        data_dir = tmp / "data"
        os.environ["INCDB_DATA_DIR"] = str(data_dir)
        reset_settings()
        upgrade_database()
        with session_scope() as session:
            ensure_builtin_reference(session)
    else:
        os.environ["INCDB_DATA_DIR"] = str(data_dir)
        reset_settings()
    with session_scope() as session:
        matrix, terms = load_matrix(session, require_active_reference(session))
        term_files = []
        for i, term in enumerate(terms):
            path = tmp / "terms" / f"term{i:04d}.nii.gz"
            path.parent.mkdir(exist_ok=True)
            nib.save(to_image(load_map(term.storage_key)), path)
            term_files.append((term.name, str(path)))
        reference = DemoReference.from_session(session)
    dispose_engine()
    mask = tmp / "mask.nii.gz"
    nib.save(to_image(brain_mask().astype(np.uint8), dtype=np.uint8), mask)
    keywords = tuple(dict.fromkeys(k for spec in DEMO_COLLECTIONS for k in spec.terms))
    spec = DemoCollection("bench", "bench", "bench", 2000, 70, keywords)
    maps = demo_component_maps(spec, 1, reference)
    single, four_d = tmp / "map3d.nii.gz", tmp / "ica70.nii.gz"
    nib.save(to_image(maps[0]), single)
    nib.save(nib.Nifti1Image(np.moveaxis(maps, 0, -1), to_image(maps[0]).affine), four_d)
    return data_dir, term_files, mask, single, four_d, decode(maps, matrix)


def cli_vs_nimare(data_dir: Path | None, nimare_python: str | None, repeat: int) -> dict[str, float]:
    """End-to-end seconds of the command line and of NiMARE on a 3D map and a 70-volume file (see the module)."""
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir, term_files, mask, single, four_d, expected = _bench_files(tmp, data_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
        env["INCDB_DATA_DIR"] = str(data_dir)
        cli = [sys.executable, "-m", "pipeline", "decode"]
        out: dict[str, float] = {}
        out["cli_3d_s"], _ = _median_seconds([*cli, str(single), "--json"], env, repeat)
        out["cli_70_s"], printed = _median_seconds([*cli, str(four_d), "--json"], env, repeat)
        names = [name for name, _ in term_files]
        got = np.array([[{d["term"]: d["r"] for d in v["decodings"]}[n] for n in names] for v in json.loads(printed)])
        out["cli_max_diff"] = float(np.abs(got - expected).max())  # the CLI prints the library's r (6 decimals)
        print(f"reference: {len(names)} maps; command line, median of {repeat} runs (start to exit):")
        print(f"  one 3D map      {out['cli_3d_s']:7.2f} s")
        print(f"  70-volume file  {out['cli_70_s']:7.2f} s   (max |r - library| {out['cli_max_diff']:.1e})")
        if not nimare_python or not Path(nimare_python).exists():
            print("NiMARE: skipped (give --nimare-python, a Python with nimare installed)")
            return out
        timings = {}
        for label, path in (("3d", single), ("70", four_d)):
            args = json.dumps([term_files, str(mask), str(path)])
            timings[label], printed = _median_seconds([nimare_python, "-c", NIMARE_SCRIPT, args], env, repeat)
            theirs = json.loads(printed)
            print(
                f"NiMARE CorrelationDecoder, {label} file: {timings[label]:.2f} s end to end "
                f"(import {theirs['import_s']:.2f} s, load_imgs {theirs['load_s']:.2f} s, "
                f"transform {theirs['decode_s']:.2f} s)"
            )
        out["nimare_3d_s"], out["nimare_70_s"] = timings["3d"], timings["70"]
        out["nimare_max_diff"] = float(np.abs(np.array(theirs["r"]) - expected).max())
        out["ratio_vs_nimare_3d"] = out["nimare_3d_s"] / out["cli_3d_s"]
        out["ratio_vs_nimare_70"] = out["nimare_70_s"] / out["cli_70_s"]
        print(
            f"  ratio vs NiMARE: 3D {out['ratio_vs_nimare_3d']:.1f}x, 70 volumes {out['ratio_vs_nimare_70']:.1f}x; "
            f"max |r_incdb - r_nimare| {out['nimare_max_diff']:.1e}"
        )
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--terms", type=int, default=3228)
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None, help="a data directory whose active reference is used")
    parser.add_argument("--nimare-python", default=None, help="a Python with nimare installed (optional peer)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command line timing (median)")
    args = parser.parse_args()
    n_vox = len(mask_flat_indices())
    rng = np.random.default_rng(1)
    comps = rng.standard_normal((args.components, n_vox), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.npy"
        synthetic_reference(path, n_vox, args.terms)
        matrix = open_reference_matrix(path)
        # Neurosynth keeps term images as rows (terms x voxels), z-scored: the transpose of our matrix times
        # sqrt(n); a memmap of that layout, as its decoder reads it.
        ns_path = Path(tmp) / "neurosynth.npy"
        ns = np.lib.format.open_memmap(ns_path, mode="w+", dtype=np.float32, shape=(args.terms, n_vox))
        for start in range(0, args.terms, 256):
            ns[start : start + 256] = np.asarray(matrix[:, start : start + 256]).T * np.sqrt(n_vox)
        ns.flush()
        del ns
        ns = np.load(ns_path, mmap_mode="r")
        dense = np.asarray(matrix)  # for the bare matmul: the same matrix, same page-cached memory

        # Page both matrices in once, so every method reads from memory (the app's steady state), then warm BLAS.
        for m in (matrix, ns):
            for start in range(0, m.shape[0], 8192):
                np.asarray(m[start : start + 8192]).sum()
        decode(comps[:2], matrix)
        t = time.perf_counter()
        ours = decode(comps, matrix)
        t_ours = time.perf_counter() - t

        t = time.perf_counter()
        bare = comps @ dense
        t_bare = time.perf_counter() - t

        t = time.perf_counter()
        theirs = neurosynth_method(comps, ns)
        t_ns = time.perf_counter() - t

    # Same maths up to the normalisation of the components: check before reporting speed.
    assert np.allclose(ours, theirs, atol=2e-4), float(np.abs(ours - theirs).max())
    del bare
    rate = {name: args.components / sec for name, sec in (("incdb", t_ours), ("neurosynth", t_ns), ("matmul", t_bare))}
    print(f"reference: {n_vox} voxels x {args.terms} terms (float32 memmap); {args.components} components")
    for name, value in rate.items():
        print(f"  {name:<11} {value:10.1f} components/s")
    figures = cli_vs_nimare(args.data_dir, args.nimare_python, args.repeat)
    pairs = {
        "ratio_vs_neurosynth": rate["incdb"] / rate["neurosynth"],
        "ratio_vs_matmul": rate["incdb"] / rate["matmul"],
        **{k: v for k, v in figures.items() if not k.endswith("_diff")},
    }
    print(" ".join(f"{k}={v:.2f}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
