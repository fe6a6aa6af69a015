"""The seam every ingest source implements, and the registry of source formats.

A source *discovers* items (one per file or object) and says which files it passed over;
the ingest pipeline reads, hashes and decodes the items. Adding a format (FlowCam, S3, a
taxonomy catalogue) means one module with a discovery function and one line in
:data:`SOURCE_FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lensloop.errors import SourceError, UnknownNameError

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCE_FORMATS",
    "DiscoverFn",
    "Discovery",
    "SourceItem",
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
    """

    uri: str
    class_path: tuple[str, ...] = ()


@dataclass
class Discovery:
    """What a source found: items to ingest and files passed over (with why)."""

    items: list[SourceItem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


DiscoverFn = Callable[[Sequence[str | Path]], Discovery]


def read_bytes(uri: str) -> bytes:
    """Read an item's bytes.

    Raises:
        OSError: The file cannot be read (the caller records the reason).
        SourceError: The URI scheme is not one this version reads.
    """
    if "://" in uri:
        raise SourceError(f"cannot read {uri!r}: only local files are supported so far")
    with open(uri, "rb") as handle:
        return handle.read()


def _folder(sources: Sequence[str | Path]) -> Discovery:
    from lensloop.sources.folder import discover_files

    return discover_files(sources)


#: Registry of source formats: name -> discovery function.
SOURCE_FORMATS: dict[str, DiscoverFn] = {"folder": _folder}


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
