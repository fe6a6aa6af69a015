"""Local files and folders, including ImageFolder layouts (class = folder name).

Folders are walked recursively in sorted order. Files with an image suffix
(:data:`~lensloop.sources.base.IMAGE_SUFFIXES`) become items; other files found while
walking are reported as skipped, and hidden files and folders (``.DS_Store``, ``.git``) are
ignored. A file named on its own is always tried, whatever its suffix, so a mislabelled
image is reported with the decoder's reason rather than passed over, unless it is a URL
list (``.txt``, ``.urls``).

Remote sources (``s3://bucket/prefix``, ``https://`` images and URL lists) are listed by
:mod:`lensloop.sources.remote_list`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from lensloop.errors import SourceError
from lensloop.sources.base import IMAGE_SUFFIXES, Discovery, SourceItem
from lensloop.sources.remote import RemoteOptions, is_remote

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


def discover_files(
    sources: Sequence[str | Path], *, remote: RemoteOptions | None = None
) -> Discovery:
    """Find the image files under the given files, folders and remote sources.

    Args:
        sources: Files and folders, ``s3://bucket/prefix``, ``https://`` image URLs and URL
            lists (a ``.txt`` / ``.urls`` file or URL, one URI per line). Folders and
            prefixes are walked recursively; each item's ``class_path`` is the folder
            levels between the folder (prefix) and the file.
        remote: How remote sources are reached; default AWS and no cache.

    Returns:
        The items (deduplicated by URI, in the order found) and the files that were passed
        over with the reason.

    Raises:
        SourceError: A source does not exist or cannot be listed (nothing is ingested: fix
            the path, bucket, endpoint or credentials first).
    """
    from lensloop.sources.remote_list import is_url_list, list_remote, read_url_list

    missing = [
        str(s) for s in sources if not is_remote(str(s)) and not Path(s).expanduser().exists()
    ]
    if missing:
        raise SourceError(f"source not found: {', '.join(missing)}; check the path(s)")
    options = remote or RemoteOptions()
    discovery = Discovery()
    seen: set[str] = set()

    def keep(uri: str) -> bool:
        if uri in seen:
            return False
        seen.add(uri)
        return True

    for source in sources:
        if is_remote(str(source)):
            items, skipped = list_remote(str(source), options)
            discovery.items.extend(item for item in items if keep(item.uri))
            discovery.skipped.extend(skipped)
            continue
        root = Path(source).expanduser().resolve()
        if root.is_file() and is_url_list(root.name):
            items, skipped = read_url_list(str(root), options)
            discovery.items.extend(item for item in items if keep(item.uri))
            discovery.skipped.extend(skipped)
            continue
        if root.is_file():
            candidates: Iterator[tuple[Path, tuple[str, ...], bool]] = iter([(root, (), True)])
        else:
            candidates = _walk(root, ())
        for path, rel, is_image in candidates:
            uri = path.as_posix()
            if not keep(uri):
                continue
            if is_image:
                discovery.items.append(SourceItem(uri=uri, class_path=rel))
            else:
                discovery.skipped.append(
                    (uri, f"not an image file name ({path.suffix or 'no suffix'})")
                )
    return discovery
