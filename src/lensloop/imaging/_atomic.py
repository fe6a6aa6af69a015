"""Write a file atomically: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, data: bytes, *, overwrite: bool, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The temporary file is renamed over ``path`` (``os.replace``), or, when ``overwrite`` is
    False, hard-linked to it, which fails atomically if ``path`` appeared meanwhile. A file
    that is replaced keeps its permission bits; a new file gets the usual ``0o666 & ~umask``.

    Args:
        path: Destination; its folder must exist.
        data: The complete new content.
        overwrite: Whether an existing ``path`` may be replaced.
        fsync: Flush the data to disk before the rename (off for caches).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: The folder is missing or not writable.
    """
    if not overwrite and path.exists():
        raise _exists_error(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if overwrite:
            with contextlib.suppress(FileNotFoundError):  # a new file keeps the default mode
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        # The file system has no hard links (some network and FAT mounts): fall back to a
        # check and a rename, which is not atomic against a concurrent writer.
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
