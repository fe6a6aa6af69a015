"""Diversity samplers over embedding vectors: k-center greedy, TypiClust and ProbCover.

All samplers take ``(N, D)`` float vectors (L2-normalised float32 embeddings in practice;
other floating dtypes are converted to float32, nothing is rescaled) and use Euclidean
distance. They return ``(n,)`` int64 row indices in the order they were picked, never an
index in ``already_selected`` and never the same index twice. Every random choice is
drawn from ``seed``, so the same inputs give the same picks.

Cost, for orientation (2 cores): :func:`kcenter_greedy` is linear in ``N`` per pass and
picks 1,000 of 1,000,000 x 512 vectors in seconds; :func:`typicality`, :func:`typiclust`
and :func:`probcover` do exact nearest-neighbour or range searches (FAISS ``IndexFlatL2``),
which grow as ``N**2 * D`` and suit ``N`` up to about 200,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError

__all__ = [
    "ProbCoverResult",
    "kcenter_greedy",
    "probcover",
    "typicality",
    "typiclust",
]

IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

_ROW_CHUNK = 4096
"""Rows per block in k-center's distance updates (8 MiB of 512-D float32)."""
_CENTER_CHUNK = 1024
"""Centres per block when many distances are brought up to date at once."""
_SEARCH_BATCH = 8192
"""Query rows per FAISS search call, to bound the size of each answer."""
_TYPICALITY_EPS = 1e-5
"""Added to the mean distance before inverting, as in the TypiClust reference code."""
_MIN_CLUSTER_SIZE = 5
"""TypiClust passes over clusters smaller than this while larger ones still have points."""
_KMEANS_NITER = 20
_RADIUS_MARGIN = 1e-5
"""The chosen radius is this fraction below the purity limit, so rounding cannot cross it."""
_PURITY_SAMPLE = 20_000
"""ProbCover's radius rule measures purity on at most this many (seeded) points."""


# --------------------------------------------------------------------------- validation


