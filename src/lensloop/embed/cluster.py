"""Cluster embedding vectors: k-means for a chosen number of groups, HDBSCAN to find them.

- :func:`cluster_kmeans` splits the vectors into ``k`` groups: a greedy k-means++ start,
  then FAISS's Lloyd iterations (multi-threaded BLAS) on at most 256 vectors per
  cluster, then every vector to its nearest centroid. FAISS's own start (random vectors)
  often merges well-separated groups. Measured on 200,000 × 512-D vectors in 50 groups
  on 2 cores: 3 s here, 9 s for scikit-learn's ``MiniBatchKMeans``, 89 s for ``KMeans``.
- :func:`cluster_hdbscan` finds groups of any shape and number with scikit-learn's
  ``HDBSCAN``, and marks vectors that belong to none as noise (``-1``). Vectors of more
  than :data:`HDBSCAN_PCA_DIMS` dimensions are first projected to that many with PCA:
  density estimates degrade and the neighbour search slows down in hundreds of
  dimensions (10,000 × 512-D: 63 s raw, 11 s with the projection; 50,000 × 512-D: over
  11 minutes raw, 81 s with it; on 2 busy cores).
- :func:`choose_k` picks ``k`` for k-means by the silhouette score on a sample, for when
  the user gives none.

Cluster numbers are ordered by size: cluster 0 is the largest (ties: the one whose first
vector comes first), so the same grouping always gets the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lensloop.embed.index import as_vectors
from lensloop.errors import ConfigError

__all__ = [
    "CHOOSE_K_SAMPLE",
    "HDBSCAN_PCA_DIMS",
    "choose_k",
    "cluster_hdbscan",
    "cluster_kmeans",
]

logger = logging.getLogger(__name__)

HDBSCAN_PCA_DIMS: Final = 50
"""Vectors with more dimensions are projected to this many by PCA before HDBSCAN."""

CHOOSE_K_SAMPLE: Final = 5_000
"""Vectors :func:`choose_k` scores (the silhouette costs O(n²) time)."""

_KMEANS_NITER: Final = 25
"""Lloyd iterations of FAISS k-means."""

_KMEANS_MAX_PER_CLUSTER: Final = 256
"""Training vectors per cluster for FAISS k-means; larger sets are subsampled (seeded)."""

LabelArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def _check_int(value: object, *, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _by_size(labels: npt.NDArray[np.integer[Any]]) -> LabelArray:
    """Renumber clusters 0, 1, ... from the largest down; ``-1`` (noise) stays."""
    labels = np.asarray(labels, dtype=np.int64)
    clustered = labels >= 0
    found, first, counts = np.unique(labels[clustered], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))  # largest first, then first seen
    mapping = np.empty(len(found), dtype=np.int64)
    mapping[order] = np.arange(len(found), dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    out[clustered] = mapping[np.searchsorted(found, labels[clustered])]
    return out


def _kmeans_plusplus(data: FloatArray, k: int, rng: np.random.Generator) -> FloatArray:
    """Greedy k-means++ start: ``k`` rows of ``data``, far apart, as ``(k, D)`` float32.

    Each new centre is the best (lowest total squared distance) of ``2 + ln k`` candidates
    drawn with probability proportional to their squared distance to the nearest centre
    so far (Arthur and Vassilvitskii 2007; the variant scikit-learn uses).
    """
    n = len(data)
    trials = 2 + int(np.log(k))
    norms = np.einsum("ij,ij->i", data, data, dtype=np.float64)
    centres = np.empty((k, data.shape[1]), dtype=np.float32)

    def squared_distances(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        cross = (data[rows] @ data.T).astype(np.float64)
        distances: npt.NDArray[np.float64] = np.maximum(
            norms[rows, None] - 2 * cross + norms[None, :], 0.0
        )
        return distances

    first = int(rng.integers(n))
    centres[0] = data[first]
    closest = squared_distances(np.array([first]))[0]
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct vectors than clusters: repeat one
            centres[c:] = data[first]
            break
        draws = rng.random(trials) * total
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        options = np.minimum(closest[None, :], squared_distances(candidates))
        best = int(np.argmin(options.sum(axis=1)))
        closest = options[best]
        centres[c] = data[candidates[best]]
    return centres


def cluster_kmeans(vectors: npt.ArrayLike, *, k: int, seed: int = 0) -> LabelArray:
    """Split vectors into ``k`` groups with k-means (FAISS, Euclidean distance).

    On L2-normalised embeddings, Euclidean distance ranks like cosine similarity. A seeded
    sample of at most 256 vectors per cluster (all of them for up to 256 × ``k`` vectors)
    gets a k-means++ start and 25 Lloyd iterations; then every vector goes to its nearest
    centroid.

    Args:
        vectors: ``(N, D)`` float32 vectors, N >= 2.
        k: Number of clusters, 1 <= k <= N.
        seed: Seed of the training sample and the k-means++ start.

    Returns:
        ``(N,)`` int64 labels in ``0 .. k-1``, cluster 0 the largest. Fewer than ``k``
        labels occur only when the vectors have fewer than ``k`` distinct values.

    Raises:
        ConfigError: ``k`` is not an integer in 1 .. N.
        EmbeddingError: ``vectors`` not 2-D, fewer than 2 rows, or not finite.
    """
    data = as_vectors(vectors, name="vectors", min_rows=2)
    k = _check_int(k, name="k", minimum=1)
    n, dim = data.shape
    if k > n:
        raise ConfigError(f"k={k} clusters is more than the {n} vectors; pass k <= {n}")
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    import faiss

    rng = np.random.default_rng(seed)
    train = data
    if n > _KMEANS_MAX_PER_CLUSTER * k:
        rows = rng.choice(n, size=_KMEANS_MAX_PER_CLUSTER * k, replace=False)
        train = data[np.sort(rows)]
    start = _kmeans_plusplus(train, k, rng)
    kmeans = faiss.Kmeans(
        dim,
        k,
        niter=_KMEANS_NITER,
        seed=int(seed),
        min_points_per_centroid=1,
        max_points_per_centroid=_KMEANS_MAX_PER_CLUSTER,
        verbose=False,
    )
    kmeans.train(train, init_centroids=start)
    _, assigned = kmeans.index.search(data, 1)
    return _by_size(assigned[:, 0])


def cluster_hdbscan(
    vectors: npt.ArrayLike, *, min_cluster_size: int = 10, seed: int = 0
) -> LabelArray:
    """Find clusters of any shape and number with HDBSCAN; vectors in none are noise.

    Vectors of more than :data:`HDBSCAN_PCA_DIMS` dimensions are first projected onto
    their first :data:`HDBSCAN_PCA_DIMS` principal components (randomised SVD, seeded);
    HDBSCAN itself makes no random choices. Time grows faster than linearly with N: 11 s
    for 10,000 × 512-D vectors and 81 s for 50,000 on 2 busy cores, so hundreds of
    thousands take a long time; cluster a sample, or use :func:`cluster_kmeans`.

    Args:
        vectors: ``(N, D)`` float32 vectors, N >= 2.
        min_cluster_size: Fewest vectors a cluster may have, 2 <= min_cluster_size <= N.
        seed: Seed of the PCA.

    Returns:
        ``(N,)`` int64 labels: ``-1`` for noise, clusters ``0, 1, ...`` from the largest.

    Raises:
        ConfigError: ``min_cluster_size`` is not an integer in 2 .. N.
        EmbeddingError: ``vectors`` not 2-D, fewer than 2 rows, or not finite.
    """
    data = as_vectors(vectors, name="vectors", min_rows=2)
    min_cluster_size = _check_int(min_cluster_size, name="min_cluster_size", minimum=2)
    n, dim = data.shape
    if min_cluster_size > n:
        raise ConfigError(
            f"min_cluster_size={min_cluster_size} is more than the {n} vectors; pass a value <= {n}"
        )
    from sklearn.cluster import HDBSCAN  # type: ignore[import-untyped]

    if dim > HDBSCAN_PCA_DIMS and n > HDBSCAN_PCA_DIMS:
        from sklearn.decomposition import PCA  # type: ignore[import-untyped]

        logger.info(
            "projecting %d x %d vectors to %d dimensions for HDBSCAN", n, dim, HDBSCAN_PCA_DIMS
        )
        data = PCA(n_components=HDBSCAN_PCA_DIMS, random_state=seed).fit_transform(data)
    labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(data)
    return _by_size(labels)


def choose_k(
    vectors: npt.ArrayLike, *, k_range: Iterable[int] = range(2, 21), seed: int = 0
) -> int:
    """Pick the number of k-means clusters with the best silhouette score.

    Scores k-means labels of a seeded sample of at most :data:`CHOOSE_K_SAMPLE` vectors
    for each ``k`` (Euclidean silhouette, from -1 to 1; higher means tighter, better
    separated clusters). Ties go to the smaller ``k``.

    Args:
        vectors: ``(N, D)`` float32 vectors, N >= 3.
        k_range: Candidate cluster numbers, each between 2 and one less than the sample.
        seed: Seed of the sample and of k-means.

    Returns:
        The chosen ``k``.

    Raises:
        ConfigError: ``k_range`` empty, or a value that is not an integer in
            2 .. min(N, 5,000) - 1.
        EmbeddingError: ``vectors`` not 2-D, fewer than 3 rows, or not finite.
    """
    data = as_vectors(vectors, name="vectors", min_rows=3)
    candidates = list(k_range)
    if not candidates:
        raise ConfigError("k_range is empty; pass the cluster numbers to try, e.g. range(2, 21)")
    rng = np.random.default_rng(seed)
    if len(data) > CHOOSE_K_SAMPLE:
        data = data[np.sort(rng.choice(len(data), size=CHOOSE_K_SAMPLE, replace=False))]
    largest = len(data) - 1
    for k in candidates:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 2 <= k <= largest:
            raise ConfigError(
                f"k_range values must be integers from 2 to {largest} (one less than the "
                f"{len(data)} vectors scored); got {k!r}"
            )
    from sklearn.metrics import silhouette_score  # type: ignore[import-untyped]

    best_k, best_score = int(candidates[0]), -np.inf
    for k in sorted({int(k) for k in candidates}):
        labels = cluster_kmeans(data, k=k, seed=seed)
        if len(np.unique(labels)) < 2:
            continue  # all vectors identical: no silhouette
        score = float(silhouette_score(data, labels))
        logger.debug("k=%d: silhouette %.4f", k, score)
        if score > best_score:
            best_k, best_score = k, score
    logger.info("chose k=%d (silhouette %.3f)", best_k, best_score)
    return best_k
