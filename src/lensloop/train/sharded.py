"""Counting and segmenting image files as executor tasks (``--executor dask``).

``lensloop count`` and ``lensloop segment`` cut their image files into shards of
:data:`SHARD_SIZE`; each shard is a task (:func:`count_shard`, :func:`segment_shard`) that
loads the released model from its folder once per worker process, reads its files and
returns the results (counts and locations, label maps). The caller writes the overlays,
masks and JSON files exactly as it does when it runs the model itself, so both paths give
the same files. A task carries paths, not pixels: the workers must reach the image files
and the model folder (a shared filesystem). :func:`count_files` and :func:`segment_files`
are the one entry for both paths: with the local executor they run the same per-file
step in this process.

Example:
    >>> from lensloop.executors import get_executor
    >>> from lensloop.train.sharded import count_files
    >>> for path, result, _ in count_files(  # doctest: +SKIP
    ...     get_executor("dask", "tcp://127.0.0.1:8786"), counter, settings, paths
    ... ):
    ...     print(path, result.count)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lensloop.executors import Executor, is_local, shards
from lensloop.settings import Settings
from lensloop.train.counter import Counter, CountResult, load_counter
from lensloop.train.dense import DenseRelease, read_file
from lensloop.train.segmenter import Segmenter, load_segmenter

__all__ = [
    "SHARD_SIZE",
    "FileShard",
    "count_files",
    "count_shard",
    "map_files",
    "segment_files",
    "segment_shard",
]

#: Image files per task: dense models run tile by tile and their images are often large,
#: so a task holds fewer images than an embedding task does.
SHARD_SIZE = 16

R = TypeVar("R")
_Release = TypeVar("_Release", bound=DenseRelease)


@dataclass(frozen=True)
class FileShard:
    """One task: the released model's folder, the settings to load it with, the files.

    Attributes:
        folder: A released model folder (the cached copy a loaded model names).
        settings: Where the workers' user cache is.
        paths: The image files, in order.
    """

    folder: Path
    settings: Settings
    paths: list[Path]


#: A worker process's loaded models, by (task, folder): each opens its session once.
_LOADED: dict[tuple[str, Path], Any] = {}


def _loaded(task: str, shard: FileShard, load: Callable[..., _Release]) -> _Release:
    model: _Release | None = _LOADED.get((task, shard.folder))
    if model is None:
        model = _LOADED[(task, shard.folder)] = load(shard.folder, settings=shard.settings)
    return model


def _count_one(counter: Counter, image: npt.NDArray[Any], path: Path) -> CountResult:
    return counter.count_array(image, name=str(path))


def _segment_one(
    segmenter: Segmenter, image: npt.NDArray[Any], path: Path
) -> npt.NDArray[np.uint8]:
    return segmenter.segment_array(image, name=str(path)).labels


def count_shard(shard: FileShard) -> list[CountResult]:
    """Count the objects of a shard's files with its counting model (one result each).

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    counter = _loaded("count", shard, load_counter)
    return [_count_one(counter, read_file(p, verb="count"), p) for p in shard.paths]


def segment_shard(shard: FileShard) -> list[npt.NDArray[np.uint8]]:
    """The ``(H, W)`` uint8 label map of each of a shard's files, with its segmentation model.

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    segmenter = _loaded("segment", shard, load_segmenter)
    return [_segment_one(segmenter, read_file(p, verb="segment"), p) for p in shard.paths]


def map_files(
    executor: Executor,
    fn: Callable[[FileShard], list[R]],
    folder: Path,
    settings: Settings,
    paths: Sequence[Path],
    *,
    shard_size: int = SHARD_SIZE,
) -> Iterator[tuple[Path, R]]:
    """``(path, result)`` per file, in order, running ``fn`` over shards on ``executor``.

    Args:
        executor: Where the shards run.
        fn: :func:`count_shard` or :func:`segment_shard`.
        folder: The released model's folder.
        settings: The settings the workers load the model with (its user cache).
        paths: The image files.
        shard_size: Files per task.
    """
    jobs = [FileShard(folder, settings, shard) for shard in shards(paths, shard_size)]
    for job, results in zip(jobs, executor.map(fn, jobs), strict=True):
        yield from zip(job.paths, results, strict=True)


_Image = npt.NDArray[Any]


def _per_file(
    executor: Executor,
    model: _Release,
    one: Callable[[_Release, _Image, Path], R],
    shard_fn: Callable[[FileShard], list[R]],
    settings: Settings,
    paths: Sequence[Path],
    verb: str,
) -> Iterator[tuple[Path, R, _Image | None]]:
    if is_local(executor):
        for path in paths:
            image = read_file(path, verb=verb)
            yield path, one(model, image, path), image
        return
    for path, result in map_files(executor, shard_fn, model.folder, settings, paths):
        yield path, result, None


def count_files(
    executor: Executor, counter: Counter, settings: Settings, paths: Sequence[Path]
) -> Iterator[tuple[Path, CountResult, _Image | None]]:
    """``(path, result, image)`` per file, in order.

    Counted here with the local executor (the image read is returned, for overlays), or by
    ``executor``'s tasks (image None: read it again if needed).

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    return _per_file(executor, counter, _count_one, count_shard, settings, paths, "count")


def segment_files(
    executor: Executor, segmenter: Segmenter, settings: Settings, paths: Sequence[Path]
) -> Iterator[tuple[Path, npt.NDArray[np.uint8], _Image | None]]:
    """``(path, label map, image)`` per file, in order, as :func:`count_files` does.

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    return _per_file(executor, segmenter, _segment_one, segment_shard, settings, paths, "segment")
