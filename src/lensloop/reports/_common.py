"""Helpers the figure modules share.

The PNG path check, names cut to fit and line height; and, for the figures drawn with
Pillow over an image (:mod:`~lensloop.reports.counting`,
:mod:`~lensloop.reports.segmentation`), the image and ``max_side`` checks, the caption
font size, the picture's size, the image scaled into it, and text cut to a width. Pillow
and :mod:`lensloop.imaging` are imported inside :func:`picture`, so importing this module
costs NumPy only.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Font",
    "block_mean",
    "check_image",
    "check_max_side",
    "fit_text",
    "font_px",
    "line_px",
    "picture",
    "picture_size",
    "png_path",
    "shorten",
]

Font: TypeAlias = "ImageFont.ImageFont | ImageFont.FreeTypeFont"
"""A Pillow font, as :func:`PIL.ImageFont.load_default` gives it."""

_MIN_MAX_SIDE: Final = 256
_MIN_SIDE: Final = 512
"""Images smaller than this are enlarged by a whole factor (nearest neighbour) to be seen."""
_CHUNK: Final = 1 << 22
"""Input elements converted to float at a time when an image is block-averaged down."""


def png_path(path: Path | str, what: str) -> Path:
    """``path`` as a Path, refused unless it ends in ``.png`` (``what`` names the figure)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"the {what} is written as PNG; got path {path}, give it a .png suffix")
    return path


