"""Local files and folders, including ImageFolder layouts (class = folder name).

Folders are walked recursively in sorted order. Files with an image suffix
(:data:`~lensloop.sources.base.IMAGE_SUFFIXES`) become items; other files found while
walking are reported as skipped, and hidden files and folders (``.DS_Store``, ``.git``) are
ignored. A file named on its own is always tried, whatever its suffix, so a mislabelled
image is reported with the decoder's reason rather than passed over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from lensloop.errors import SourceError
from lensloop.sources.base import IMAGE_SUFFIXES, Discovery, SourceItem

__all__ = ["discover_files"]


def _walk(root: Path, rel: tuple[str, ...]) -> Iterator[tuple[Path, tuple[str, ...], bool]]:
    """Yield ``(path, folder levels below the source root, is_image)`` in sorted order."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(f"cannot list folder {root}: {exc.strerror}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=True):
            yield from _walk(Path(entry.path), (*rel, entry.name))
        elif entry.is_file(follow_symlinks=True):
            path = Path(entry.path)
            yield path, rel, path.suffix.lower() in IMAGE_SUFFIXES


def discover_files(sources: Sequence[str | Path]) -> Discovery:
    """Find the image files under the given files and folders.

    Args:
        sources: Files and folders. Folders are walked recursively; each file's
            ``class_path`` is the folder levels between that folder and the file.

    Returns:
        The items (deduplicated by absolute path, in the order found) and the files that
        were passed over with the reason.

    Raises:
        SourceError: A source does not exist (nothing is ingested: fix the path first).
    """
    missing = [str(s) for s in sources if not Path(s).expanduser().exists()]
    if missing:
        raise SourceError(f"source not found: {', '.join(missing)}; check the path(s)")
    discovery = Discovery()
    seen: set[str] = set()
    for source in sources:
        root = Path(source).expanduser().resolve()
        if root.is_file():
            candidates: Iterator[tuple[Path, tuple[str, ...], bool]] = iter([(root, (), True)])
        else:
            candidates = _walk(root, ())
        for path, rel, is_image in candidates:
            uri = path.as_posix()
            if uri in seen:
                continue
            seen.add(uri)
            if is_image:
                discovery.items.append(SourceItem(uri=uri, class_path=rel))
            else:
                discovery.skipped.append(
                    (uri, f"not an image file name ({path.suffix or 'no suffix'})")
                )
    return discovery
