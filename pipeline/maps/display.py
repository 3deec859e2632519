"""8-bit display encoding of maps for the browser viewer.

The viewer only needs what a screen can show, so display files carry uint8 codes plus the NIfTI ``scl_slope`` /
``scl_inter`` pair (one per file, also for 4D); downloads stay full precision. Decoded values are within half a code
step (range / 510, about 0.2% of the range) of the input.

Brain maps are spatially smooth, so neighbouring codes are close, yet gzip only sees bytes and cannot use that:
plain codes of a map with signal in every in-brain voxel cost about 7 bits per voxel. Before gzip the codes are
therefore replaced by the residuals of the 3D Lorenzo predictor, which is the mixed difference along x, y and z
(``diff(diff(diff(codes, x), y), z)``), taken modulo 256 so it stays one byte per voxel and inverts exactly by
three running sums. On the demo maps that takes the display copy from about 22% to about 13% of the float32 gzip
bytes. Sparse, thresholded maps compress better without it, so the encoder keeps whichever is smaller and marks
predicted files with ``intent_name = "incdb-lorenzo3d"``. Such a file is still NIfTI-1, but its voxels are
residuals: the viewer (``assets/viewer/incdb-viewer.js``) and :func:`decode_display` undo the prediction.

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

from pipeline.maps.files import gunzip

N_CODES = 255  # highest uint8 code
PREDICTED_INTENT = b"incdb-lorenzo3d"  # intent_name of a file holding Lorenzo residuals, see the module docstring
# zlib rather than isal: on residuals zlib level 6 is ~10% smaller, and a display copy is encoded once (~30 ms)
# and then cached, while its bytes go to every viewer.
_DISPLAY_GZIP_LEVEL = 6
_SLOPE_BITS = 16  # 16 + 8 code bits fit a float32 mantissa, see the module docstring


def _coarse_ceil(x: float) -> float:
    """Smallest float with at most _SLOPE_BITS significant bits that is >= x (rounding up keeps full coverage)."""
    mantissa, exponent = math.frexp(x)
    scale = 2.0**_SLOPE_BITS
    return math.ldexp(math.ceil(mantissa * scale) / scale, exponent)


def display_scale(lo: float, hi: float) -> tuple[float, float]:
    """``(slope, inter)`` for uint8 codes covering [lo, hi]; both exact float32 values.

    A code ``c`` decodes to ``slope * c + inter``. When [lo, hi] contains 0, one code decodes to exactly 0.

    Parameters
    ----------
    lo, hi : float
        Smallest and largest value to encode, finite, ``lo <= hi``.

    Returns
    -------
    tuple of (float, float)
        ``slope`` (> 0) and ``inter``. A constant range, or one below float32 resolution, gives
        ``(1.0, lo)`` with ``lo`` rounded to float32.

    Raises
    ------
    ValueError
        When ``lo`` or ``hi`` is not finite or ``hi < lo``.
    """
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


def lorenzo_residuals(codes: np.ndarray) -> np.ndarray:
    """Residuals of the 3D Lorenzo predictor, modulo 256, of uint8 ``codes`` (3D, or 4D volume by volume).

    Parameters
    ----------
    codes : array_like
        ``(x, y, z)`` or ``(x, y, z, n)`` uint8 display codes (converted to uint8 when another dtype).

    Returns
    -------
    numpy.ndarray
        uint8 residuals of the same shape; :func:`undo_lorenzo` gives ``codes`` back exactly.
    """
    residuals = np.asarray(codes, dtype=np.uint8)
    for axis in range(3):
        residuals = np.diff(residuals, axis=axis, prepend=np.uint8(0))  # uint8 arithmetic wraps modulo 256
    return residuals


def undo_lorenzo(residuals: np.ndarray) -> np.ndarray:
    """Codes back from :func:`lorenzo_residuals` (exact: running sums modulo 256).

    Parameters
    ----------
    residuals : array_like
        ``(x, y, z)`` or ``(x, y, z, n)`` uint8 residuals.

    Returns
    -------
    numpy.ndarray
        uint8 codes of the same shape.
    """
    codes = np.asarray(residuals, dtype=np.uint8)
    for axis in range(3):
        codes = np.cumsum(codes, axis=axis, dtype=np.uint8)
    return codes


def encode_for_display(data: np.ndarray, affine) -> bytes:
    """Gzipped NIfTI-1 bytes of ``data`` (3D or 4D) as uint8 codes with ``scl_slope``/``scl_inter``, the codes
    Lorenzo-predicted when that is smaller (read them with :func:`decode_display`).

    NaN and infinities become 0 before the range is taken (so 0 is then in range and exact).

    Parameters
    ----------
    data : array_like
        ``(x, y, z)`` or ``(x, y, z, n)`` map, floating, integer or bool; not changed. One scale covers all
        volumes of a 4D map.
    affine : array_like
        ``(4, 4)`` voxel-to-MNI transform in mm, written as sform and qform (code 4, MNI space).

    Returns
    -------
    bytes
        Gzipped NIfTI-1 file, uint8 voxels, ``scl_slope``/``scl_inter`` set, units mm; the same input always gives
        the same bytes (gzip mtime 0). Decoded values are within half a code step of the input.

    Raises
    ------
    ValueError
        When ``data`` is not 3D or 4D.
    TypeError
        When ``data`` is neither floating, integer nor bool (e.g. complex).
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

    plain = _gzip_nifti(codes, affine, slope, inter, predicted=False)
    predicted = _gzip_nifti(lorenzo_residuals(codes), affine, slope, inter, predicted=True)
    return predicted if len(predicted) < len(plain) else plain


