"""Explicit display normalisation: any image to 8-bit gray or RGB, for eyes only.

lensloop never rescales image data silently. :func:`to_display` is the one place where
values are squeezed into ``uint8``, and it is used only for thumbnails, the web UI and
Label Studio; models and measurements always see the native array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["to_display"]

# Percentiles are estimated from at most this many evenly strided samples per channel, so
# that a 100-megapixel image does not need a full sort; below it they are exact.
_MAX_PERCENTILE_SAMPLES = 1 << 22


def _check_range(low: float, high: float) -> None:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"{name} must be a percentile in [0, 100], got {value!r}")
    if not low < high:
        raise ValueError(f"low must be less than high, got low={low!r}, high={high!r}")


def _channels_last(image: np.ndarray) -> np.ndarray:
    """Validate the image and return it as ``(H, W, C)`` with C in 1..4."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or not 1 <= image.shape[2] <= 4:
        raise ValueError(f"image must be (H, W) or (H, W, C) with C in 1..4, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    if image.dtype.kind not in "buif":
        raise TypeError(f"image must have a boolean, integer or float dtype, got {image.dtype}")
    return image


def _finite_sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = -(-flat.size // _MAX_PERCENTILE_SAMPLES)  # ceil division
    sample = flat[::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    return sample


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the ``low``/``high`` percentiles of ``values`` to 0/255, as ``uint8``."""
    sample = _finite_sample(values)
    out_shape = values.shape
    if sample.size == 0:
        return np.zeros(out_shape, np.uint8)
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if not hi > lo:
        return np.zeros(out_shape, np.uint8)  # constant image: 0, not a division by zero
    # float32 halves the memory; 64-bit data keep float64 (float32 could overflow).
    work = np.dtype(np.float64) if values.dtype.itemsize > 4 else np.dtype(np.float32)
    scaled: npt.NDArray[np.floating[Any]] = values.astype(work)
    scaled -= lo
    scaled *= 255.0 / (hi - lo)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def to_display(
    image: np.ndarray, *, low: float = 0.5, high: float = 99.5, per_channel: bool = True
) -> np.ndarray:
    """Make an 8-bit gray or RGB picture of an image, for display only.

    The rule:

    - ``uint8`` images are passed through unchanged: no stretch (the result may share
      memory with ``image`` when no channel mapping is needed).
    - ``bool`` images become 0 and 255.
    - Any other dtype gets a percentile stretch: the ``low`` percentile maps to 0, the
      ``high`` percentile to 255, values outside are clipped. NaN and infinite values are
      left out of the percentiles; NaN is shown as 0, +inf as 255, -inf as 0. A constant
      image (or one with no finite value) maps to 0 everywhere, without dividing by zero.
      Percentiles of channels above 4 megapixels are estimated from an evenly strided
      sample of about 4 million pixels.
    - Channels: 1 gives gray ``(H, W)``; 2 gives RGB ``(c0, c1, 0)``; 3 gives RGB; 4 gives
      the first three as RGB (an RGBA alpha or a fourth channel is not shown).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, C in 1..4, any boolean, integer or float
            dtype.
        low: Percentile (0 to 100) mapped to black.
        high: Percentile (0 to 100, above ``low``) mapped to white.
        per_channel: Stretch each channel on its own percentiles (True), or all displayed
            channels on shared ones, keeping their relative brightness (False).

    Returns:
        ``uint8`` array, ``(H, W)`` for one channel, else ``(H, W, 3)``.

    Raises:
        TypeError: ``image`` is not an array of a numeric dtype, or ``low``/``high`` are not
            numbers.
        ValueError: ``image`` is not ``(H, W)`` or ``(H, W, C)`` with C in 1..4 or is empty;
            ``low`` or ``high`` is outside [0, 100] or ``low >= high``.

    Example:
        >>> import numpy as np
        >>> to_display(np.array([[0, 1000], [2000, 4000]], np.uint16), low=0, high=100)
        array([[  0,  64],
               [128, 255]], dtype=uint8)
    """
    _check_range(low, high)
    image = _channels_last(image)
    channels = image.shape[2]
    shown = image[:, :, : min(channels, 3)]
    if image.dtype == np.uint8:
        out = shown
    elif image.dtype == np.bool_:
        out = shown.astype(np.uint8) * np.uint8(255)
    elif per_channel:
        out = np.stack([_stretch(shown[:, :, c], low, high) for c in range(shown.shape[2])], -1)
    else:
        out = _stretch(shown, low, high)
    if channels == 1:
        return np.ascontiguousarray(out[:, :, 0])
    if channels == 2:
        return np.concatenate([out, np.zeros_like(out[:, :, :1])], axis=2)
    return np.ascontiguousarray(out)
