"""Exploring a project's embeddings: similar images, near-duplicates, clusters, the map.

These functions join the array-level tools (:mod:`~lensloop.embed.index`,
:mod:`~lensloop.embed.cluster`, :mod:`~lensloop.embed.layout`) to a project: they read the
stored vectors of one backbone, and store clusters and map layouts in the catalog, where
the UI and the selection strategies read them.

The search index of an embedding set is cached next to its vectors
(``index-<N>.faiss``) and rebuilt only when the set has grown.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
from sqlalchemy import insert, select

from lensloop.catalog.models import ClusterMember, ClusterRun, Image, MapLayout, MapPoint, utcnow
from lensloop.catalog.vectors import VectorStore, find_embedding_set
from lensloop.embed.engine import l2_normalize
from lensloop.embed.registry import BackboneOptions, get_backbone
from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project

if TYPE_CHECKING:
    from lensloop.embed.index import VectorIndex

__all__ = [
    "ClusterResult",
    "EmbeddingSetData",
    "MapResult",
    "Neighbour",
    "cluster_images",
    "duplicate_images",
    "load_embedding_set",
    "map_images",
    "similar_images",
]

_log = logging.getLogger(__name__)
_CHUNK = 900


@dataclass(frozen=True)
class EmbeddingSetData:
    """The stored vectors of one embedding set, with where they live."""

    set_id: int
    backbone: str
    version: str
    folder: Path
    ids: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class Neighbour:
    """A similar image: its id, URI and cosine similarity to the query."""

    image_id: int
    uri: str
    score: float


@dataclass(frozen=True)
class ClusterResult:
    """A stored clustering: its run id, method, number of clusters and their sizes."""

    run_id: int
    method: str
    n_clusters: int
    sizes: dict[int, int]


@dataclass(frozen=True)
class MapResult:
    """A stored 2-D layout and the PNG drawn from it."""

    layout_id: int
    method: str
    n_points: int
    png_path: Path | None


def load_embedding_set(
    project: Project, backbone: str, *, version: str | None = None
) -> EmbeddingSetData:
    """Load the vectors of a backbone's (newest) embedding set.

    Raises:
        NotFoundError: No such set, or it holds no vectors yet.
    """
    with project.catalog.reader() as session:
        row = find_embedding_set(session, backbone, version)
        set_id, name, ver, folder, dim = row.id, row.backbone, row.version, row.path, row.dim
    ids, vectors = VectorStore(project.root / folder, dim=dim).load()
    if ids.size == 0:
        raise NotFoundError(
            f"the {name} ({ver}) embedding set is empty; run `lensloop embed DIR --backbone "
            f"{name}` first"
        )
    return EmbeddingSetData(set_id, name, ver, project.root / folder, ids, vectors)


def _has_vector(data: EmbeddingSetData, image_id: int) -> bool:
    """Whether the set holds a vector for ``image_id`` (ids are sorted: binary search)."""
    row = int(np.searchsorted(data.ids, image_id))
    return row < len(data.ids) and int(data.ids[row]) == image_id


def _index(data: EmbeddingSetData, *, seed: int = 0) -> VectorIndex:
    from lensloop.embed.index import VectorIndex

    digest = hashlib.sha256(data.ids.tobytes()).hexdigest()[:12]
    path = data.folder / f"index-{len(data.ids)}-{digest}.faiss"
    if path.is_file():
        return VectorIndex.load(path)
    index = VectorIndex.build(data.vectors, data.ids, seed=seed)
    for stale in data.folder.glob("index-*.faiss"):
        stale.unlink(missing_ok=True)
    index.save(path)
    return index


def _uris(project: Project, ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    with project.catalog.reader() as session:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = session.execute(select(Image.id, Image.uri).where(Image.id.in_(chunk)))
            found.update({image_id: uri for image_id, uri in rows})
    return found


def _query_vector(
    project: Project, data: EmbeddingSetData, query: Path | bytes
) -> tuple[int | None, np.ndarray]:
    """Embed a file with the set's own backbone; reuse its vector if it is in the catalog."""
    from lensloop.imaging import decode_image

    if isinstance(query, bytes):
        raw, name = query, "the query image"
    else:
        name = str(query)
        try:
            raw = query.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read query image {query}: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(raw).hexdigest()
    with project.catalog.reader() as session:
        known = session.scalar(select(Image.id).where(Image.sha256 == sha))
    if known is not None and _has_vector(data, known):
        row = int(np.searchsorted(data.ids, known))
        return int(known), data.vectors[row]
    options = BackboneOptions(cache_dir=project.settings.cache_dir, project_root=project.root)
    backbone = get_backbone(data.backbone, options)
    if backbone.version != data.version:
        raise ConfigError(
            f"the stored {data.backbone} vectors are version {data.version} but the backbone "
            f"now builds version {backbone.version}; embed the project again first"
        )
    image = decode_image(raw, limits=project.limits, name=name).array
    vector = l2_normalize(backbone.infer(backbone.prepare(image)[None]))[0]
    return None, vector


