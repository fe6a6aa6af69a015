"""Counting and segmenting image files as executor tasks (``--executor dask``).

``lensloop count`` and ``lensloop segment`` cut their image files into shards of
:data:`SHARD_SIZE`; each shard is a task (:func:`count_shard`, :func:`segment_shard`) that
loads the released model from its folder once per worker process, reads its files and
returns the results (counts and locations, label maps). The caller writes the overlays,
masks and JSON files exactly as it does when it runs the model itself, so both paths give
the same files. A task carries paths, not pixels: the workers must reach the image files
and the model folder (a shared filesystem).

Example:
    >>> from lensloop.executors import get_executor
    >>> from lensloop.train.sharded import count_shard, map_files
    >>> results = map_files(  # doctest: +SKIP
    ...     get_executor("dask", "tcp://127.0.0.1:8786"), count_shard, counter.folder,
    ...     settings, paths,
    ... )
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError
from lensloop.executors import Executor, shards
from lensloop.settings import Settings
from lensloop.train.counter import CountResult, load_counter
from lensloop.train.dense import DenseRelease
from lensloop.train.segmenter import load_segmenter

__all__ = ["SHARD_SIZE", "FileShard", "count_shard", "map_files", "read_file", "segment_shard"]

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


def read_file(path: Path, *, verb: str) -> npt.NDArray[Any]:
    """Read an image file in its native dtype.

    Raises:
        ConfigError: It cannot be read (``cannot VERB PATH: why``).
    """
    from lensloop.imaging import read_image

    try:
        return read_image(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot {verb} {path}: {exc}") from exc


def count_shard(shard: FileShard) -> list[CountResult]:
    """Count the objects of a shard's files with its counting model (one result each).

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    counter = _loaded("count", shard, load_counter)
    return [
        counter.count_array(read_file(path, verb="count"), name=str(path)) for path in shard.paths
    ]


def segment_shard(shard: FileShard) -> list[npt.NDArray[np.uint8]]:
    """The ``(H, W)`` uint8 label map of each of a shard's files, with its segmentation model.

    Raises:
        ConfigError: A file cannot be read or does not fit the model.
    """
    segmenter = _loaded("segment", shard, load_segmenter)
    return [
        segmenter.segment_array(read_file(path, verb="segment"), name=str(path)).labels
        for path in shard.paths
    ]


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