def _gzip_nifti(voxels: np.ndarray, affine, slope: float, inter: float, predicted: bool) -> bytes:
    img = nib.Nifti1Image(voxels, np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code=4)  # every INcDb map is in MNI152 space
    img.set_qform(img.affine, code=4)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(slope, inter)
    if predicted:
        img.header["intent_name"] = PREDICTED_INTENT
        img.header["descrip"] = b"INcDb display copy: Lorenzo residuals of 8-bit codes"
    else:
        img.header["descrip"] = b"INcDb 8-bit display copy"
    return gzip.compress(img.to_bytes(), compresslevel=_DISPLAY_GZIP_LEVEL, mtime=0)


_INTENT_NAME = slice(328, 344)  # byte range of intent_name in a NIfTI-1 header
_VOX_OFFSET = 108  # float32: where the voxels start


def decode_display(payload: bytes) -> nib.Nifti1Image:
    """The uint8 image (with its scale) of a display copy, the Lorenzo prediction undone where it was applied.

    Works on the file's bytes as the viewer does: the voxel block is replaced by the codes and the marker cleared.

    Parameters
    ----------
    payload : bytes
        A display copy from :func:`encode_for_display`, gzipped or plain NIfTI-1.

    Returns
    -------
    nibabel.Nifti1Image
        uint8 codes with ``scl_slope``/``scl_inter`` set, so ``get_fdata()`` gives the decoded values; a predicted
        file comes back with its codes restored and ``intent_name`` cleared.

    Raises
    ------
    Exception
        nibabel's errors (``HeaderDataError``, ``WrapStructError``) when the bytes are not a NIfTI-1 file, and
        ``gzip.BadGzipFile`` when a gzip stream is corrupt.
    """
    raw = bytearray(gunzip(payload))
    img = nib.Nifti1Image.from_bytes(bytes(raw))
    if bytes(raw[_INTENT_NAME]).rstrip(b"\0") != PREDICTED_INTENT:
        return img
    offset = int(np.frombuffer(raw, dtype=img.header.endianness + "f4", count=1, offset=_VOX_OFFSET)[0])
    codes = undo_lorenzo(np.asarray(img.dataobj.get_unscaled()))
    raw[_INTENT_NAME] = bytes(_INTENT_NAME.stop - _INTENT_NAME.start)
    raw[offset:] = codes.tobytes(order="F")
    return nib.Nifti1Image.from_bytes(bytes(raw))
