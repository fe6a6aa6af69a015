"""Embedding vectors on disk: float32 ``(N, D)`` keyed by image id, append-only.

An embedding set (one backbone + version, a row of ``embedding_sets``) owns a folder of
*parts*; each part is a pair of ``.npy`` files written atomically by one extraction batch::

    embeddings/<backbone>/<version>/
        part-000001.vec.npy   float32 (n, D)
        part-000001.ids.npy   int64 (n,)    written last: its presence marks the part complete

An interrupted extraction therefore leaves only complete parts, and the next run carries
on with the images that have no vector yet. Nothing is overwritten: if an image is
embedded again (after :meth:`VectorStore.append` with an id already present) the newest
vector wins when loading. The folder can be memory-mapped part by part for large sets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lensloop.catalog.models import EmbeddingSet, utcnow
from lensloop.errors import CatalogError, NotFoundError

__all__ = [
    "VectorStore",
    "embedding_set_dir",
    "ensure_embedding_set",
    "find_embedding_set",
    "set_count",
]

_PART = re.compile(r"^part-(\d{6})\.ids\.npy$")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def embedding_set_dir(root: Path, backbone: str, version: str) -> Path:
    """Return the folder of an embedding set under a project's ``embeddings/`` folder."""
    return root / _slug(backbone) / _slug(version)


class VectorStore:
    """The parts of one embedding set.

    Args:
        folder: The set's folder (created on first append).
        dim: Vector length D.
    """

    def __init__(self, folder: Path, *, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"vector dimension must be positive, got {dim}")
        self.folder = folder
        self.dim = dim

    def _parts(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        numbers = [int(m.group(1)) for f in os.listdir(self.folder) if (m := _PART.match(f))]
        return sorted(numbers)

    def _paths(self, number: int) -> tuple[Path, Path]:
        stem = self.folder / f"part-{number:06d}"
        return stem.with_suffix(".vec.npy"), stem.with_suffix(".ids.npy")

    def ids(self) -> np.ndarray:
        """Return the ids that have a vector, as int64 ``(n,)`` (unique, sorted)."""
        chunks = [np.load(self._paths(n)[1]) for n in self._parts()]
        if not chunks:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(chunks)).astype(np.int64)

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write one part atomically.

        Args:
            ids: int64 ``(n,)`` image ids.
            vectors: float32 ``(n, D)``.

        Raises:
            ValueError: Shapes disagree, D differs from the set's, or values are not finite.
        """
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (ids.shape[0], self.dim):
            raise ValueError(
                f"expected vectors of shape ({ids.shape[0]}, {self.dim}), got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity; the backbone output is broken")
        if ids.size == 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        number = (self._parts() or [0])[-1] + 1
        vec_path, ids_path = self._paths(number)
        for path, array in ((vec_path, vectors), (ids_path, ids)):
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, array)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ids, vectors)``: int64 ``(N,)`` sorted by id, float32 ``(N, D)``.

        Raises:
            CatalogError: A part is damaged (its vectors file missing or of the wrong shape).
        """
        id_chunks, vec_chunks = [], []
        for number in self._parts():
            vec_path, ids_path = self._paths(number)
            part_ids = np.load(ids_path)
            try:
                part_vecs = np.load(vec_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise CatalogError(
                    f"embedding part {vec_path} is damaged ({exc}); delete "
                    f"{ids_path.name} and its .vec.npy and run `lensloop embed` again"
                ) from exc
            if part_vecs.shape != (part_ids.shape[0], self.dim):
                raise CatalogError(
                    f"embedding part {vec_path} has shape {part_vecs.shape}, expected "
                    f"({part_ids.shape[0]}, {self.dim}); delete the part and embed again"
                )
            id_chunks.append(part_ids)
            vec_chunks.append(np.asarray(part_vecs))
        if not id_chunks:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        ids = np.concatenate(id_chunks).astype(np.int64)
        vectors = np.concatenate(vec_chunks).astype(np.float32, copy=False)
        # Newest vector per id wins: take each id's last occurrence, then sort by id.
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
        return ids[last], vectors[last]


def find_embedding_set(session: Session, backbone: str, version: str | None = None) -> EmbeddingSet:
    """Return the embedding set of a backbone (the newest version when ``version`` is None).

    Raises:
        NotFoundError: No such set; the message lists the sets that exist.
    """
    query = select(EmbeddingSet).where(EmbeddingSet.backbone == backbone)
    if version is not None:
        query = query.where(EmbeddingSet.version == version)
    found = session.scalars(query.order_by(EmbeddingSet.created_at.desc(), EmbeddingSet.id.desc()))
    row = found.first()
    if row is None:
        existing = [
            f"{b} ({v})"
            for b, v in session.execute(select(EmbeddingSet.backbone, EmbeddingSet.version))
        ]
        wanted = backbone if version is None else f"{backbone} ({version})"
        raise NotFoundError(
            f"no embeddings for {wanted}; existing sets: {', '.join(existing) or 'none'}. "
            f"Run `lensloop embed DIR --backbone {backbone}` first"
        )
    return row


def ensure_embedding_set(
    session: Session, *, backbone: str, version: str, dim: int, path: str
) -> EmbeddingSet:
    """Return the set for ``backbone`` + ``version``, creating it when new.

    Raises:
        CatalogError: The set exists with another dimension (the backbone changed without
            changing its version).
    """
    query = select(EmbeddingSet).where(
        EmbeddingSet.backbone == backbone, EmbeddingSet.version == version
    )
    row = session.scalars(query).first()
    if row is None:
        row = EmbeddingSet(
            backbone=backbone, version=version, dim=dim, count=0, path=path, created_at=utcnow()
        )
        session.add(row)
        session.flush()
    elif row.dim != dim:
        raise CatalogError(
            f"embedding set {backbone} ({version}) holds {row.dim}-d vectors but the backbone "
            f"now gives {dim}-d; give the backbone a new version"
        )
    return row


def set_count(session: Session, set_id: int, count: int) -> None:
    """Record how many images of a set have a vector."""
    session.execute(update(EmbeddingSet).where(EmbeddingSet.id == set_id).values(count=count))
