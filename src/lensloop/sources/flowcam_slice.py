"""Cut the particles of one FlowCam collage out as image files: the executor's task.

:func:`slice_one_collage` over a :class:`SliceJob` is what an executor runs, one collage
per task; both are top-level and picklable, and the job carries everything the task
needs (the collage's path, the boxes, where to write, the EXIF, the remote options), so
a Dask worker can run it with nothing else. Crops are lossless (PNG for 8- and 16-bit
collages, TIFF for other dtypes) and never overwrite a different file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lensloop.errors import ImageError
from lensloop.imaging import ExifData
from lensloop.sources.remote import RemoteOptions, is_remote, protocol_of, write_bytes

__all__ = ["Particle", "SliceJob", "SliceResult", "slice_one_collage"]


@dataclass(frozen=True)
class Particle:
    """One particle's box on its collage.

    Attributes:
        stem: The crop's file name without suffix (the particle id).
        page: The collage page, from 0.
        x: Left edge, pixels from 0.
        y: Top edge, pixels from 0.
        w: Width in pixels.
        h: Height in pixels.
    """

    stem: str
    page: int
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class SliceJob:
    """Everything needed to cut the particles out of one collage file (picklable).

    Attributes:
        collage: The collage TIFF (local path).
        n_pages: Its number of pages.
        particles: The boxes on it.
        folder: Where the crops go: a local folder or ``s3://bucket/prefix/sample``.
        exif: Position and date written into every crop.
        remote: How a remote ``folder`` is reached.
    """

    collage: str
    n_pages: int
    particles: tuple[Particle, ...]
    folder: str
    exif: ExifData
    remote: RemoteOptions = field(default_factory=RemoteOptions)


@dataclass(frozen=True)
class SliceResult:
    """What :func:`slice_one_collage` did.

    Attributes:
        collage: The collage file.
        uris: The crop of each particle of the job, in order; None where it was not
            written.
        reasons: Why a particle has no crop (None where it has one).
        blank_pages: Pages skipped as blank (no boxes, or uniform pixels).
        written: Crops written now.
        reused: Crops found already written with the same bytes.
    """

    collage: str
    uris: tuple[str | None, ...]
    reasons: tuple[str | None, ...]
    blank_pages: int
    written: int
    reused: int


def _existing(uri: str, remote: RemoteOptions) -> bytes | None:
    if not is_remote(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            return None
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **remote.storage_options(protocol_of(uri)))
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        return None
    except OSError:
        raise
    except Exception as exc:  # botocore / aiohttp errors are not OSErrors
        raise OSError(f"cannot check {uri}: {type(exc).__name__}: {exc}") from exc
    return data


def _store(uri: str, data: bytes, remote: RemoteOptions) -> Literal["written", "reused"] | str:
    """Write a crop unless it exists; return written, reused, or why it was not written."""
    if is_remote(uri):
        existing = _existing(uri, remote)
        if existing is None:
            write_bytes(uri, data, remote)
            return "written"
    else:
        try:
            write_bytes(uri, data, remote)
            return "written"
        except FileExistsError:
            existing = _existing(uri, remote)
            if existing is None:  # removed meanwhile
                write_bytes(uri, data, remote)
                return "written"
    if existing == data:
        return "reused"
    return (
        f"a different file already exists at {uri}; lensloop never overwrites a crop: move "
        "it away, or ingest into another --output"
    )


def _encode(crop: Any, exif: ExifData) -> tuple[bytes, str]:
    from lensloop.imaging import encode_image

    if crop.dtype.name in ("uint8", "uint16"):
        return encode_image(crop, format="png", exif=exif), ".png"
    return encode_image(crop, format="tiff", exif=exif), ".tif"


def slice_one_collage(job: SliceJob) -> SliceResult:
    """Cut every particle of one collage out as its own image file.

    Each crop holds exactly the pixels of its box in the collage's dtype, and the job's
    EXIF. A page with no boxes is counted blank without being decoded; a page of one
    uniform colour is counted blank and its particles are reported, not written. A page
    that cannot be decoded reports its particles with the decoder's reason.

    Args:
        job: The collage, its boxes, where to write and the EXIF to write.

    Returns:
        The crop of each particle (or why there is none) and the counts.

    Raises:
        OSError: A crop cannot be written (output folder not writable, endpoint down).
    """
    import numpy as np

    from lensloop.imaging import decode_image

    uris: list[str | None] = [None] * len(job.particles)
    reasons: list[str | None] = [None] * len(job.particles)
    by_page: dict[int, list[int]] = {}
    for index, particle in enumerate(job.particles):
        by_page.setdefault(particle.page, []).append(index)
    blank = sum(1 for page in range(job.n_pages) if page not in by_page)
    written = reused = 0
    data: bytes | None = None
    folder = job.folder.rstrip("/")
    for page, indices in sorted(by_page.items()):
        try:
            if data is None:
                data = Path(job.collage).read_bytes()
            array = decode_image(data, page=page, name=job.collage).array
        except (OSError, ImageError) as exc:
            for index in indices:
                reasons[index] = f"cannot read collage {job.collage} page {page}: {exc}"
            continue
        if bool(np.all(array == array.flat[0])):
            blank += 1
            for index in indices:
                reasons[index] = (
                    f"collage {job.collage} page {page} is blank (every pixel the same); "
                    "no particle image to cut"
                )
            continue
        for index in indices:
            p = job.particles[index]
            crop = array[p.y : p.y + p.h, p.x : p.x + p.w]
            encoded, suffix = _encode(crop, job.exif)
            uri = f"{folder}/{p.stem}{suffix}"
            outcome = _store(uri, encoded, job.remote)
            if outcome == "written":
                written += 1
            elif outcome == "reused":
                reused += 1
            else:
                reasons[index] = outcome
                continue
            uris[index] = uri
    return SliceResult(job.collage, tuple(uris), tuple(reasons), blank, written, reused)
