"""The seam every ingest source implements, and the registry of source formats.

A source *discovers* items (one per file or object) and says which files it passed over;
the ingest pipeline reads, hashes and decodes the items. Adding a format (FlowCam, S3, a
taxonomy catalogue) means one module with a discovery function and one line in
:data:`SOURCE_FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lensloop.errors import UnknownNameError
from lensloop.executors import Executor, LocalExecutor
from lensloop.sources.remote import RemoteOptions, fetch_bytes, is_remote

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCE_FORMATS",
    "DiscoverFn",
    "Discovery",
    "SourceContext",
    "SourceItem",
    "StoreMode",
    "get_source_format",
    "list_source_formats",
    "read_bytes",
]

#: File name suffixes treated as images when walking folders (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"})


@dataclass(frozen=True)
class SourceItem:
    """One file to ingest.

    Attributes:
        uri: Where the bytes are: an absolute local path (POSIX form) for local files.
        class_path: The folder levels between the source root and the file, used as the
            label (``("Bacillariophyceae", "Chaetoceros")``) with ``--labels-from-folders``;
            empty for a file directly in the root or given on its own.
        label: A class path the source itself states (a taxonomy catalogue's hierarchy);
            recorded as the image's label whatever ``--labels-from-folders`` says.
        sample: The sample the image belongs to (a FlowCam run), by name.
        meta: Metadata the source knows about this one image (a FlowCam ``.lst`` row);
            JSON-serialisable.
        lat: Latitude the source states (wins over the file's EXIF).
        lon: Longitude the source states.
        captured_at: Capture time the source states.
    """

    uri: str
    class_path: tuple[str, ...] = ()
    label: tuple[str, ...] | None = None
    sample: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None
    captured_at: datetime | None = None


@dataclass
class Discovery:
    """What a source found.

    Attributes:
        items: Items to ingest.
        skipped: Files passed over, with why.
        samples: Metadata of the samples the items belong to, by sample name (merged into
            the catalog's samples).
        counts: Other things worth reporting, by name (``{"blank collage pages": 3}``).
    """

    items: list[SourceItem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


StoreMode = Literal["reference", "copy"]


@dataclass(frozen=True)
class SourceContext:
    """What a source may use besides its arguments.

    Attributes:
        root: The project folder.
        output: Where a source writes images it derives (FlowCam crops, copies of remote
            images): a local folder or an ``s3://bucket/prefix``.
        cache_dir: Where downloads are cached.
        remote: How remote URIs are reached.
        store: ``reference`` keeps remote images where they are (their URI goes into the
            catalog); ``copy`` copies them to ``output`` first.
        sample_pattern: How a folder name gives sample metadata (FlowCam), or None for
            the format's default.
        concurrency: Downloads in flight at once (taxonomy catalogues).
        executor: Where shards of work run (FlowCam slicing).
    """

    root: Path
    output: str
    cache_dir: Path
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    store: StoreMode = "reference"
    sample_pattern: str | None = None
    concurrency: int = 4
    executor: Executor = field(default_factory=LocalExecutor)


DiscoverFn = Callable[[Sequence[str | Path], SourceContext], Discovery]


def read_bytes(uri: str, remote: RemoteOptions | None = None) -> bytes:
    """Read an item's bytes: a local file, or a remote object through the cache.

    Raises:
        OSError: The file or object cannot be read (the caller records the reason).
    """
    if is_remote(uri):
        return fetch_bytes(uri, remote)
    with open(uri, "rb") as handle:
        return handle.read()


def _folder(sources: Sequence[str | Path], context: SourceContext) -> Discovery:
    from lensloop.sources.folder import discover_files

    return discover_files(sources, remote=context.remote)


def _flowcam(sources: Sequence[str | Path], context: SourceContext) -> Discovery:
    from lensloop.sources.flowcam import discover_flowcam

    return discover_flowcam(sources, context)


def _taxonomy(sources: Sequence[str | Path], context: SourceContext) -> Discovery:
    from lensloop.sources.taxonomy import discover_taxonomy

    return discover_taxonomy(sources, context)


#: Registry of source formats: name -> discovery function.
SOURCE_FORMATS: dict[str, DiscoverFn] = {
    "folder": _folder,
    "flowcam": _flowcam,
    "taxonomy": _taxonomy,
}


def get_source_format(name: str) -> DiscoverFn:
    """Return the discovery function of a source format.

    Raises:
        UnknownNameError: No format of that name; the message lists the valid ones.
    """
    try:
        return SOURCE_FORMATS[name]
    except KeyError:
        raise UnknownNameError("source format", name, list(SOURCE_FORMATS)) from None


def list_source_formats() -> list[str]:
    """Return the names of the registered source formats."""
    return sorted(SOURCE_FORMATS)
