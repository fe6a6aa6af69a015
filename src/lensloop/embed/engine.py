"""Extraction engine: embed every catalog image that has no vector yet for a backbone.

The pipeline overlaps the two halves of the work:

- worker processes read each image from its URI and run :meth:`Backbone.prepare`
  (decode, the input rule of :mod:`lensloop.embed.base`, resize), in catalog order;
- the main process stacks ``batch_size`` prepared inputs, runs :meth:`Backbone.infer`
  (ONNX Runtime for neural backbones), L2-normalises the vectors and appends them to the
  embedding set's :class:`~lensloop.catalog.vectors.VectorStore` every ``flush_every``
  images, updating the catalog's count in the same step.

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
from lensloop.imaging import ImageLimits
from lensloop.project import Project
from lensloop.sources.reader import read_stored_image
from lensloop.sources.remote import RemoteOptions

__all__ = ["EmbedReport", "embed_project", "l2_normalize"]

_log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


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
    backbone: Backbone = _WORKER["backbone"]
    try:
        image = read_stored_image(
            item.uri,
            page=item.page,
            pages=item.pages,
            limits=_WORKER["limits"],
            remote=_WORKER["remote"],
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

    Returns:
        The report: counts, failures and timing.

    Raises:
        ConfigError: Invalid batch size, workers or flush size.
        CatalogError: The embedding set exists with another dimension.
    """
    if batch_size < 1 or flush_every < 1 or (workers is not None and workers < 0):
        raise ConfigError(
            f"batch_size and flush_every must be >= 1 and workers >= 0; got batch_size="
            f"{batch_size}, flush_every={flush_every}, workers={workers}"
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
    _log.info(
        "embedding %d images with %s (%s), %d worker(s)",
        len(items),
        backbone.name,
        version,
        workers,
    )

    batch_ids: list[int] = []
    batch_inputs: list[np.ndarray] = []
    pending_ids: list[np.ndarray] = []
    pending_vecs: list[np.ndarray] = []
    stored = len(done)

    def run_batch() -> None:
        if not batch_ids:
            return
        vectors = np.asarray(backbone.infer(np.stack(batch_inputs)), dtype=np.float32)
        if vectors.shape != (len(batch_ids), dim):
            raise ConfigError(
                f"backbone {backbone.name} returned shape {vectors.shape} for a batch of "
                f"{len(batch_ids)}; expected ({len(batch_ids)}, {dim})"
            )
        pending_ids.append(np.asarray(batch_ids, np.int64))
        pending_vecs.append(l2_normalize(vectors))
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
