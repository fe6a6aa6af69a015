"""Decode images with Pillow, keeping the stored sample values.

Pillow decodes PNG (up to 8 bits per colour sample, and 16-bit grayscale), JPEG, BMP, GIF
and WebP here.

Pillow's format plugins are used directly (not :func:`PIL.Image.open`): the format is
already known from the first bytes, and skipping ``Image.open`` skips its global
decompression-bomb check, which lensloop replaces with its own (see
:mod:`lensloop.imaging.limits`). GIF and WebP still run Pillow's check inside the plugin;
there it is silenced or turned into :class:`~lensloop.errors.ImageTooLargeError`. Pillow's
warnings (about damaged metadata, for example) are logged at debug level, not passed on.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
)

from lensloop.errors import ImageTooLargeError, UnsupportedImageError
from lensloop.imaging._containers import PngHeader
from lensloop.imaging.exif import ExifData, exif_from_block
from lensloop.imaging.info import ImageInfo

__all__ = ["PillowReader"]

logger = logging.getLogger(__name__)

_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "png": PngImagePlugin.PngImageFile,
    "jpeg": JpegImagePlugin.JpegImageFile,  # the primary image only, also for MPO files
    "bmp": BmpImagePlugin.BmpImageFile,
    "gif": GifImagePlugin.GifImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
}

# Pillow mode -> (dtype, channels, bits per sample) of the array lensloop returns.
_MODES: dict[str, tuple[str, int, int]] = {
    "1": ("uint8", 1, 1),  # bilevel: 0 and 1, not 0 and 255
    "L": ("uint8", 1, 8),
    "LA": ("uint8", 2, 8),
    "RGB": ("uint8", 3, 8),
    "RGBA": ("uint8", 4, 8),
    "CMYK": ("uint8", 4, 8),
    "I;16": ("uint16", 1, 16),
    "I;16L": ("uint16", 1, 16),
    "I;16B": ("uint16", 1, 16),
    "I;16N": ("uint16", 1, 16),
    "I": ("int32", 1, 32),
    "F": ("float32", 1, 32),
}
# Pillow expands 2- and 4-bit grayscale PNG samples to 0..255; this undoes it exactly.
_LOW_DEPTH_SCALE = {2: 85, 4: 17}


@contextmanager
def _pillow_guard(name: str) -> Iterator[None]:
    """Keep Pillow's warnings and bomb check away from the caller.

    Pillow warns about damaged metadata (e.g. "Corrupt EXIF data" while a JPEG is opened)
    and about images over its own pixel threshold; the pixels are still fine, so the
    warnings are recorded and logged at debug level instead of reaching the caller's
    warning filters (where they may be errors). Pillow's hard bomb limit becomes
    ImageTooLargeError.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                f"{name}: the image is larger than Pillow's own hard limit for this format "
                f"({exc}); lensloop cannot decode it"
            ) from exc
    for warning in caught:
        logger.debug("%s: Pillow warning: %s", name, warning.message)


class PillowReader:
    """Pages of an image that Pillow decodes.

    Palette images (modes ``P`` and ``PA``) are converted to RGB, or RGBA when the palette
    has transparency; bilevel images become ``uint8`` 0/1; 2- and 4-bit grayscale PNG
    samples keep their stored values (0..3, 0..15). Colour-key transparency (``tRNS`` on
    gray or RGB images) is not turned into an alpha channel.

    Args:
        data: The whole file.
        fmt: ``"png"``, ``"jpeg"``, ``"bmp"``, ``"gif"`` or ``"webp"``.
        name: The file's name, for messages.
        png: The PNG header when ``fmt`` is ``"png"``.
    """

    def __init__(self, data: bytes, *, fmt: str, name: str, png: PngHeader | None) -> None:
        self._fmt = fmt
        self._name = name
        self._png = png
        with _pillow_guard(name):
            self._image = _PLUGINS[fmt](io.BytesIO(data))
            self.n_pages: int = getattr(self._image, "n_frames", 1)

    @property
    def _gray_png_depth(self) -> int | None:
        """The bit depth of a grayscale PNG (without alpha), else None."""
        if self._png is not None and self._png.color_type == 0:
            return self._png.bit_depth
        return None

    def _seek(self, page: int) -> None:
        if page != self._image.tell():
            with _pillow_guard(self._name):
                self._image.seek(page)

    def _target_mode(self) -> str:
        """The Pillow mode the current frame is converted to before it becomes an array."""
        mode = self._image.mode
        if mode == "P":
            return "RGBA" if "transparency" in self._image.info else "RGB"
        if mode == "PA":
            return "RGBA"
        if mode not in _MODES:
            raise UnsupportedImageError(
                f"{self._name}: {self._fmt.upper()} image mode {mode!r} is not supported"
            )
        return mode

    def info(self, page: int) -> ImageInfo:
        """Describe one page from its header, without decoding it."""
        self._seek(page)
        target = self._target_mode()
        dtype, channels, bit_depth = _MODES[target]
        if self._gray_png_depth is not None:
            bit_depth = self._gray_png_depth
            if bit_depth == 16:
                dtype = "uint16"  # older Pillow versions open these as mode "I" (int32)
        width, height = self._image.size
        return ImageInfo(self._fmt, width, height, channels, dtype, bit_depth, self.n_pages)

    def read(self, page: int) -> np.ndarray:
        """Decode one page to ``(H, W)`` or ``(H, W, C)`` in its native dtype."""
        self._seek(page)
        image: Image.Image = self._image
        with _pillow_guard(self._name):
            image.load()
            target = self._target_mode()
            if image.mode != target:
                image = image.convert(target)
        array = np.array(image)  # a writable copy (np.asarray would be read-only)
        if array.dtype == np.bool_:
            return array.astype(np.uint8)  # Pillow's bool array may hold 255 bytes
        if self._gray_png_depth == 16:
            return array.astype(np.uint16, copy=False)
        if not array.dtype.isnative:
            return array.astype(array.dtype.newbyteorder("="))
        scale = _LOW_DEPTH_SCALE.get(self._gray_png_depth or 0)
        if scale is not None:
            array //= scale
        return array

    def exif(self) -> ExifData:
        """The EXIF of the file (read from the headers Pillow has parsed)."""
        raw = self._image.info.get("exif")
        return exif_from_block(raw) if isinstance(raw, bytes) else ExifData()

    def close(self) -> None:
        """Release the decoded pixels."""
        self._image.close()