def _as_vectors(vectors: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return C-contiguous float32 vectors and their squared norms, after checking them."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ConfigError(
            f"vectors must be a 2-D (N, D) array with N >= 1 and D >= 1; received shape "
            f"{array.shape}; pass one embedding per row"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(
            f"vectors must be floating point; received dtype {array.dtype}; pass float32 embeddings"
        )
    data = np.ascontiguousarray(array, dtype=np.float32)
    sq = np.empty(data.shape[0], dtype=np.float32)
    for start in range(0, data.shape[0], _ROW_CHUNK * 16):
        block = data[start : start + _ROW_CHUNK * 16]
        sq[start : start + len(block)] = np.einsum("ij,ij->i", block, block)
    if not np.isfinite(sq).all():
        bad = int(np.flatnonzero(~np.isfinite(sq))[0])
        raise ConfigError(
            f"vectors must be finite; row {bad} holds NaN, inf or values too large for "
            "float32; check the embeddings"
        )
    return data, sq


def _check_int(value: object, *, name: str, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer; received {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; received {value}")
    return int(value)


def _as_index_set(indices: npt.ArrayLike | None, n_rows: int, *, name: str) -> IndexArray:
    """Return sorted unique int64 row indices, checked to lie in ``0 .. n_rows - 1``."""
    if indices is None:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(
            f"{name} must be a 1-D array of integer row indices; received shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    if array.min() < 0 or array.max() >= n_rows:
        raise ConfigError(
            f"{name} must hold row indices in 0 .. {n_rows - 1}; received values from "
            f"{int(array.min())} to {int(array.max())}"
        )
    return np.unique(array.astype(np.int64))


def _as_mask(candidates: npt.ArrayLike | None, n_rows: int) -> npt.NDArray[np.bool_]:
    """Return a ``(n_rows,)`` bool mask from a bool mask or integer indices (or all True)."""
    if candidates is None:
        return np.ones(n_rows, dtype=np.bool_)
    array = np.asarray(candidates)
    if array.dtype == np.bool_:
        if array.shape != (n_rows,):
            raise ConfigError(
                f"candidates as a boolean mask must have shape ({n_rows},), one flag per "
                f"vector; received shape {array.shape}"
            )
        return array.copy()
    mask = np.zeros(n_rows, dtype=np.bool_)
    mask[_as_index_set(array, n_rows, name="candidates")] = True
    return mask


def _check_n(n: object, available: int) -> int:
    """Return ``n`` if it is an integer in ``1 .. available``."""
    count = _check_int(n, name="n", minimum=1)
    if count > available:
        raise ConfigError(
            f"asked for n={count} but only {available} candidates remain (not already "
            f"selected); pass n <= {available}"
        )
    return count


# --------------------------------------------------------------------------- k-center


def _refresh_block(
    data: FloatArray,
    sq: FloatArray,
    mindist: FloatArray,
    centers: FloatArray,
    center_sq: FloatArray,
    start: int,
    stop: int,
) -> None:
    """Lower ``mindist[start:stop]`` (squared distances) to cover ``centers``, in place.

    Rows already excluded (``mindist < 0``) stay excluded.
    """
    block = data[start:stop]
    best = mindist[start:stop]
    for c0 in range(0, len(centers), _CENTER_CHUNK):
        cen = centers[c0 : c0 + _CENTER_CHUNK]
        dots = block @ cen.T
        dots *= -2.0
        dots += center_sq[c0 : c0 + _CENTER_CHUNK][None, :]
        nearest = dots.min(axis=1)
        nearest += sq[start:stop]
        np.maximum(nearest, 0.0, out=nearest)
        live = best >= 0
        np.minimum(best, nearest, out=best, where=live)


def kcenter_greedy(
    vectors: npt.ArrayLike,
    n: int,
    *,
    already_selected: npt.ArrayLike | None = None,
    candidates: npt.ArrayLike | None = None,
    seed: int = 0,
) -> IndexArray:
    """Pick ``n`` vectors by core-set (k-center) greedy: each pick is the farthest point.

    Each step picks the candidate whose distance to its nearest selected point (the
    already-selected ones and the picks so far) is largest (Sener & Savarese, 2018). With
    nothing already selected, the first pick is a seeded random candidate. Ties go to the
    lowest index.

    The result is exactly the textbook greedy, computed lazily: rows are kept in blocks of
    4,096 with an upper bound on each block's largest distance, and a block's distances are
    brought up to date (one ``(B, D) x (D, t)`` product for the ``t`` picks it has not yet
    seen) only when its bound could hold the next pick. The first pick costs one pass over
    the data; later picks usually touch a few blocks. Distances use
    ``||a||**2 + ||b||**2 - 2 a.b``, so vectors need not be unit length. Memory beyond the
    input is ``O(N)`` plus one block.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <=`` the number of candidates not already selected.
        already_selected: ``(M,)`` int row indices already labelled; they count as
            centres and are never picked. Duplicates are ignored.
        candidates: The rows that may be picked: a ``(N,)`` bool mask or int row indices.
            ``None`` allows every row. Rows outside it can still be already selected.
        seed: Seed of the first pick when nothing is already selected.

    Returns:
        ``(n,)`` int64 row indices in pick order.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of remaining candidates; ``already_selected`` or
            ``candidates`` not valid row indices or mask.

    Example:
        >>> import numpy as np
        >>> points = np.array([[0, 0], [0, 1], [10, 0], [0.1, 0]], dtype=np.float32)
        >>> kcenter_greedy(points, 2, already_selected=[0]).tolist()
        [2, 1]
    """
    data, sq = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    allowed = _as_mask(candidates, n_rows)
    allowed[selected] = False
    count = _check_n(n, int(allowed.sum()))

    # Squared distance to the nearest centre; -1 marks rows that may not be picked.
    mindist = np.full(n_rows, np.inf, dtype=np.float32)
    mindist[~allowed] = -1.0
    starts = np.arange(0, n_rows, _ROW_CHUNK)
    stops = np.minimum(starts + _ROW_CHUNK, n_rows)
    n_blocks = len(starts)
    bound = np.array([mindist[a:b].max() for a, b in zip(starts, stops, strict=True)])
    centers = np.empty((len(selected) + count, data.shape[1]), dtype=np.float32)
    centers[: len(selected)] = data[selected]
    center_sq = np.empty(len(centers), dtype=np.float32)
    center_sq[: len(selected)] = sq[selected]
    n_centers = len(selected)
    seen = np.zeros(n_blocks, dtype=np.int64)  # centres each block's distances include

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        if n_centers == 0:
            rng = np.random.default_rng(seed)
            pick = int(rng.choice(np.flatnonzero(allowed)))
        else:
            while True:
                block = int(np.argmax(bound))
                if seen[block] == n_centers:
                    break
                a, b = int(starts[block]), int(stops[block])
                _refresh_block(
                    data,
                    sq,
                    mindist,
                    centers[seen[block] : n_centers],
                    center_sq[seen[block] : n_centers],
                    a,
                    b,
                )
                seen[block] = n_centers
                bound[block] = mindist[a:b].max()
            a = int(starts[block])
            pick = a + int(np.argmax(mindist[a : int(stops[block])]))
        picks[step] = pick
        mindist[pick] = -1.0
        block = pick // _ROW_CHUNK
        bound[block] = mindist[int(starts[block]) : int(stops[block])].max()
        centers[n_centers] = data[pick]
        center_sq[n_centers] = sq[pick]
        n_centers += 1
    return picks


# --------------------------------------------------------------------------- typicality


def _knn_mean_distance(data: FloatArray, k: int) -> npt.NDArray[np.float64]:
    """Mean Euclidean distance from each row to its ``k`` nearest other rows (exact)."""
    import faiss

    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    out = np.empty(data.shape[0], dtype=np.float64)
    for start in range(0, data.shape[0], _SEARCH_BATCH):
        block = data[start : start + _SEARCH_BATCH]
        dist_sq, _ = index.search(block, k + 1)
        # Column 0 is the row itself (or an exact duplicate: the same distance, zero).
        dist = np.sqrt(np.maximum(dist_sq[:, 1:].astype(np.float64), 0.0))
        out[start : start + len(block)] = dist.mean(axis=1)
    return out


def typicality(vectors: npt.ArrayLike, *, k: int = 20) -> npt.NDArray[np.float64]:
    """TypiClust's typicality: the inverse mean distance to the ``k`` nearest neighbours.

    ``typicality(x) = 1 / (mean_{y in kNN(x)} ||x - y|| + 1e-5)`` (Hacohen et al., 2022);
    high in dense regions, low for outliers. Neighbours come from an exact FAISS
    ``IndexFlatL2`` search in batches of 8,192 queries, so time grows as ``N**2 * D``:
    fine up to about 200,000 vectors, a sample beyond that.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32), N >= 2.
        k: Neighbours per point, ``1 <= k <= N - 1``.

    Returns:
        ``(N,)`` float64 typicality, positive.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``k`` not an integer in
            ``1 .. N - 1``.
    """
    data, _ = _as_vectors(vectors)
    k = _check_int(k, name="k", minimum=1)
    if k > data.shape[0] - 1:
        raise ConfigError(
            f"k={k} neighbours needs at least {k + 1} vectors; received {data.shape[0]}; "
            f"pass k <= {data.shape[0] - 1}"
        )
    return 1.0 / (_knn_mean_distance(data, k) + _TYPICALITY_EPS)


def _kmeans(data: FloatArray, n_clusters: int, *, seed: int) -> IndexArray:
    """Seeded FAISS k-means labels ``(N,)`` int64 in ``0 .. n_clusters - 1``."""
    if n_clusters == 1:
        return np.zeros(data.shape[0], dtype=np.int64)
    import faiss

    kmeans = faiss.Kmeans(
        data.shape[1],
        n_clusters,
        niter=_KMEANS_NITER,
        seed=int(seed),
        min_points_per_centroid=1,
        verbose=False,
    )
    kmeans.train(data)
    _, assigned = kmeans.index.search(data, 1)
    return np.asarray(assigned[:, 0], dtype=np.int64)


def typiclust(
    vectors: npt.ArrayLike,
    n: int,
    *,
    already_selected: npt.ArrayLike | None = None,
    k: int = 20,
    seed: int = 0,
) -> IndexArray:
    """Pick ``n`` typical points from distinct clusters (TypiClust, Hacohen et al., 2022).

    The vectors are clustered into ``len(already_selected) + n`` clusters by seeded FAISS
    k-means. Each step takes the cluster with the fewest selected points, largest first
    (ties to the lowest cluster id), passing over clusters of fewer than 5 points while
    larger ones have points left, and picks its most typical unselected point, with
    typicality (:func:`typicality`) computed among the cluster's unselected points using
    ``min(k, size - 1)`` neighbours. A cluster of one point gives that point.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <= N - len(already_selected)``.
        already_selected: ``(M,)`` int row indices already labelled; never picked, and
            their clusters come last. Duplicates are ignored.
        k: Neighbours for typicality, ``k >= 1``.
        seed: Seed of the k-means.

    Returns:
        ``(n,)`` int64 row indices in pick order.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of unselected rows; ``k`` not a positive integer;
            ``already_selected`` not valid row indices.
    """
    data, _ = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    count = _check_n(n, n_rows - len(selected))
    k = _check_int(k, name="k", minimum=1)

    labels = _kmeans(data, min(len(selected) + count, n_rows), seed=seed)
    n_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    taken = np.bincount(labels[selected], minlength=n_clusters)
    free = labels.copy()
    free[selected] = -1  # -1: not available any more
    left = sizes - taken

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        usable = left > 0
        big = usable & (sizes >= _MIN_CLUSTER_SIZE)
        pool = np.flatnonzero(big if big.any() else usable)
        # Fewest selected first, then largest, then lowest id (lexsort: last key first).
        cluster = int(pool[np.lexsort((pool, -sizes[pool], taken[pool]))[0]])
        members = np.flatnonzero(free == cluster)
        if len(members) == 1:
            pick = int(members[0])
        else:
            scores = 1.0 / (
                _knn_mean_distance(data[members], min(k, len(members) - 1)) + _TYPICALITY_EPS
            )
            pick = int(members[int(np.argmax(scores))])
        picks[step] = pick
        free[pick] = -1
        taken[cluster] += 1
        left[cluster] -= 1
    return picks


# --------------------------------------------------------------------------- ProbCover


@dataclass(frozen=True)
class ProbCoverResult:
    """What :func:`probcover` picked and with which ball radius.

    Attributes:
        indices: ``(n,)`` int64 row indices in pick order.
        radius: The ball radius (Euclidean) used, given or chosen.
        coverage: Fraction of all rows within ``radius`` of a selected row (the already
            selected and the new picks), in ``[0, 1]``.
    """

    indices: IndexArray
    radius: float
    coverage: float


def _csr(rows: IndexArray, cols: IndexArray, n_rows: int) -> tuple[IndexArray, IndexArray]:
    """Compressed rows: ``(indptr (n_rows + 1,), cols sorted by row)``."""
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols[order]


def _gather(indptr: IndexArray, cols: IndexArray, rows: IndexArray) -> IndexArray:
    """Concatenate the column lists of ``rows`` of a compressed-row graph."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return cols[offsets + np.arange(total, dtype=np.int64)]


def _ball_graph(data: FloatArray, radius: float) -> tuple[IndexArray, IndexArray]:
    """Directed edges ``i -> j`` for ``||x_i - x_j|| <= radius``, self-loops included."""
    import faiss

    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    # FAISS keeps distances strictly below its threshold; nudge it to include the radius.
    threshold = float(np.nextafter(np.float32(radius * radius), np.float32(np.inf)))
    sources: list[IndexArray] = []
    targets: list[IndexArray] = []
    for start in range(0, data.shape[0], _SEARCH_BATCH):
        block = data[start : start + _SEARCH_BATCH]
        lims, _, found = index.range_search(block, threshold)
        src = np.repeat(
            np.arange(start, start + len(block), dtype=np.int64), np.diff(lims).astype(np.int64)
        )
        dst = np.asarray(found, dtype=np.int64)
        keep = src != dst  # self-loops are added below, whatever rounding did
        sources.append(src[keep])
        targets.append(dst[keep])
    everyone = np.arange(data.shape[0], dtype=np.int64)
    return np.concatenate([everyone, *sources]), np.concatenate([everyone, *targets])


def _auto_radius(data: FloatArray, *, n_clusters: int, purity: float, seed: int) -> float:
    """The largest radius at which at least ``purity`` of (sampled) balls are pure."""
    import faiss

    labels = _kmeans(data, n_clusters, seed=seed)
    rng = np.random.default_rng(seed)
    n_rows = data.shape[0]
    queries = np.arange(n_rows)
    if n_rows > _PURITY_SAMPLE:
        queries = np.sort(rng.choice(n_rows, size=_PURITY_SAMPLE, replace=False))
    # A ball around x is pure exactly while the radius is below the distance from x to
    # the nearest point of another pseudo-label, so find that distance for each query.
    other = np.full(len(queries), np.inf, dtype=np.float64)
    for cluster in np.unique(labels[queries]):
        outside = np.flatnonzero(labels != cluster)
        if len(outside) == 0:
            continue
        index = faiss.IndexFlatL2(data.shape[1])
        index.add(data[outside])
        mine = np.flatnonzero(labels[queries] == cluster)
        for start in range(0, len(mine), _SEARCH_BATCH):
            rows = mine[start : start + _SEARCH_BATCH]
            dist_sq, _ = index.search(data[queries[rows]], 1)
            other[rows] = np.sqrt(np.maximum(dist_sq[:, 0].astype(np.float64), 0.0))
    ordered = np.sort(other)
    # Pure share >= purity  <=>  at most floor((1 - purity) * Q) balls reach another label.
    limit = ordered[int(np.floor((1.0 - purity) * len(ordered) + 1e-9))]
    if not np.isfinite(limit):
        raise ConfigError(
            f"k-means found a single pseudo-label among the vectors (n_clusters={n_clusters}),"
            " so no radius limits purity; pass radius explicitly"
        )
    # Just below the limit, with room for float32 rounding in the distances.
    return float(limit) * (1.0 - _RADIUS_MARGIN)


def probcover(
    vectors: npt.ArrayLike,
    n: int,
    *,
    radius: float | None = None,
    already_selected: npt.ArrayLike | None = None,
    n_clusters: int = 10,
    purity: float = 0.95,
    seed: int = 0,
) -> ProbCoverResult:
    """Pick ``n`` points that cover the most data with balls of ``radius`` (ProbCover).

    ProbCover (Yehuda et al., 2022) builds the graph ``i -> j`` for every pair within
    ``radius`` (exact FAISS range search; self-loops included), marks the balls of the
    already-selected points as covered, and then greedily picks the point whose ball holds
    the most uncovered points, marking them covered. Once every point is covered, the
    remaining picks are seeded random unselected points, as in the reference code. Ties go
    to the lowest index.

    Radius rule (``radius=None``): the rows are clustered into ``n_clusters`` seeded k-means
    pseudo-labels (use the number of classes when known), and the radius is the largest for
    which at least ``purity`` of the balls are pure, i.e. contain only points of their
    centre's pseudo-label. A ball around ``x`` is pure exactly while the radius is below
    the distance from ``x`` to the nearest point of another label, so the rule is computed
    exactly from that distance's ``1 - purity`` quantile rather than by scanning a grid of
    radii (measured on a seeded sample of 20,000 rows when there are more).

    The graph holds every pair within the radius: memory grows with the average ball size
    times ``N``, so a radius that puts most of the data in each ball is costly.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <= N - len(already_selected)``.
        radius: Ball radius (Euclidean distance, ``>= 0``), or ``None`` to choose it.
        already_selected: ``(M,)`` int row indices already labelled; their balls count as
            covered and they are never picked. Duplicates are ignored.
        n_clusters: Pseudo-labels for the radius rule, ``2 <= n_clusters <= N``.
        purity: Share of balls that must be pure for the radius rule, in ``(0, 1]``.
        seed: Seed of the k-means and of the picks made after full coverage.

    Returns:
        A :class:`ProbCoverResult` with the ``(n,)`` int64 picks, the radius used and the
        coverage reached.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of unselected rows; ``radius`` negative or not finite;
            ``n_clusters`` or ``purity`` out of range; ``already_selected`` not valid row
            indices; or k-means found only one pseudo-label (pass ``radius``).
    """
    data, _ = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    count = _check_n(n, n_rows - len(selected))
    if radius is None:
        n_clusters = _check_int(n_clusters, name="n_clusters", minimum=2)
        if n_clusters > n_rows:
            raise ConfigError(
                f"n_clusters={n_clusters} pseudo-labels is more than the {n_rows} vectors; "
                f"pass n_clusters <= {n_rows} or give radius"
            )
        if not 0.0 < purity <= 1.0:
            raise ConfigError(f"purity must be in (0, 1]; received {purity!r}")
        radius = _auto_radius(data, n_clusters=n_clusters, purity=purity, seed=seed)
    elif isinstance(radius, bool) or not np.isfinite(radius) or radius < 0:
        raise ConfigError(
            f"radius must be a finite distance >= 0 or None to choose it; received {radius!r}"
        )
    radius = float(radius)

    src, dst = _ball_graph(data, radius)
    forward = _csr(src, dst, n_rows)  # ball of i: the points i covers
    backward = _csr(dst, src, n_rows)  # the points whose balls hold j

    covered = np.zeros(n_rows, dtype=np.bool_)
    covered[_gather(*forward, selected)] = True
    degree = np.bincount(src[~covered[dst]], minlength=n_rows).astype(np.int64)
    chosen = np.zeros(n_rows, dtype=np.bool_)
    chosen[selected] = True
    degree[chosen] = -1
    rng = np.random.default_rng(seed)

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        pick = int(np.argmax(degree))
        if degree[pick] <= 0:
            pick = int(rng.choice(np.flatnonzero(~chosen)))
        picks[step] = pick
        chosen[pick] = True
        ball = _gather(*forward, np.array([pick], dtype=np.int64))
        new = np.unique(ball[~covered[ball]])
        covered[new] = True
        if len(new):
            degree -= np.bincount(_gather(*backward, new), minlength=n_rows)
        degree[chosen] = -1
    return ProbCoverResult(indices=picks, radius=radius, coverage=float(covered.mean()))
