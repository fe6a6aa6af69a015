"""Size limits checked before an image is read or decoded (decompression-bomb protection).

A small compressed file can declare a huge image (a "decompression bomb"): a 100 kB PNG
can ask for 10 gigapixels. lensloop reads the width and height from the file header and
refuses the image with :class:`~lensloop.errors.ImageTooLargeError` *before* any pixel data
are decoded. Pillow's own, lower, bomb check is kept out of the way (it would otherwise warn
or raise at 89 and 179 megapixels) so that this one limit is the only one that applies.

The limits come from :class:`lensloop.settings.Settings` (``LENSLOOP_MAX_IMAGE_PIXELS``,
``LENSLOOP_MAX_FILE_BYTES``); entry points build an :class:`ImageLimits` from them::

    limits = ImageLimits(max_pixels=settings.max_image_pixels,
                         max_file_bytes=settings.max_file_bytes)
"""

from __future__ import annotations

from dataclasses import dataclass

from lensloop.errors import ImageTooLargeError

__all__ = ["DEFAULT_LIMITS", "ImageLimits"]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The largest image lensloop decodes and the largest file it reads.

    Args:
        max_pixels: Largest number of pixels (width x height, summed over the pages that
            are decoded together) that may be decoded. Default 256 megapixels.
        max_file_bytes: Largest file, in bytes, that may be read. Default 4 GiB.

    Raises:
        ValueError: A limit is not a positive integer.

    Example:
        >>> ImageLimits(max_pixels=100).check_pixels(10, 10, name="ok.png")
        >>> ImageLimits(max_pixels=100).check_pixels(20, 10, name="big.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lensloop.errors.ImageTooLargeError: big.png: image is 20 x 10 = 200 pixels, ...
    """

    max_pixels: int = 256_000_000
    max_file_bytes: int = 4 * 1024**3

    def __post_init__(self) -> None:
        for field in ("max_pixels", "max_file_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")

    def check_file_size(self, n_bytes: int, *, name: str) -> None:
        """Refuse a file larger than :attr:`max_file_bytes`.

        Args:
            n_bytes: Size of the file in bytes.
            name: The file's name or URI, for the message.

        Raises:
            ImageTooLargeError: ``n_bytes`` is over the limit.
        """
        if n_bytes > self.max_file_bytes:
            raise ImageTooLargeError(
                f"{name}: file is {n_bytes:,} bytes, over the limit of "
                f"{self.max_file_bytes:,} bytes; if the file is trusted, raise the limit with "
                "LENSLOOP_MAX_FILE_BYTES (or ImageLimits(max_file_bytes=...))"
            )

    def check_pixels(self, width: int, height: int, *, name: str, n_pages: int = 1) -> None:
        """Refuse an image whose header declares more than :attr:`max_pixels` pixels.

        Call this with the header's size before decoding any pixel data.

        Args:
            width: Width in pixels, from the header.
            height: Height in pixels, from the header.
            name: The file's name or URI, for the message.
            n_pages: How many pages of this size are decoded together (``stack_pages``).

        Raises:
            ImageTooLargeError: ``width * height * n_pages`` is over the limit.
        """
        total = width * height * n_pages
        if total > self.max_pixels:
            pages = f" x {n_pages} pages" if n_pages != 1 else ""
            raise ImageTooLargeError(
                f"{name}: image is {width:,} x {height:,}{pages} = {total:,} pixels, over the "
                f"limit of {self.max_pixels:,} pixels (a possible decompression bomb); if the "
                "file is trusted, raise the limit with LENSLOOP_MAX_IMAGE_PIXELS "
                "(or ImageLimits(max_pixels=...))"
            )


DEFAULT_LIMITS = ImageLimits()
"""The limits used when a function is given ``limits=None``."""
