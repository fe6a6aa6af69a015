"""Dense prediction over images larger than a network's input: overlapping tiles, blended.

:func:`predict_tiled` covers an ``(H, W[, C])`` image with ``tile × tile`` windows that
overlap by at least ``overlap`` pixels, calls a ``predict`` function on batches of them and
blends the ``(K, tile, tile)`` outputs into one ``(K, H, W)`` float32 map.

Layout: along each axis the first window starts at 0, the last ends at the image's edge
and the others are spread evenly between, so every window has the full size (an axis
shorter than ``tile`` is one window of that length) and neighbours overlap by ``overlap``
pixels or slightly more.

Blending: each window's output is weighted by a raised-cosine ramp over its first and last
``overlap`` pixels along each axis (weights from about 0 to 1), except on sides that touch
the image's edge, where the weight stays 1. The sum is divided by the summed weights, so a
constant ``predict`` gives that constant and an identity ``predict`` gives the image back
(up to float32 rounding), and a ``predict`` whose output jumps between windows is faded
smoothly from one window into the next. The weight of a window is a product of a row and a
column weight, and the windows form a grid, so the summed weights are an outer product of
two 1-D sums: no ``(H, W)`` weight image is stored.

Memory: the ``(K, H, W)`` float32 output, one float32 batch of windows going into
``predict`` and the batch it returns; the image itself is only read, window by window
(a 4000 × 4000 uint16 image with ``K = 1`` and the defaults peaks at about 70 MiB on top of
the image, 61 MiB of it the output).

The pixel values reach ``predict`` unchanged, as float32 (a uint16 image stays 0 … 65535);
normalising them is ``predict``'s job.

Example:
    >>> import numpy as np
    >>> from lensloop.tasks.tiling import predict_tiled
    >>> image = np.arange(700 * 900, dtype=np.uint16).reshape(700, 900) % 1000
    >>> out = predict_tiled(image, lambda batch: batch * 2, tile=256, overlap=32)
    >>> out.shape, bool(np.allclose(out[0], image * 2))
    ((1, 700, 900), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError, ImageError

__all__ = ["Predict", "predict_tiled", "tile_starts"]

Predict = Callable[[npt.NDArray[np.float32]], Any]
"""Maps float32 ``(B, C, th, tw)`` to an array-like ``(B, K, th, tw)`` (cast to float32)."""


def predict_tiled(
    image: npt.ArrayLike,
    predict: Predict,
    *,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    out_channels: int | None = None,
) -> npt.NDArray[np.float32]:
    """Run ``predict`` over overlapping tiles of ``image`` and blend the outputs.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of any real dtype; a 2-D image is passed
            to ``predict`` with ``C = 1``.
        predict: Called with float32 ``(B, C, th, tw)`` batches, ``B <= batch_size``,
            ``th = min(tile, H)``, ``tw = min(tile, W)``; returns ``(B, K, th, tw)``.
        tile: Side of the square windows, in pixels.
        overlap: Smallest overlap of neighbouring windows and width of the blending ramp,
            in pixels; ``0 <= overlap < tile``.
        batch_size: Windows per call of ``predict``.
        out_channels: ``K``, when known; checked against ``predict``'s first output.
            ``None`` takes it from that output.

    Returns:
        float32 ``(K, H, W)``.

    Raises:
        ConfigError: ``tile``, ``overlap``, ``batch_size`` or ``out_channels`` is out of
            range.
        ImageError: ``image`` is not 2-D or 3-D, or has no pixels.
        ValueError: ``predict`` returned an array of the wrong shape or a non-numeric one.
    """
    _check_int("tile", tile, minimum=1)
    _check_int("overlap", overlap, minimum=0)
    if overlap >= tile:
        raise ConfigError(
            f"overlap must be smaller than tile; received overlap={overlap}, tile={tile}; "
            "use an overlap of about an eighth of the tile (e.g. tile=512, overlap=64)"
        )
    _check_int("batch_size", batch_size, minimum=1)
    if out_channels is not None:
        _check_int("out_channels", out_channels, minimum=1)
    pixels = np.asarray(image)
    if pixels.ndim not in (2, 3):
        raise ImageError(f"image must be (H, W) or (H, W, C); received shape {pixels.shape}")
    if pixels.size == 0:
        raise ImageError(f"image has no pixels; received shape {pixels.shape}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    height, width, channels = pixels.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    # An axis no longer than the tile is one window; its overlap does not matter.
    overlap_h, overlap_w = min(overlap, tile_h - 1), min(overlap, tile_w - 1)
    rows = tile_starts(height, tile=tile_h, overlap=overlap_h)
    cols = tile_starts(width, tile=tile_w, overlap=overlap_w)
    row_weights = [_window(tile_h, overlap_h, i, len(rows)) for i in range(len(rows))]
    col_weights = [_window(tile_w, overlap_w, j, len(cols)) for j in range(len(cols))]
    positions = [(i, j) for i in range(len(rows)) for j in range(len(cols))]

    out: npt.NDArray[np.float32] | None = None
    if out_channels is not None:
        out = np.zeros((out_channels, height, width), dtype=np.float32)
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = np.empty((len(chunk), channels, tile_h, tile_w), dtype=np.float32)
        for k, (i, j) in enumerate(chunk):
            window = pixels[rows[i] : rows[i] + tile_h, cols[j] : cols[j] + tile_w]
            batch[k] = np.moveaxis(window, -1, 0)
        known = out_channels if out is None else out.shape[0]
        result = _as_output(predict(batch), len(chunk), tile_h, tile_w, known)
        del batch
        if out is None:
            out = np.zeros((result.shape[1], height, width), dtype=np.float32)
        for k, (i, j) in enumerate(chunk):
            weight = row_weights[i][:, np.newaxis] * col_weights[j][np.newaxis, :]
            region = out[:, rows[i] : rows[i] + tile_h, cols[j] : cols[j] + tile_w]
            region += result[k] * weight
    assert out is not None  # an image with pixels has at least one window
    out /= _weight_sum(height, tile_h, rows, row_weights)[np.newaxis, :, np.newaxis]
    out /= _weight_sum(width, tile_w, cols, col_weights)[np.newaxis, np.newaxis, :]
    return out


def tile_starts(length: int, *, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows covering ``length`` pixels, evenly spread.

    The first window starts at 0 and the last ends at ``length``; consecutive windows
    overlap by at least ``overlap`` pixels (and by less than ``overlap + 1`` more than the
    even spacing needs).

    Args:
        length: Pixels along the axis, at least 1.
        tile: Window length, ``1 <= tile <= length``.
        overlap: Smallest overlap, ``0 <= overlap < tile``.

    Returns:
        Ascending start offsets; ``[0]`` when ``tile == length``.

    Raises:
        ConfigError: An argument is out of range.
    """
    _check_int("length", length, minimum=1)
    _check_int("tile", tile, minimum=1)
    _check_int("overlap", overlap, minimum=0)
    if tile > length:
        raise ConfigError(f"tile must be at most length; received tile={tile}, length={length}")
    if overlap >= tile:
        raise ConfigError(
            f"overlap must be smaller than tile; received overlap={overlap}, tile={tile}"
        )
    if tile == length:
        return [0]
    count = 1 + math.ceil((length - tile) / (tile - overlap))
    # Floor division: gaps are floor or ceil of (length - tile) / (count - 1) <= tile - overlap.
    return [k * (length - tile) // (count - 1) for k in range(count)]


def _window(length: int, overlap: int, index: int, count: int) -> npt.NDArray[np.float32]:
    """1-D weights of window ``index`` of ``count``: raised-cosine ramps on inner sides."""
    weight = np.ones(length, dtype=np.float64)
    ramp_length = min(overlap, length)
    if ramp_length > 0:
        # Strictly between 0 and 1; a ramp and its mirror image sum to 1.
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
        if index > 0:
            weight[:ramp_length] *= ramp
        if index < count - 1:
            weight[length - ramp_length :] *= ramp[::-1]
    return weight.astype(np.float32)


def _weight_sum(
    length: int, tile: int, starts: list[int], weights: list[npt.NDArray[np.float32]]
) -> npt.NDArray[np.float32]:
    total = np.zeros(length, dtype=np.float32)
    for start, weight in zip(starts, weights, strict=True):
        total[start : start + tile] += weight
    return total


def _as_output(
    result: Any, batch: int, tile_h: int, tile_w: int, out_channels: int | None
) -> npt.NDArray[np.float32]:
    """Check and cast ``predict``'s output; ``out_channels`` is ``K`` once known."""
    try:
        array = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"predict must return a numeric (B, K, th, tw) array; received {type(result).__name__}"
        ) from exc
    expected = f"({batch}, {out_channels if out_channels is not None else 'K'}, {tile_h}, {tile_w})"
    if (
        array.ndim != 4
        or array.shape[0] != batch
        or array.shape[2:] != (tile_h, tile_w)
        or array.shape[1] < 1
        or (out_channels is not None and array.shape[1] != out_channels)
    ):
        raise ValueError(
            f"predict returned shape {array.shape} for a batch of {batch} tiles of "
            f"{tile_h}x{tile_w}; expected {expected}"
        )
    return array


def _check_int(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer; received {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; received {value}")
