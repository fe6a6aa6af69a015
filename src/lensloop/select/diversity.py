"""Diversity samplers over embedding vectors: k-center greedy, TypiClust and ProbCover.

All samplers take ``(N, D)`` float vectors (L2-normalised float32 embeddings in practice;
other floating dtypes are converted to float32, nothing is rescaled) and use Euclidean
distance. They return ``(n,)`` int64 row indices in the order they were picked, never an
index in ``already_selected`` and never the same index twice. Every random choice is
drawn from ``seed``, so the same inputs give the same picks.

Cost, for orientation (2 cores, 1,000 picks from 1,000,000 x 512 vectors):
:func:`kcenter_greedy` is linear in ``N`` per pass and takes about 10 s, weighted or not.
:func:`typiclust` takes about 16 s (``bench/bench_select.py``), most of it in the
seeded FAISS k-means (at most 500 clusters by default, trained on a sample of 256 points
per cluster, then one pass assigning every row); typicality is then computed once per
visited cluster on at most 1,000 of its points against at most 1,000 neighbours.
:func:`typicality` and :func:`probcover` do exact nearest-neighbour or range searches
over all rows (FAISS ``IndexFlatL2``), which grow as ``N**2 * D`` and suit ``N`` up to
about 200,000; ProbCover's graph is also capped at ``max_edges`` edges.
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
_TYPICALITY_SAMPLE = 1000
"""TypiClust scores and measures neighbours on at most this many (seeded) points a cluster."""
_KMEANS_NITER = 20
_RADIUS_MARGIN = 1e-5
"""The chosen radius is this fraction below the purity limit, so rounding cannot cross it."""
_PURITY_SAMPLE = 20_000
"""ProbCover's radius rule measures purity on at most this many (seeded) points."""
_EDGE_BYTES = 40
"""Peak bytes per ProbCover graph edge: int64 edge lists plus two compressed-row copies."""


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


def _as_bonus(bonus: npt.ArrayLike, n_rows: int) -> npt.NDArray[np.float64]:
    """Return ``bonus`` as ``(n_rows,)`` finite float64 scores, after checking it."""
    array = np.asarray(bonus)
    if array.shape != (n_rows,):
        raise ConfigError(
            f"bonus must have shape ({n_rows},), one score per vector; received shape {array.shape}"
        )
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ConfigError(
            f"bonus must hold real-valued scores; received dtype {array.dtype}; pass a float "
            "array such as a weighted sum of uncertainty scores"
        )
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ConfigError(
            f"bonus must be finite; row {bad} holds {values[bad]}; replace NaN or inf scores "
            "before selecting"
        )
    return values


def _check_strength(strength: object) -> float:
    """Return ``strength`` as a float if it is a finite real number >= 0."""
    if isinstance(strength, bool) or not isinstance(
        strength, int | float | np.integer | np.floating
    ):
        raise ConfigError(
            f"strength must be a real number; received {strength!r} ({type(strength).__name__})"
        )
    value = float(strength)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(
            f"strength must be finite and >= 0 (0 ranks by bonus alone); received {strength!r}"
        )
    return value


