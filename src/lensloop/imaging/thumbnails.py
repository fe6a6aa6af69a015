"""Thumbnails: small 8-bit pictures of images, and a content-addressed cache of them."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lensloop.imaging._atomic import atomic_write
from lensloop.imaging.display import to_display
from lensloop.imaging.encode import encode_image

__all__ = ["THUMBNAIL_QUALITY", "ThumbnailCache", "make_thumbnail"]

THUMBNAIL_QUALITY = 90
"""JPEG quality of cached thumbnails."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer (pixels), got {size!r}")


def make_thumbnail(image: np.ndarray, *, size: int = 256) -> np.ndarray:
    """Make a small 8-bit picture of an image, keeping its aspect ratio.

    The image goes through :func:`~lensloop.imaging.to_display` (its default percentile
    stretch for non-``uint8`` data), then is shrunk with a Lanczos filter so that its
    longer side is ``size``. An image that is already small enough is not enlarged.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array, C in 1..4, any numeric dtype.
        size: Longest side of the thumbnail, in pixels.

    Returns:
        ``uint8`` array ``(h, w)`` (one channel) or ``(h, w, 3)``, ``max(h, w) <= size``.

    Raises:
        ValueError: ``size`` is not a positive integer, or ``image`` is not a valid image
            (see :func:`~lensloop.imaging.to_display`).
        TypeError: ``image`` is not a numeric array.

    Example:
        >>> import numpy as np
        >>> make_thumbnail(np.zeros((1000, 500, 3), np.uint8), size=100).shape
        (100, 50, 3)
    """
    _check_size(size)
    display = to_display(image)
    height, width = display.shape[:2]
    longest = max(height, width)
    if longest <= size:
        return display
    scale = size / longest
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    picture = Image.fromarray(display).resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.array(picture)


class ThumbnailCache:
    """Thumbnails on disk, keyed by the SHA-256 of the image file and the size.

    Files are sharded by the first two hex digits of the hash:
    ``root/<sha[:2]>/<sha>_<size>.jpg``. Every thumbnail is a JPEG of quality 90, gray
    thumbnails as one-channel JPEGs: the path must be known before the image is loaded,
    so it cannot depend on the image, and JPEG keeps a cache of millions of thumbnails
    small. Files are written atomically, so concurrent workers can share a cache.

    Args:
        root: The cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ThumbnailCache({str(self.root)!r})"

    def path_for(self, sha256: str, *, size: int) -> Path:
        """Where the thumbnail of an image of this hash and size is (or would be) stored.

        Args:
            sha256: Hex SHA-256 of the image file (64 characters, any case).
            size: Longest side of the thumbnail, in pixels.

        Returns:
            ``root/<sha[:2]>/<sha>_<size>.jpg`` with the hash in lower case.

        Raises:
            ValueError: ``sha256`` is not 64 hex digits, or ``size`` is not positive.
        """
        digest = sha256.lower() if isinstance(sha256, str) else ""
        if not _SHA256_RE.fullmatch(digest):
            raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
        _check_size(size)
        return self.root / digest[:2] / f"{digest}_{size}.jpg"

    def get_or_create(self, sha256: str, *, size: int, load: Callable[[], np.ndarray]) -> Path:
        """Return the cached thumbnail's path, making it first if it is not cached.

        Args:
            sha256: Hex SHA-256 of the image file.
            size: Longest side of the thumbnail, in pixels.
            load: Returns the full image as an array; called only on a cache miss.

        Returns:
            The path of the JPEG thumbnail.

        Raises:
            ValueError: ``sha256`` or ``size`` is invalid.
            OSError: The cache folder cannot be written.
        """
        path = self.path_for(sha256, size=size)
        if path.is_file():
            return path
        thumbnail = make_thumbnail(load(), size=size)
        data = encode_image(thumbnail, format="jpeg", quality=THUMBNAIL_QUALITY)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, overwrite=True, fsync=False)
        return path
