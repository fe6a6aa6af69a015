"""Extraction engine: embed every catalog image that has no vector yet for a backbone.

The pipeline overlaps the two halves of the work:

- worker processes read each image from its URI and run :meth:`Backbone.prepare`
  (decode, the input rule of :mod:`lensloop.embed.base`, resize), in catalog order;
- the main process stacks ``batch_size`` prepared inputs, runs :meth:`Backbone.infer`
  (ONNX Runtime for neural backbones), L2-normalises the vectors and appends them to the
  embedding set's :class:`~lensloop.catalog.vectors.VectorStore` every ``flush_every``
  images, updating the catalog's count in the same step.

With a non-local :class:`~lensloop.executors.Executor` (``--executor dask``), the images
are cut into shards of :data:`SHARD_SIZE`; each shard is one task that reads, prepares and
infers its images with the (pickled) backbone and returns the L2-normalised vectors, and
this process appends them to the store and updates the count exactly as above. Workers
must reach the images (a shared filesystem or S3/HTTP URIs; remote options travel with
each task) and the backbone's weights (the user cache on a shared filesystem).

Incremental and resumable: only images without a vector in this backbone + version are
embedded, so an interrupted run loses at most the unflushed images and a re-run carries
on. An image that can no longer be read is reported and skipped, never fatal; its vector
is simply missing until it can be read.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from lensloop.catalog.models import Image
from lensloop.catalog.vectors import (
    VectorStore,
    embedding_set_dir,
    ensure_embedding_set,
    set_count,
)
from lensloop.embed.base import Backbone
from lensloop.errors import ConfigError, ImageError, LensloopError
from lensloop.executors import Executor, is_local, shards
from lensloop.imaging import ImageLimits
from lensloop.project import Project
from lensloop.sources.reader import read_stored_image
from lensloop.sources.remote import RemoteOptions

__all__ = ["SHARD_SIZE", "EmbedReport", "embed_project", "l2_normalize"]

_log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

#: Images per task with a non-local executor: enough to hide a task's scheduling and
#: result transfer (a few ms) behind ~1 s of inference, few enough to spread a
#: catalog of thousands over many workers.
SHARD_SIZE = 256


@dataclass
class EmbedReport:
    """What an embedding run did."""

    backbone: str
    version: str
    dim: int
    embedded: int = 0
    already_embedded: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Images embedded per second of wall time."""
        return self.embedded / self.elapsed_s if self.elapsed_s > 0 else 0.0


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length; all-zero rows stay zero.

    Args:
        vectors: float ``(N, D)``.

    Returns:
        float32 ``(N, D)``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: np.ndarray = vectors / np.maximum(norms, np.float32(1e-12))
    return normalized


@dataclass(frozen=True)
class _Item:
    image_id: int
    uri: str
    page: int | None
    pages: str | None


# Worker-process state, set once per process by the pool initialiser.
_WORKER: dict[str, Any] = {}


def _init_worker(backbone: Backbone, limits: ImageLimits, remote: RemoteOptions) -> None:
    _WORKER["backbone"] = backbone
    _WORKER["limits"] = limits
    _WORKER["remote"] = remote


def _prepare(item: _Item) -> tuple[int, np.ndarray | None, str]:
    return _prepare_with(item, _WORKER["backbone"], _WORKER["limits"], _WORKER["remote"])


def _prepare_with(
    item: _Item, backbone: Backbone, limits: ImageLimits, remote: RemoteOptions
) -> tuple[int, np.ndarray | None, str]:
    try:
        image = read_stored_image(
            item.uri, page=item.page, pages=item.pages, limits=limits, remote=remote
        )
        return item.image_id, np.asarray(backbone.prepare(image), dtype=np.float32), ""
    except (ImageError, LensloopError) as exc:
        return item.image_id, None, str(exc)
    except OSError as exc:
        return item.image_id, None, f"cannot read file: {exc.strerror or exc}"
    except Exception as exc:  # a broken image must not stop a long run
        _log.exception("unexpected error preparing image %d", item.image_id)
        return item.image_id, None, f"unexpected {type(exc).__name__}: {exc}"