def kcenter_greedy(
    vectors: npt.ArrayLike,
    n: int,
    *,
    already_selected: npt.ArrayLike | None = None,
    candidates: npt.ArrayLike | None = None,
    seed: int = 0,
    bonus: npt.ArrayLike | None = None,
    strength: float = 1.0,
) -> IndexArray:
    """Pick ``n`` vectors by core-set (k-center) greedy: each pick is the farthest point.

    Each step picks the candidate whose distance to its nearest selected point (the
    already-selected ones and the picks so far) is largest (Sener & Savarese, 2018). With
    nothing already selected, the first pick is a seeded random candidate. Ties go to the
    lowest index.

    Weighted diversity (``bonus``, in the style of Lightly's weighted diversity): each
    step instead picks the candidate maximising ``strength * d(x) / scale + bonus[x]``,
    where ``d(x)`` is the distance from ``x`` to its nearest selected point and ``scale``
    is the largest such distance over the candidates at the first step that has selected
    points (fixed from then on; 1 if it is 0). So ``d / scale`` starts in ``[0, 1]`` and a
    bonus in ``[0, 1]`` (say, a weighted sum of uncertainty scores) weighs about as much
    as the distance at ``strength=1``; larger ``strength`` favours spread, ``strength=0``
    ranks by bonus alone. With nothing already selected, the first pick is the candidate
    with the highest bonus (ties to the lowest index; ``seed`` is then unused).

    The result is exactly the textbook greedy, computed lazily: rows are kept in blocks of
    4,096 with an upper bound on each block's largest distance (or score), and a block's
    distances are brought up to date (one ``(B, D) x (D, t)`` product for the ``t`` picks
    it has not yet seen) only when its bound could hold the next pick. Distances only
    shrink as centres are added, so a bound stays valid until the block is refreshed,
    after which it is the block's exact maximum. The first step with selected points
    costs one pass over the data; later picks usually touch a few blocks. Distances use
    ``||a||**2 + ||b||**2 - 2 a.b``, so vectors need not be unit length. Memory beyond the
    input is ``O(N)`` plus one block.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <=`` the number of candidates not already selected.
        already_selected: ``(M,)`` int row indices already labelled; they count as
            centres and are never picked. Duplicates are ignored.
        candidates: The rows that may be picked: a ``(N,)`` bool mask or int row indices.
            ``None`` allows every row. Rows outside it can still be already selected.
        seed: Seed of the first pick when nothing is already selected and no ``bonus``.
        bonus: ``(N,)`` finite float per-row scores added to the scaled distance, or
            ``None`` for the plain farthest-point greedy.
        strength: Weight of the scaled distance against ``bonus``, finite and ``>= 0``.
            Ignored without ``bonus``.

    Returns:
        ``(n,)`` int64 row indices in pick order.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of remaining candidates; ``already_selected`` or
            ``candidates`` not valid row indices or mask; ``bonus`` not ``(N,)`` finite
            real numbers; ``strength`` negative or not finite.

    Example:
        >>> import numpy as np
        >>> points = np.array([[0, 0], [0, 1], [10, 0], [0.1, 0]], dtype=np.float32)
        >>> kcenter_greedy(points, 2, already_selected=[0]).tolist()
        [2, 1]
        >>> kcenter_greedy(points, 2, already_selected=[0], bonus=[0, 0.95, 0, 0]).tolist()
        [1, 2]
    """
    data, sq = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    allowed = _as_mask(candidates, n_rows)
    allowed[selected] = False
    count = _check_n(n, int(allowed.sum()))
    weight = _check_strength(strength)
    gain = None if bonus is None else _as_bonus(bonus, n_rows)
    if gain is not None and weight == 0.0:
        # Distances do not count: the greedy order is the bonus order, ties to lowest index.
        pool = np.flatnonzero(allowed)
        return pool[np.argsort(-gain[pool], kind="stable")[:count]].astype(np.int64)

    # Squared distance to the nearest centre; -1 marks rows that may not be picked.
    mindist = np.full(n_rows, np.inf, dtype=np.float32)
    mindist[~allowed] = -1.0
    starts = np.arange(0, n_rows, _ROW_CHUNK)
    stops = np.minimum(starts + _ROW_CHUNK, n_rows)
    n_blocks = len(starts)
    bound = np.array([mindist[a:b].max() for a, b in zip(starts, stops, strict=True)])
    if gain is not None:
        # Scores can be negative, so a block with nothing to pick is bounded by -inf.
        bound = np.where(bound < 0, -np.inf, np.inf)
    ratio = 0.0  # strength / scale, fixed at the first step with centres (weighted only)
    scaled = gain is None  # whether the block bounds are in their final units
    centers = np.empty((len(selected) + count, data.shape[1]), dtype=np.float32)
    centers[: len(selected)] = data[selected]
    center_sq = np.empty(len(centers), dtype=np.float32)
    center_sq[: len(selected)] = sq[selected]
    n_centers = len(selected)
    seen = np.zeros(n_blocks, dtype=np.int64)  # centres each block's distances include

    def refresh(block: int) -> None:
        """Bring block ``block``'s distances up to date with every centre so far."""
        _refresh_block(
            data,
            sq,
            mindist,
            centers[seen[block] : n_centers],
            center_sq[seen[block] : n_centers],
            int(starts[block]),
            int(stops[block]),
        )
        seen[block] = n_centers

    def value(block: int) -> npt.NDArray[np.floating]:
        """What the greedy maximises over a block: squared distance, or the weighted score."""
        dist_sq = mindist[int(starts[block]) : int(stops[block])]
        if gain is None:
            return dist_sq
        score = np.sqrt(np.maximum(dist_sq, 0.0).astype(np.float64))
        score *= ratio
        score += gain[int(starts[block]) : int(stops[block])]
        score[dist_sq < 0] = -np.inf
        return score

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        if n_centers == 0:
            pool = np.flatnonzero(allowed)
            if gain is None:
                pick = int(np.random.default_rng(seed).choice(pool))
            else:
                pick = int(pool[np.argmax(gain[pool])])
        else:
            if not scaled:
                # First weighted step with centres: exact distances everywhere fix the scale.
                live = np.flatnonzero(bound > -np.inf).tolist()
                for block in live:
                    refresh(block)
                far = float(mindist.max())
                ratio = weight / (float(np.sqrt(far)) if far > 0 else 1.0)
                for block in live:
                    bound[block] = value(block).max()
                scaled = True
            while True:
                block = int(np.argmax(bound))
                if seen[block] == n_centers:
                    break
                refresh(block)
                bound[block] = value(block).max()
            pick = int(starts[block]) + int(np.argmax(value(block)))
        picks[step] = pick
        mindist[pick] = -1.0
        block = pick // _ROW_CHUNK
        if scaled:
            bound[block] = value(block).max()
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


