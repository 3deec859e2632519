"""8-bit display encoding of maps for the browser viewer.

The viewer only needs what a screen can show, so display files carry uint8 codes plus the NIfTI ``scl_slope`` /
``scl_inter`` pair (one per file, also for 4D). That is about a tenth of the float32 gzip bytes; downloads stay
full precision. Decoded values are within half a code step (range / 510, about 0.2% of the range) of the input.

Zero gets its own code whenever the data range contains it. Display thresholds sit near zero (the default
positive threshold is 0 and the shaders test ``value > threshold``), so a zero that decoded to 1e-7 would paint
the whole background. Exactness is arranged in float32, the precision of the header fields and of the WebGL
shader: the slope keeps 16 significant bits, so ``slope * code`` for any 8-bit code is an exact float32 and
``inter = -slope * zero_code`` cancels it exactly, in the shader, in NiiVue's readout and in nibabel.
"""
from __future__ import annotations

import gzip
import math

import nibabel as nib
import numpy as np

try:  # isal's deflate is several times faster than zlib at a similar size (DESIGN, performance notes)
    from isal import igzip as _gzip

    _GZIP_LEVEL = 3
except ImportError:  # pragma: no cover - isal is a declared dependency, this keeps the encoder usable without it
    _gzip = gzip
    _GZIP_LEVEL = 6

N_CODES = 255  # highest uint8 code
_SLOPE_BITS = 16  # 16 + 8 code bits fit a float32 mantissa, see the module docstring


def _coarse_ceil(x: float) -> float:
    """Smallest float with at most _SLOPE_BITS significant bits that is >= x (rounding up keeps full coverage)."""
    mantissa, exponent = math.frexp(x)
    scale = 2.0**_SLOPE_BITS
    return math.ldexp(math.ceil(mantissa * scale) / scale, exponent)


def display_scale(lo: float, hi: float) -> tuple[float, float]:
    """``(slope, inter)`` for uint8 codes covering [lo, hi]; both exact float32 values."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"invalid data range [{lo}, {hi}]")
    step = (hi - lo) / N_CODES
    # Ranges below float32 resolution cannot be stored in the header fields anyway: treat them as constant.
    if hi == lo or step < np.finfo(np.float32).tiny * 2.0**_SLOPE_BITS:
        return 1.0, float(np.float32(lo))
    slope = float(np.float32(_coarse_ceil(step)))
    if lo <= 0.0 <= hi:
        zero_code = min(max(round(-lo / slope), 0), N_CODES)
        inter = -slope * zero_code if zero_code else 0.0  # exact: 16-bit mantissa times an 8-bit integer
    else:
        inter = float(np.float32(lo))
    return slope, inter


def _finite_range(data: np.ndarray) -> tuple[float, float]:
    """Min and max with non-finite values counted as the 0 they are encoded as."""
    if data.size == 0:
        return 0.0, 0.0
    if not np.issubdtype(data.dtype, np.floating):
        return float(data.min()), float(data.max())
    finite = np.isfinite(data)
    if finite.all():
        return float(data.min()), float(data.max())
    if not finite.any():
        return 0.0, 0.0
    values = data[finite]
    return min(float(values.min()), 0.0), max(float(values.max()), 0.0)


def encode_for_display(data: np.ndarray, affine) -> bytes:
    """Gzipped NIfTI-1 bytes of ``data`` (3D or 4D) as uint8 codes with ``scl_slope``/``scl_inter``.

    NaN and infinities become 0 before the range is taken (so 0 is then in range and exact).
    """
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"expected a 3D or 4D array, got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        raise TypeError(f"cannot encode {data.dtype} data for display")
    lo, hi = _finite_range(data)
    slope, inter = display_scale(lo, hi)

    codes = np.empty(data.shape, dtype=np.uint8)
    # One volume at a time: a float64 temporary of a whole 70-frame 4D file would be half a gigabyte.
    volumes = [(Ellipsis,)] if data.ndim == 3 else [(Ellipsis, t) for t in range(data.shape[3])]
    for index in volumes:
        vol = np.array(data[index], dtype=np.float64)  # a copy: the caller's array is not ours to edit
        vol[~np.isfinite(vol)] = 0.0
        np.clip(np.rint((vol - inter) / slope), 0, N_CODES, out=vol)
        codes[index] = vol

    img = nib.Nifti1Image(codes, np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code=4)  # every INcDb map is in MNI152 space
    img.set_qform(img.affine, code=4)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(slope, inter)
    img.header["descrip"] = b"INcDb 8-bit display copy"
    return _gzip.compress(img.to_bytes(), compresslevel=_GZIP_LEVEL, mtime=0)
