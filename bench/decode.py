"""Decoding throughput: the project's decoder vs the Neurosynth per-image method vs a bare numpy matmul.

A synthetic reference of 3,228 terms on the full 2 mm brain mask (as a memory-mapped float32 .npy, the way the
app keeps it) and 100 random smooth components. Prints components/s for each method, measured in one run, and
the ratios. Run by hand: ``python bench/decode.py [--terms 3228] [--components 100]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--terms", type=int, default=3228)
    parser.add_argument("--components", type=int, default=100)
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
    print(
        f"ratio_vs_neurosynth={rate['incdb'] / rate['neurosynth']:.2f} "
        f"ratio_vs_matmul={rate['incdb'] / rate['matmul']:.2f}"
    )


if __name__ == "__main__":
    main()
