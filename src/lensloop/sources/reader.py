"""Read one source item: its bytes, their sha256 and a full decode.

This is the unit of work ingest runs in worker processes, so the module stays light: it
imports the imaging layer and nothing that touches the database, and a worker starts in
a fraction of a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from lensloop.errors import ImageError, LensloopError, MultiPageImageError
from lensloop.imaging import DecodedImage, ImageLimits, decode_image
from lensloop.sources.base import read_bytes
from lensloop.sources.remote import RemoteOptions, exists, is_remote, write_bytes

__all__ = [
    "PAGE_MODES",
    "Decoded",
    "Failed",
    "PagesMode",
    "ReadResult",
    "ReadTask",
    "Unchanged",
    "file_of",
    "page_sha256",
    "read_item",
    "read_stored_image",
]

_log = logging.getLogger(__name__)

PagesMode = Literal["each", "first", "stack"]
#: How multi-page files are read: every page as its own image, the first page only, or
#: all pages stacked as the channels of one image.
PAGE_MODES: tuple[PagesMode, ...] = ("each", "first", "stack")


@dataclass(frozen=True)
class ReadTask:
    """One file to read.

    Attributes:
        uri: Where the bytes are.
        known_sha256: The sha256 the catalog holds for this URI, if any: when the bytes
            still hash to it, the file is not decoded again.
        pages: How multi-page files are read.
        limits: Pixel and byte limits.
        remote: How remote URIs are reached (None: defaults, no cache).
        origin: For ``--store copy``: the remote image ``uri`` is a copy of. The copy is
            made when the origin's bytes decode, and reused when it already exists, so a
            re-run does not download again.
    """

    uri: str
    known_sha256: str | None
    pages: PagesMode
    limits: ImageLimits
    remote: RemoteOptions | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A decoded image (or page): what the catalog records about it; no pixels."""

    uri: str
    sha256: str
    page: int | None
    file_size: int
    format: str
    width: int
    height: int
    channels: int
    dtype: str
    bit_depth: int
    n_pages: int
    lat: float | None
    lon: float | None
    altitude: float | None
    captured_at: datetime | None


@dataclass(frozen=True)
class Failed:
    """A file that could not be read or decoded, with the reason."""

    uri: str
    reason: str


@dataclass(frozen=True)
class Unchanged:
    """A file whose URI and content are already in the catalog."""

    uri: str
    sha256: str


ReadResult = Decoded | Failed | Unchanged


def file_of(uri: str) -> str:
    """Return the file a catalog URI points at (``file.tif#page=2`` -> ``file.tif``)."""
    return uri.split("#page=")[0]


def page_sha256(file_sha256: str, page: int) -> str:
    """Return the dedupe key of one page of a multi-page file."""
    return hashlib.sha256(f"{file_sha256}#page={page}".encode()).hexdigest()


def _record(uri: str, sha: str, page: int | None, size: int, image: DecodedImage) -> Decoded:
    info, exif = image.info, image.exif
    return Decoded(
        uri=uri,
        sha256=sha,
        page=page,
        file_size=size,
        format=info.format,
        width=info.width,
        height=info.height,
        channels=info.channels,
        dtype=info.dtype,
        bit_depth=info.bit_depth,
        n_pages=info.n_pages,
        lat=exif.latitude,
        lon=exif.longitude,
        altitude=exif.altitude,
        captured_at=exif.captured_at,
    )


def _copy(task: ReadTask, data: bytes) -> None:
    """Write the copy of ``task.origin`` (a copy made meanwhile by another worker is kept)."""
    try:
        write_bytes(task.uri, data, task.remote)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OSError(f"cannot copy {task.origin} to {task.uri}: {exc}") from exc


def read_item(task: ReadTask) -> list[ReadResult]:
    """Read, hash and fully decode one file.

    Never raises for a bad file: the problem comes back as :class:`Failed` with the
    reason, so one bad file cannot stop a long ingest.

    Returns:
        One result, or one :class:`Decoded` per page for a multi-page file read with
        ``pages="each"`` (URI ``file.tif#page=N``, sha256 from :func:`page_sha256`).
    """
    uri = task.uri
    try:
        to_copy = task.origin is not None and not exists(uri, task.remote)
        source = task.origin if to_copy and task.origin is not None else uri
        if not is_remote(source):
            task.limits.check_file_size(os.stat(source).st_size, name=source)
        data = read_bytes(source, task.remote)
        task.limits.check_file_size(len(data), name=uri)
        sha = hashlib.sha256(data).hexdigest()
        if sha == task.known_sha256:
            if to_copy:
                _copy(task, data)  # the copy was removed since it was ingested
            return [Unchanged(uri, sha)]
        results = _decode(task, data, sha)
        if to_copy:
            _copy(task, data)  # only images that decode are copied
        return results
    except (ImageError, LensloopError) as exc:
        return [Failed(uri, str(exc))]
    except OSError as exc:
        return [Failed(uri, f"cannot read file: {exc.strerror or exc}")]
    except Exception as exc:  # a decoder bug must not stop a long ingest
        _log.exception("unexpected error while reading %s", uri)
        return [Failed(uri, f"unexpected {type(exc).__name__}: {exc}")]


def _decode(task: ReadTask, data: bytes, sha: str) -> list[ReadResult]:
    uri = task.uri
    stack = task.pages == "stack"
    try:
        image = decode_image(data, stack_pages=stack, limits=task.limits, name=uri)
        return [_record(uri, sha, None, len(data), image)]
    except MultiPageImageError as exc:
        if task.pages == "first":
            image = decode_image(data, page=0, limits=task.limits, name=uri)
            return [_record(uri, sha, None, len(data), image)]
        results: list[ReadResult] = []
        for page in range(exc.n_pages):
            image = decode_image(data, page=page, limits=task.limits, name=uri)
            page_uri = f"{uri}#page={page}"
            results.append(_record(page_uri, page_sha256(sha, page), page, len(data), image))
        return results


def read_stored_image(
    uri: str,
    *,
    page: int | None,
    pages: str | None,
    limits: ImageLimits,
    remote: RemoteOptions | None = None,
) -> np.ndarray:
    """Read the pixels of an image the catalog holds, the way it was ingested.

    Args:
        uri: The catalog URI (``file.tif#page=N`` for one page of a multi-page file).
        page: The catalog's page number, if any.
        pages: How a multi-page file was ingested (``"first"``, ``"stack"``), if it was.
        limits: Pixel and byte limits.
        remote: How remote URIs are reached.

    Returns:
        The image ``(H, W[, C])`` in its native dtype.

    Raises:
        ImageError: The file can no longer be decoded.
        OSError: The file can no longer be read.
    """
    decoded = decode_image(
        read_bytes(file_of(uri), remote),
        page=page if page is not None else (0 if pages == "first" else None),
        stack_pages=pages == "stack",
        limits=limits,
        name=uri,
    )
    return decoded.array