def shorten(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` characters with an ellipsis."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def line_px(font_px: int) -> int:
    """Height of a text line for a font of ``font_px`` pixels."""
    return font_px + font_px // 3 + 1


def check_image(image: npt.ArrayLike) -> np.ndarray:
    """The image as an ``(H, W, C)`` view with C in 1..3 (more channels: the first three).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of a boolean, integer or float dtype.

    Returns:
        A view of ``image`` with a channel axis, at most three channels.

    Raises:
        TypeError: ``image`` is not of a boolean, integer or float dtype.
        ValueError: ``image`` is not a non-empty 2-D or 3-D array.
    """
    pixels = np.asarray(image)
    if pixels.dtype.kind not in "buif":
        raise TypeError(f"image must have a boolean, integer or float dtype; got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ValueError(
            f"image must be a non-empty (H, W) or (H, W, C) array; got shape {pixels.shape}"
        )
    return pixels[:, :, :3]


def check_max_side(max_side: int) -> None:
    """Refuse a ``max_side`` that is not an integer of at least 256 pixels.

    Args:
        max_side: Largest width and height of a figure in pixels.

    Raises:
        ValueError: ``max_side`` is not an integer, or is under 256.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, numbers.Integral):
        raise ValueError(f"max_side must be an integer number of pixels; got {max_side!r}")
    if max_side < _MIN_MAX_SIDE:
        raise ValueError(f"max_side must be at least {_MIN_MAX_SIDE} pixels; got {max_side}")


def font_px(height: int, width: int, max_side: int) -> int:
    """Caption font size: about 1/48 of the picture's longer side, 11 to 32 pixels.

    Args:
        height: The image's height in pixels.
        width: The image's width in pixels.
        max_side: Largest width and height of the figure in pixels.

    Returns:
        The font size in pixels.
    """
    side = min(max_side, max(height, width, _MIN_SIDE))
    return int(np.clip(round(side / 48), 11, 32))


def block_mean(pixels: np.ndarray, rows_per: int, cols_per: int) -> np.ndarray:
    """Average ``rows_per`` x ``cols_per`` blocks, converting a strip of rows at a time.

    The last rows and columns that do not fill a block are left out. uint8 and bool
    images stay uint8 (bool as 0 and 255), so :func:`~lensloop.imaging.to_display` shows
    them unstretched; other dtypes give float32 (float64 for 64-bit input).

    Args:
        pixels: ``(H, W, C)`` image.
        rows_per: Rows per block.
        cols_per: Columns per block.

    Returns:
        The ``(H // rows_per, W // cols_per, C)`` block means.
    """
    height, width, channels = pixels.shape
    rows, cols = height // rows_per, width // cols_per
    work = np.dtype(np.float64) if pixels.dtype.itemsize > 4 else np.dtype(np.float32)
    out = np.empty((rows, cols, channels), work)
    step = max(1, _CHUNK // (rows_per * cols_per * cols * channels))  # output rows per strip
    for top in range(0, rows, step):
        bottom = min(rows, top + step)
        strip = pixels[top * rows_per : bottom * rows_per, : cols * cols_per].astype(work)
        blocks = strip.reshape(bottom - top, rows_per, cols, cols_per, channels)
        out[top:bottom] = blocks.mean(axis=(1, 3))
    if pixels.dtype == np.bool_:
        out *= 255.0
    if pixels.dtype in (np.bool_, np.uint8):
        return np.rint(out).astype(np.uint8)
    return out


def picture(pixels: np.ndarray, size: tuple[int, int]) -> tuple[Image.Image, tuple[float, float]]:
    """The image as an RGB picture of ``size`` ``(w, h)``, and the ``(x, y)`` scale factors.

    A point ``(x, y)`` of the image lies at ``(x * sx, y * sy)`` in the picture (both in
    continuous pixel coordinates, the top-left corner at 0). An image at least twice as
    wide or tall as the picture is block-averaged first, in its native values and a strip
    at a time, so no full-size float or 8-bit copy of a large image is ever made.

    Args:
        pixels: ``(H, W, C)`` image, as :func:`check_image` gives it.
        size: ``(w, h)`` of the picture, as :func:`picture_size` gives it.

    Returns:
        The picture and the ``(sx, sy)`` scale factors.
    """
    from PIL import Image

    from lensloop.imaging import to_display

    height, width = pixels.shape[:2]
    out_w, out_h = size
    if out_w > width:  # a whole enlargement factor, nearest neighbour: pixels stay sharp
        rgb = Image.fromarray(to_display(pixels)).convert("RGB")
        rgb = rgb.resize((out_w, out_h), Image.Resampling.NEAREST)
        return rgb, (out_w / width, out_h / height)
    rows_per, cols_per = height // out_h, width // out_w
    if rows_per > 1 or cols_per > 1:
        pixels = block_mean(pixels, rows_per, cols_per)
    shown_h, shown_w = pixels.shape[0] * rows_per, pixels.shape[1] * cols_per
    rgb = Image.fromarray(to_display(pixels)).convert("RGB")
    if rgb.size != (out_w, out_h):
        rgb = rgb.resize((out_w, out_h), Image.Resampling.LANCZOS)
    return rgb, (out_w / shown_w, out_h / shown_h)


def picture_size(height: int, width: int, max_side: int, band: int) -> tuple[int, int]:
    """``(w, h)`` of the picture: the image fitted into ``max_side`` under the caption band.

    Args:
        height: The image's height in pixels.
        width: The image's width in pixels.
        max_side: Largest width and height of the figure in pixels, band included.
        band: Height of the caption band above the picture in pixels.

    Returns:
        The picture's width and height in pixels.
    """
    fit = min(max_side / width, (max_side - band) / height)
    if fit < 1:
        out_w = min(max_side, max(1, round(width * fit)))
        out_h = min(max_side - band, max(1, round(height * fit)))
        return out_w, out_h
    factor = max(1, min(math.ceil(_MIN_SIDE / max(height, width)), math.floor(fit)))
    return width * factor, height * factor


def fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> str:
    """``text`` cut from the end with an ellipsis until it fits ``width`` pixels.

    Args:
        draw: Where the text will be drawn (it measures the text).
        text: The text.
        font: The font it is drawn in.
        width: Room for it in pixels.

    Returns:
        ``text`` as it is, or cut and ending in ``...``.
    """
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