def _prepared(
    items: Sequence[_Item],
    backbone: Backbone,
    limits: ImageLimits,
    remote: RemoteOptions,
    workers: int,
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    if workers == 0:
        _init_worker(backbone, limits, remote)
        yield from map(_prepare, items)
        return
    context = multiprocessing.get_context("forkserver")
    initargs = (backbone, limits, remote)
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        yield from pool.imap(_prepare, items, chunksize=4)


def _infer(backbone: Backbone, inputs: list[np.ndarray]) -> np.ndarray:
    """L2-normalised float32 ``(N, dim)`` vectors of a batch of prepared inputs."""
    vectors = np.asarray(backbone.infer(np.stack(inputs)), dtype=np.float32)
    if vectors.shape != (len(inputs), backbone.dim):
        raise ConfigError(
            f"backbone {backbone.name} returned shape {vectors.shape} for a batch of "
            f"{len(inputs)}; expected ({len(inputs)}, {backbone.dim})"
        )
    return l2_normalize(vectors)


@dataclass(frozen=True)
class _EmbedShard:
    """One task of a non-local executor: everything it needs, picklable."""

    backbone: Backbone
    limits: ImageLimits
    remote: RemoteOptions
    items: list[_Item]
    batch_size: int


#: A worker process's backbones, so that a worker opens each inference session once and
#: not once per task (each task brings its own unpickled copy).
_SHARD_BACKBONES: dict[tuple[str, str, str], Backbone] = {}


def _embed_shard(shard: _EmbedShard) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """``(ids, vectors, failures)`` of one shard: int64 ``(N,)``, float32 ``(N, dim)``."""
    key = (type(shard.backbone).__qualname__, shard.backbone.name, shard.backbone.version)
    backbone = _SHARD_BACKBONES.setdefault(key, shard.backbone)
    ids: list[int] = []
    inputs: list[np.ndarray] = []
    blocks: list[np.ndarray] = []
    failed: list[tuple[int, str]] = []
    for item in shard.items:
        image_id, prepared, error = _prepare_with(item, backbone, shard.limits, shard.remote)
        if prepared is None:
            failed.append((image_id, error))
            continue
        ids.append(image_id)
        inputs.append(prepared)
        if len(inputs) >= shard.batch_size:
            blocks.append(_infer(backbone, inputs))
            inputs = []
    if inputs:
        blocks.append(_infer(backbone, inputs))
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, backbone.dim), np.float32)
    return np.asarray(ids, np.int64), vectors, failed


def _todo(project: Project, done: np.ndarray) -> list[_Item]:
    with project.catalog.reader() as session:
        rows = session.execute(
            select(Image.id, Image.uri, Image.page, Image.meta).order_by(Image.id)
        ).all()
    done_set = set(done.tolist())
    return [
        _Item(image_id, uri, page, (meta or {}).get("pages"))
        for image_id, uri, page, meta in rows
        if image_id not in done_set
    ]


def default_workers() -> int:
    """Prepare processes by default: none on machines of up to 4 cores, else a quarter.

    Inference (ONNX Runtime) already uses every core, and preparing an image costs a few
    per cent of inferring it; on a 2-core machine a prepare worker only competes with
    inference (measured: 93% of bare ONNX Runtime throughput in-process against 77% with
    one worker, docs/benchmarks.md). Larger machines, or GPU inference, gain from workers.
    """
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores // 4)