def similar_images(
    project: Project,
    query: int | Path | bytes,
    *,
    backbone: str,
    k: int = 10,
    version: str | None = None,
) -> list[Neighbour]:
    """Return the ``k`` images most similar to an image id, an image file or its bytes.

    A file that is not in the catalog is embedded on the fly with the set's backbone.

    Raises:
        NotFoundError: No vectors for the backbone, or the id has no vector.
        ConfigError: ``k`` below 1.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    data = load_embedding_set(project, backbone, version=version)
    index = _index(data)
    if isinstance(query, int):
        if not _has_vector(data, query):
            raise NotFoundError(
                f"image {query} has no {data.backbone} vector; is the id right, and has "
                "`lensloop embed` run since it was ingested?"
            )
        scores, ids = index.similar_to_id(query, k)
    else:
        own_id, vector = _query_vector(project, data, query)
        if own_id is not None:
            scores, ids = index.similar_to_id(own_id, k)
        else:
            all_scores, all_ids = index.search(vector[None], k)
            scores, ids = all_scores[0], all_ids[0]
    pairs = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if int(i) >= 0]
    uris = _uris(project, [i for i, _ in pairs])
    return [Neighbour(i, uris.get(i, "?"), s) for i, s in pairs]


def duplicate_images(
    project: Project, *, backbone: str, threshold: float = 0.95, version: str | None = None
) -> list[tuple[Neighbour, Neighbour]]:
    """Return pairs of images whose vectors have cosine similarity >= ``threshold``.

    Each pair appears once as ``(a, b)`` with ``a.image_id < b.image_id``; both carry the
    pair's similarity. Sorted most similar first.

    Raises:
        ConfigError: ``threshold`` outside (0, 1].
    """
    from lensloop.embed.index import find_duplicates

    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    data = load_embedding_set(project, backbone, version=version)
    pairs = find_duplicates(data.vectors, data.ids, threshold=threshold)
    uris = _uris(project, sorted({i for a, b, _ in pairs for i in (a, b)}))
    return [(Neighbour(a, uris[a], s), Neighbour(b, uris[b], s)) for a, b, s in pairs]


def cluster_images(
    project: Project,
    *,
    backbone: str,
    method: str = "kmeans",
    k: int | None = None,
    min_cluster_size: int = 10,
    seed: int = 0,
    version: str | None = None,
) -> ClusterResult:
    """Cluster the embedded images and store the result in the catalog.

    Args:
        project: The open project.
        backbone: Whose vectors to cluster.
        method: ``kmeans`` (``k`` clusters; chosen by silhouette when ``k`` is None) or
            ``hdbscan`` (any number; -1 is noise).
        k: Number of k-means clusters.
        min_cluster_size: HDBSCAN's smallest cluster.
        seed: Seed of every random choice.
        version: A specific embedding set version.

    Raises:
        ConfigError: An unknown method, or ``k`` with ``hdbscan``.
    """
    from lensloop.embed.cluster import choose_k, cluster_hdbscan, cluster_kmeans

    data = load_embedding_set(project, backbone, version=version)
    params: dict[str, object] = {"seed": seed, "backbone": data.backbone, "version": data.version}
    if method == "kmeans":
        if k is None:
            if len(data.ids) < 3:
                raise ConfigError(
                    f"only {len(data.ids)} embedded image(s): too few to choose k; pass --k"
                )
            upper = max(2, min(20, len(data.ids) // 5))
            k = choose_k(data.vectors, k_range=range(2, upper + 1), seed=seed)
            params["k_chosen_by"] = "silhouette"
        labels = cluster_kmeans(data.vectors, k=k, seed=seed)
        params["k"] = k
    elif method == "hdbscan":
        if k is not None:
            raise ConfigError("--k applies to kmeans; HDBSCAN finds the number of clusters")
        labels = cluster_hdbscan(data.vectors, min_cluster_size=min_cluster_size, seed=seed)
        params["min_cluster_size"] = min_cluster_size
    else:
        raise ConfigError(f"unknown clustering method {method!r}; valid: kmeans, hdbscan")
    clusters, counts = np.unique(labels, return_counts=True)
    sizes = {int(c): int(n) for c, n in zip(clusters, counts, strict=True)}
    n_clusters = len([c for c in sizes if c >= 0])
    with project.catalog.transaction() as session:
        run_id = session.scalar(
            insert(ClusterRun)
            .values(
                embedding_set_id=data.set_id,
                method=method,
                params=params,
                n_clusters=n_clusters,
                created_at=utcnow(),
            )
            .returning(ClusterRun.id)
        )
        if run_id is None:  # pragma: no cover - RETURNING always yields the id
            raise ConfigError("the catalog did not return the new cluster run's id")
        rows = [
            {"run_id": run_id, "image_id": int(i), "cluster": int(c)}
            for i, c in zip(data.ids, labels, strict=True)
        ]
        for start in range(0, len(rows), 10_000):
            session.execute(insert(ClusterMember), rows[start : start + 10_000])
    return ClusterResult(run_id, method, n_clusters, sizes)


class _LazyThumbnails(Sequence[np.ndarray]):
    """Thumbnails read only when the map draws them (a big map draws a fraction)."""

    def __init__(self, project: Project, ids: list[int], size: int) -> None:
        self._project, self._ids, self._size = project, ids, size

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | Sequence[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        from PIL import Image as PILImage

        image_id = self._ids[index]
        try:
            with PILImage.open(self._project.thumbnail(image_id, size=self._size)) as thumb:
                return np.asarray(thumb.convert("RGB"))
        except (OSError, ValueError) as exc:
            _log.warning("no thumbnail for image %d: %s", image_id, exc)
            return np.zeros((self._size, self._size, 3), np.uint8)


def map_images(
    project: Project,
    *,
    backbone: str,
    method: str = "pca",
    seed: int = 0,
    png: bool = True,
    size_px: int = 2000,
    thumb_px: int = 48,
    version: str | None = None,
) -> MapResult:
    """Compute a 2-D layout of the embedded images, store it, and draw it as a PNG.

    The PNG (``DIR/maps/<backbone>-<method>-<layout id>.png``) shows image thumbnails at
    their map positions, bordered by their class where they have one.

    Raises:
        ConfigError: An unknown method, or too few images for it.
    """
    from lensloop.catalog.labels import current_class_paths
    from lensloop.embed.layout import compute_layout, draw_map

    data = load_embedding_set(project, backbone, version=version)
    if method not in ("pca", "tsne", "umap"):
        raise ConfigError(f"unknown map method {method!r}; valid: pca, tsne, umap")
    layout = compute_layout(data.vectors, method=method, seed=seed)  # type: ignore[arg-type]
    with project.catalog.transaction() as session:
        layout_id = session.scalar(
            insert(MapLayout)
            .values(
                embedding_set_id=data.set_id,
                method=method,
                params={"seed": seed, "backbone": data.backbone, "version": data.version},
                png_path=None,
                created_at=utcnow(),
            )
            .returning(MapLayout.id)
        )
        if layout_id is None:  # pragma: no cover - RETURNING always yields the id
            raise ConfigError("the catalog did not return the new layout's id")
        rows = [
            {"layout_id": layout_id, "image_id": int(i), "x": float(x), "y": float(y)}
            for i, (x, y) in zip(data.ids, layout, strict=True)
        ]
        for start in range(0, len(rows), 10_000):
            session.execute(insert(MapPoint), rows[start : start + 10_000])
        labels_by_id = current_class_paths(session) if png else {}
    png_path: Path | None = None
    if png:
        thumbs = _LazyThumbnails(project, data.ids.tolist(), thumb_px)
        labels = [labels_by_id.get(i) for i in data.ids.tolist()]
        folder = project.root / "maps"
        folder.mkdir(exist_ok=True)
        slug = data.backbone.replace(":", "_").replace("/", "_")
        png_path = draw_map(
            layout,
            thumbs,
            folder / f"{slug}-{method}-{layout_id}.png",
            labels=labels,
            size_px=size_px,
            thumb_px=thumb_px,
            seed=seed,
        )
        with project.catalog.transaction() as session:
            session.get_one(MapLayout, layout_id).png_path = str(png_path.relative_to(project.root))
    return MapResult(layout_id, method, len(data.ids), png_path)