def _most_typical_first(
    data: FloatArray, sq: FloatArray, rows: IndexArray, reference: IndexArray, k: int
) -> IndexArray:
    """Order ``rows`` by typicality against the sorted ``reference`` rows, highest first.

    Typicality is ``1 / (mean distance to the k nearest reference rows + 1e-5)``; a row is
    not its own neighbour (an exact duplicate still is, at distance zero). ``k = 0`` (a
    one-point reference) keeps ``rows`` as they are. Ties keep the order of ``rows``.
    """
    if k == 0:
        return rows
    dist_sq = data[rows] @ data[reference].T
    dist_sq *= -2.0
    dist_sq += sq[reference][None, :]
    dist_sq += sq[rows][:, None]
    np.maximum(dist_sq, 0.0, out=dist_sq)
    at = np.minimum(np.searchsorted(reference, rows), len(reference) - 1)
    own = np.flatnonzero(reference[at] == rows)
    dist_sq[own, at[own]] = np.inf
    nearest = np.partition(dist_sq, k - 1, axis=1)[:, :k].astype(np.float64)
    score = 1.0 / (np.sqrt(nearest).mean(axis=1) + _TYPICALITY_EPS)
    return rows[np.argsort(-score, kind="stable")]


def typiclust(
    vectors: npt.ArrayLike,
    n: int,
    *,
    already_selected: npt.ArrayLike | None = None,
    candidates: npt.ArrayLike | None = None,
    k: int = 20,
    max_clusters: int = 500,
    seed: int = 0,
) -> IndexArray:
    """Pick ``n`` typical points from distinct clusters (TypiClust, Hacohen et al., 2022).

    All the vectors are clustered into ``min(len(already_selected) + n, max_clusters, N)``
    clusters by seeded FAISS k-means (the reference code caps the count at 500). Each
    step takes, among the clusters that still hold a pickable candidate, the one with the
    fewest selected points (already selected or picked), largest first (ties to the
    lowest cluster id), passing over clusters of fewer than 5 points while larger ones are
    eligible, and picks its most typical candidate. With more picks than clusters, this
    rule gives clusters their second pick, and so on.

    Typicality (:func:`typicality`) is computed once per cluster, on its first visit: the
    inverse mean distance to the ``min(k, size - 1)`` nearest of all the cluster's points
    (selected and non-candidate points included, so it measures the density of the data);
    picks then take the cluster's candidates in that order. A cluster of one point gives
    that point. (The reference code recomputes typicality at every pick among the
    cluster's points not yet labelled; caching it keeps the cost to one computation per
    cluster.) In a cluster of more than 1,000 points the score is an estimate: neighbours
    are found among a seeded random sample of 1,000 of its points, and only a seeded
    random sample of 1,000 of its candidates is scored (the next sample once those are
    all picked).

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <=`` the number of candidates not already selected.
        already_selected: ``(M,)`` int row indices already labelled; never picked, and
            their clusters come last. Duplicates are ignored.
        candidates: The rows that may be picked: a ``(N,)`` bool mask or int row indices.
            ``None`` allows every row. Clusters and typicality still use every row.
        k: Neighbours for typicality, ``k >= 1``.
        max_clusters: Most k-means clusters, ``>= 1``.
        seed: Seed of the k-means and of the samples in large clusters.

    Returns:
        ``(n,)`` int64 row indices in pick order.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of remaining candidates; ``k`` or ``max_clusters`` not a
            positive integer; ``already_selected`` or ``candidates`` not valid row
            indices or mask.
    """
    data, sq = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    allowed = _as_mask(candidates, n_rows)
    allowed[selected] = False
    count = _check_n(n, int(allowed.sum()))
    k = _check_int(k, name="k", minimum=1)
    max_clusters = _check_int(max_clusters, name="max_clusters", minimum=1)

    n_clusters = min(len(selected) + count, max_clusters, n_rows)
    labels = _kmeans(data, n_clusters, seed=seed)
    by_cluster = np.argsort(labels, kind="stable")  # rows grouped by cluster, ascending
    sizes = np.bincount(labels, minlength=n_clusters)
    first = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(sizes, out=first[1:])
    taken = np.bincount(labels[selected], minlength=n_clusters)
    left = np.bincount(labels[allowed], minlength=n_clusters)  # pickable rows per cluster
    # Per visited cluster: the rows its typicality is measured against, its candidates
    # not yet scored (in seeded random order when there are many), and its scored ones
    # still pickable, least typical first so that the next pick is popped off the end.
    reference: dict[int, IndexArray] = {}
    unscored: dict[int, IndexArray] = {}
    ready: dict[int, list[int]] = {}

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        usable = left > 0
        big = usable & (sizes >= _MIN_CLUSTER_SIZE)
        pool = np.flatnonzero(big if big.any() else usable)
        # Fewest selected first, then largest, then lowest id (lexsort: last key first).
        cluster = int(pool[np.lexsort((pool, -sizes[pool], taken[pool]))[0]])
        if cluster not in reference:
            members = by_cluster[first[cluster] : first[cluster + 1]]
            pickable = members[allowed[members]]
            reference[cluster] = members
            unscored[cluster] = pickable
            if len(members) > _TYPICALITY_SAMPLE:
                rng = np.random.default_rng([seed, cluster])
                reference[cluster] = np.sort(
                    rng.choice(members, size=_TYPICALITY_SAMPLE, replace=False)
                )
                unscored[cluster] = rng.permutation(pickable)
            ready[cluster] = []
        if not ready[cluster]:
            rows = np.sort(unscored[cluster][:_TYPICALITY_SAMPLE])
            unscored[cluster] = unscored[cluster][_TYPICALITY_SAMPLE:]
            ref = reference[cluster]
            ordered = _most_typical_first(data, sq, rows, ref, min(k, len(ref) - 1))
            ready[cluster] = ordered[::-1].tolist()
        picks[step] = ready[cluster].pop()
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