def embed_project(
    project: Project,
    backbone: Backbone,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    flush_every: int = 1024,
    progress: ProgressFn | None = None,
    executor: Executor | None = None,
    shard_size: int = SHARD_SIZE,
) -> EmbedReport:
    """Embed the project's images that have no vector yet for this backbone + version.

    Args:
        project: The open project.
        backbone: The backbone (see :func:`lensloop.embed.get_backbone`).
        batch_size: Images per inference call.
        workers: Processes that read and prepare images; 0 prepares in this process;
            None picks :func:`default_workers`.
        flush_every: Vectors kept in memory before they are written (and committed).
        progress: Called as ``progress(done, total)``.
        executor: Where the work runs; ``None`` or a local executor: this process (and
            ``workers`` prepare processes); another (Dask): tasks of ``shard_size`` images
            that read, prepare and infer on the cluster (``workers`` is then unused).
        shard_size: Images per task with a non-local executor.

    Returns:
        The report: counts, failures and timing.

    Raises:
        ConfigError: Invalid batch size, workers or flush size.
        CatalogError: The embedding set exists with another dimension.
    """
    if batch_size < 1 or flush_every < 1 or shard_size < 1 or (workers is not None and workers < 0):
        raise ConfigError(
            f"batch_size, flush_every and shard_size must be >= 1 and workers >= 0; got "
            f"batch_size={batch_size}, flush_every={flush_every}, shard_size={shard_size}, "
            f"workers={workers}"
        )
    started = time.perf_counter()
    version, dim = backbone.version, backbone.dim
    folder = embedding_set_dir(project.embeddings_dir, backbone.name, version)
    with project.catalog.transaction() as session:
        row = ensure_embedding_set(
            session,
            backbone=backbone.name,
            version=version,
            dim=dim,
            path=str(folder.relative_to(project.root)),
        )
        set_id = row.id
    store = VectorStore(folder, dim=dim)
    done = store.ids()
    items = _todo(project, done)
    report = EmbedReport(backbone.name, version, dim, already_embedded=len(done))
    workers = default_workers() if workers is None else workers

    batch_ids: list[int] = []
    batch_inputs: list[np.ndarray] = []
    pending_ids: list[np.ndarray] = []
    pending_vecs: list[np.ndarray] = []
    stored = len(done)

    def run_batch() -> None:
        if not batch_ids:
            return
        pending_ids.append(np.asarray(batch_ids, np.int64))
        pending_vecs.append(_infer(backbone, batch_inputs))
        batch_ids.clear()
        batch_inputs.clear()

    def flush() -> None:
        nonlocal stored
        if not pending_ids:
            return
        ids, vecs = np.concatenate(pending_ids), np.concatenate(pending_vecs)
        store.append(ids, vecs)
        stored += len(ids)
        report.embedded += len(ids)
        with project.catalog.transaction() as session:
            set_count(session, set_id, stored)
        pending_ids.clear()
        pending_vecs.clear()

    limits = project.limits
    if executor is not None and not is_local(executor):
        _log.info(
            "embedding %d images with %s (%s) as %s tasks of %d images",
            len(items),
            backbone.name,
            version,
            executor.name,
            shard_size,
        )
        uris = {item.image_id: item.uri for item in items}
        jobs = [
            _EmbedShard(backbone, limits, project.remote, shard, batch_size)
            for shard in shards(items, shard_size)
        ]
        finished = 0
        for job, (ids, vectors, failed) in zip(jobs, executor.map(_embed_shard, jobs), strict=True):
            report.failed.extend((image_id, uris[image_id], error) for image_id, error in failed)
            if len(ids):
                pending_ids.append(ids)
                pending_vecs.append(vectors)
            if sum(len(i) for i in pending_ids) >= flush_every:
                flush()
            finished += len(job.items)
            if progress is not None:
                progress(finished, len(items))
        flush()
        report.elapsed_s = time.perf_counter() - started
        return report

    _log.info(
        "embedding %d images with %s (%s), %d worker(s)",
        len(items),
        backbone.name,
        version,
        workers,
    )
    for index, (image_id, prepared, error) in enumerate(
        _prepared(items, backbone, limits, project.remote, workers), start=1
    ):
        if prepared is None:
            uri = items[index - 1].uri
            report.failed.append((image_id, uri, error))
        else:
            batch_ids.append(image_id)
            batch_inputs.append(prepared)
            if len(batch_ids) >= batch_size:
                run_batch()
                if sum(len(i) for i in pending_ids) >= flush_every:
                    flush()
        if progress is not None:
            progress(index, len(items))
    run_batch()
    flush()
    report.elapsed_s = time.perf_counter() - started
    return report
