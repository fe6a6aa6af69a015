"""What an image file holds, as read from its header: :class:`ImageInfo`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImageInfo"]


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The size and sample layout of one page of an image, as lensloop decodes it.

    The fields describe the array that :func:`~lensloop.imaging.decode_image` returns for
    the page, so that ``info`` from :func:`~lensloop.imaging.probe_image` (header only)
    matches ``decode_image(...).info``.

    Attributes:
        format: Container format: ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"gif"`` or
            ``"webp"``.
        width: Width in pixels.
        height: Height in pixels.
        channels: Samples per pixel of the decoded array: 1 for ``(H, W)``, else C in 2..4
            for ``(H, W, C)``. Palette images count their RGB(A) channels.
        dtype: NumPy dtype name of the decoded array, e.g. ``"uint8"``, ``"uint16"``,
            ``"int32"``, ``"float32"``.
        bit_depth: Significant bits per sample as the file declares them: 12 for a 12-bit
            TIFF even though its samples are held in ``uint16``; 1, 2 or 4 for bilevel and
            low-depth grayscale PNGs (held in ``uint8``); 8 for palette images (the depth of
            the palette entries, 16 for TIFF colour maps).
        n_pages: Pages (TIFF) or frames (GIF, APNG, WebP) in the file; 1 for most images.
    """

    format: str
    width: int
    height: int
    channels: int
    dtype: str
    bit_depth: int
    n_pages: int = 1

    @property
    def shape(self) -> tuple[int, int] | tuple[int, int, int]:
        """The decoded array's shape: ``(H, W)`` or ``(H, W, C)``."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)