def _ball_graph(
    data: FloatArray, radius: float, *, max_edges: int, chosen: bool
) -> tuple[IndexArray, IndexArray]:
    """Directed edges ``i -> j`` for ``||x_i - x_j|| <= radius``, self-loops included.

    Edges are counted as the range search proceeds, in batches of queries small enough
    that one batch's answer holds at most ``max_edges`` pairs; past ``max_edges`` it stops
    with a :class:`ConfigError` (``chosen``: the radius came from the purity rule).
    """
    import faiss

    n_rows = data.shape[0]
    edges = n_rows  # one self-loop per vector
    done = 0  # vectors whose balls are counted
    sources: list[IndexArray] = []
    targets: list[IndexArray] = []
    if edges <= max_edges:
        index = faiss.IndexFlatL2(data.shape[1])
        index.add(data)
        # FAISS keeps distances strictly below its threshold; nudge it to include the radius.
        threshold = float(np.nextafter(np.float32(radius * radius), np.float32(np.inf)))
        batch = max(1, min(_SEARCH_BATCH, max_edges // n_rows))
        while done < n_rows and edges <= max_edges:
            block = data[done : done + batch]
            lims, _, found = index.range_search(block, threshold)
            src = np.repeat(
                np.arange(done, done + len(block), dtype=np.int64),
                np.diff(lims).astype(np.int64),
            )
            dst = np.asarray(found, dtype=np.int64)
            keep = src != dst  # self-loops are added below, whatever rounding did
            sources.append(src[keep])
            targets.append(dst[keep])
            edges += len(sources[-1])
            done += len(block)
    if edges > max_edges:
        how = "; chosen by the purity rule, a higher purity or more n_clusters makes it smaller"
        counted = (
            f"counted over the balls of {done:,} of {n_rows:,} vectors"
            if done
            else f"its {n_rows:,} self-loops alone"
        )
        raise ConfigError(
            f"radius={radius:.6g}{how if chosen else ''}: the ProbCover graph would need at "
            f"least {edges:,} edges ({counted}), more than max_edges={max_edges:,} at about "
            f"{_EDGE_BYTES} bytes each; "
            "pass a smaller radius, fewer vectors or a larger max_edges, or use "
            "kcenter_greedy or typiclust, which build no graph"
        )
    everyone = np.arange(n_rows, dtype=np.int64)
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
    candidates: npt.ArrayLike | None = None,
    n_clusters: int = 10,
    purity: float = 0.95,
    max_edges: int = 50_000_000,
    seed: int = 0,
) -> ProbCoverResult:
    """Pick ``n`` points that cover the most data with balls of ``radius`` (ProbCover).

    ProbCover (Yehuda et al., 2022) builds the graph ``i -> j`` for every pair within
    ``radius`` (exact FAISS range search; self-loops included), marks the balls of the
    already-selected points as covered, and then greedily picks the candidate whose ball
    holds the most uncovered points, marking them covered. The graph and the coverage
    span every row; only candidates are picked. Once no candidate's ball holds an uncovered
    point, the remaining picks are seeded random candidates, as in the reference code.
    Ties go to the lowest index.

    Radius rule (``radius=None``): the rows are clustered into ``n_clusters`` seeded k-means
    pseudo-labels (use the number of classes when known), and the radius is the largest for
    which at least ``purity`` of the balls are pure, i.e. contain only points of their
    centre's pseudo-label. A ball around ``x`` is pure exactly while the radius is below
    the distance from ``x`` to the nearest point of another label, so the rule is computed
    exactly from that distance's ``1 - purity`` quantile rather than by scanning a grid of
    radii (measured on a seeded sample of 20,000 rows when there are more).

    The graph holds every pair within the radius (plus ``N`` self-loops), at about 40
    bytes per edge at its peak (int64 edge lists and two compressed-row copies): memory
    grows with the average ball size times ``N``. Edges are counted during the range
    search, which stops with an error once they pass ``max_edges``; the default of 50
    million bounds the graph at about 2 GB.

    Args:
        vectors: ``(N, D)`` float vectors (converted to float32).
        n: How many to pick, ``1 <= n <=`` the number of candidates not already selected.
        radius: Ball radius (Euclidean distance, ``>= 0``), or ``None`` to choose it.
        already_selected: ``(M,)`` int row indices already labelled; their balls count as
            covered and they are never picked. Duplicates are ignored.
        candidates: The rows that may be picked: a ``(N,)`` bool mask or int row indices.
            ``None`` allows every row. Rows outside it still count for coverage.
        n_clusters: Pseudo-labels for the radius rule, ``2 <= n_clusters <= N``.
        purity: Share of balls that must be pure for the radius rule, in ``(0, 1]``.
        max_edges: Most graph edges (self-loops included) to build, ``>= 1``.
        seed: Seed of the k-means and of the picks made after full coverage.

    Returns:
        A :class:`ProbCoverResult` with the ``(n,)`` int64 picks, the radius used and the
        coverage reached.

    Raises:
        ConfigError: ``vectors`` not a finite 2-D float array; ``n`` not an integer in
            ``1 ..`` the number of remaining candidates; ``radius`` negative or not
            finite; ``n_clusters``, ``purity`` or ``max_edges`` out of range;
            ``already_selected`` or ``candidates`` not valid row indices or mask; k-means
            found only one pseudo-label (pass ``radius``); or the graph needs more than
            ``max_edges`` edges.
    """
    data, _ = _as_vectors(vectors)
    n_rows = data.shape[0]
    selected = _as_index_set(already_selected, n_rows, name="already_selected")
    allowed = _as_mask(candidates, n_rows)
    allowed[selected] = False
    count = _check_n(n, int(allowed.sum()))
    max_edges = _check_int(max_edges, name="max_edges", minimum=1)
    chosen = radius is None
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

    src, dst = _ball_graph(data, radius, max_edges=max_edges, chosen=chosen)
    forward = _csr(src, dst, n_rows)  # ball of i: the points i covers
    backward = _csr(dst, src, n_rows)  # the points whose balls hold j

    covered = np.zeros(n_rows, dtype=np.bool_)
    covered[_gather(*forward, selected)] = True
    degree = np.bincount(src[~covered[dst]], minlength=n_rows).astype(np.int64)
    blocked = ~allowed  # not pickable: already selected, not a candidate, or picked
    degree[blocked] = -1
    rng = np.random.default_rng(seed)

    picks = np.empty(count, dtype=np.int64)
    for step in range(count):
        pick = int(np.argmax(degree))
        if degree[pick] <= 0:
            pick = int(rng.choice(np.flatnonzero(~blocked)))
        picks[step] = pick
        blocked[pick] = True
        ball = _gather(*forward, np.array([pick], dtype=np.int64))
        new = np.unique(ball[~covered[ball]])
        covered[new] = True
        if len(new):
            degree -= np.bincount(_gather(*backward, new), minlength=n_rows)
        degree[blocked] = -1
    return ProbCoverResult(indices=picks, radius=radius, coverage=float(covered.mean()))
