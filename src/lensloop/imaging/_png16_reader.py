"""Decode 16-bit colour PNGs (RGB, RGBA, gray + alpha) without losing their low byte.

Pillow has no 16-bit colour modes and silently reduces these images to 8 bits, so they are
decoded with libpng through imagecodecs (fast), or with pypng for interlaced files (which
imagecodecs decodes correctly but with a warning printed by libpng).
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import png as pypng

from lensloop.errors import UnsupportedImageError
from lensloop.imaging._containers import PngHeader, find_png_exif, png_has_chunk_before_idat
from lensloop.imaging.exif import ExifData, exif_from_block
from lensloop.imaging.info import ImageInfo

__all__ = ["Png16Reader"]


class Png16Reader:
    """The single page of a 16-bit RGB, RGBA or gray + alpha PNG, as ``uint16``.

    Colour-key transparency (``tRNS``) is not turned into an alpha channel, as for the
    images Pillow decodes.

    Args:
        data: The whole file.
        name: The file's name, for messages.
        png: Its header; bit depth 16 and colour type 2, 4 or 6.

    Raises:
        UnsupportedImageError: The file is an animated PNG.
    """

    n_pages = 1

    def __init__(self, data: bytes, *, name: str, png: PngHeader) -> None:
        self._data = data
        self._name = name
        self._png = png
        if png_has_chunk_before_idat(data, b"acTL"):
            raise UnsupportedImageError(
                f"{name}: animated 16-bit colour PNGs are not supported; save the frames "
                "as separate files or as a multi-page TIFF"
            )

    def info(self, page: int) -> ImageInfo:
        """Describe the image from its header."""
        del page  # always 0: the caller has checked it against n_pages
        channels = {2: 3, 4: 2, 6: 4}[self._png.color_type]
        return ImageInfo("png", self._png.width, self._png.height, channels, "uint16", 16, 1)

    def read(self, page: int) -> np.ndarray:
        """Decode the image to ``(H, W, C)`` ``uint16``."""
        info = self.info(page)
        if self._png.interlaced:
            width, height, pixels, _ = pypng.Reader(bytes=self._data).read_flat()
            array = np.array(pixels, dtype=np.uint16).reshape(height, width, -1)
        else:
            array = np.asarray(imagecodecs.png_decode(self._data))
            if array.ndim == 3 and array.shape[2] == info.channels + 1:
                array = array[..., : info.channels]  # libpng's alpha made from tRNS
        if array.shape != info.shape or array.dtype != np.uint16:
            raise UnsupportedImageError(
                f"{self._name}: PNG decodes to {array.dtype} {array.shape}, not the uint16 "
                f"{info.shape} its header declares"
            )
        return np.ascontiguousarray(array)

    def exif(self) -> ExifData:
        """The EXIF block of the ``eXIf`` chunk, if any."""
        try:
            return exif_from_block(find_png_exif(self._data))
        except ValueError:
            return ExifData()

    def close(self) -> None:
        """Nothing to release."""
