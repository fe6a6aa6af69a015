"""Point sets: matching within a radius, localisation and count metrics, agreement.

Points are ``(N, 2)`` float arrays of pixel ``(x, y)`` (DESIGN.md). Matching is optimal
and one-to-one (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`),
restricted to pairs closer than ``radius``. It is solved separately on each connected
group of points that lie within ``radius`` of each other (found with a k-d tree), so an
image with 20,000 cells is matched as quickly as many small images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Consensus",
    "Matching",
    "as_points",
    "consensus",
    "count_errors",
    "localisation_scores",
    "match_points",
]

Points = npt.NDArray[np.float64]


def as_points(points: npt.ArrayLike, *, name: str = "points") -> Points:
    """Return ``points`` as an ``(N, 2)`` float64 array.

    Raises:
        ValueError: Not ``(N, 2)``, or not finite.
    """
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of (x, y); got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return array


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of predicted to true points.

    Attributes:
        pairs: ``(K, 2)`` indices ``(predicted, true)`` of the matched pairs.
        distances: ``(K,)`` their distances in pixels.
        n_predicted: How many predicted points there were.
        n_true: How many true points there were.
    """

    pairs: npt.NDArray[np.intp]
    distances: npt.NDArray[np.float64]
    n_predicted: int
    n_true: int

    @property
    def true_positives(self) -> int:
        """Matched pairs."""
        return len(self.pairs)

    @property
    def unmatched_predicted(self) -> npt.NDArray[np.intp]:
        """Indices of predicted points without a partner (false positives)."""
        return np.setdiff1d(np.arange(self.n_predicted), self.pairs[:, 0])

    @property
    def unmatched_true(self) -> npt.NDArray[np.intp]:
        """Indices of true points without a partner (misses)."""
        return np.setdiff1d(np.arange(self.n_true), self.pairs[:, 1])


def match_points(predicted: npt.ArrayLike, true: npt.ArrayLike, *, radius: float) -> Matching:
    """Match predicted to true points one-to-one within ``radius``.

    The matching has the most pairs possible and, among those, the least total distance.

    Raises:
        ValueError: ``radius`` is not positive, or the points are not ``(N, 2)``.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if not radius > 0:
        raise ValueError(f"radius must be positive; got {radius}")
    pred = as_points(predicted, name="predicted")
    gold = as_points(true, name="true")
    empty = Matching(np.zeros((0, 2), np.intp), np.zeros(0), len(pred), len(gold))
    if len(pred) == 0 or len(gold) == 0:
        return empty
    close = cKDTree(pred).sparse_distance_matrix(cKDTree(gold), radius, output_type="coo_matrix")
    if close.nnz == 0:
        return empty
    # Components of the bipartite "within radius" graph: predicted nodes first, then true.
    n_pred = len(pred)
    rows = np.concatenate([close.row, close.col + n_pred])
    cols = np.concatenate([close.col + n_pred, close.row])
    from scipy.sparse import coo_matrix

    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_pred + len(gold),) * 2)
    _, labels = connected_components(graph, directed=False)
    pairs: list[tuple[int, int]] = []
    edge_component = labels[close.row]
    order = np.argsort(edge_component, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_component[order])) + 1
    for group in np.split(order, bounds):
        p_idx = np.unique(close.row[group])
        t_idx = np.unique(close.col[group])
        # Costs: distance for allowed pairs; forbidden pairs cost more than any allowed
        # matching, so the number of matches is maximised first.
        big = radius * (min(len(p_idx), len(t_idx)) + 1) * 2
        cost = np.full((len(p_idx), len(t_idx)), big)
        cost[np.searchsorted(p_idx, close.row[group]), np.searchsorted(t_idx, close.col[group])] = (
            close.data[group]
        )
        r, c = linear_sum_assignment(cost)
        for i, j in zip(r, c, strict=True):
            if cost[i, j] < big:
                pairs.append((int(p_idx[i]), int(t_idx[j])))
    if not pairs:
        return empty
    array = np.array(sorted(pairs), dtype=np.intp)
    distances = np.linalg.norm(pred[array[:, 0]] - gold[array[:, 1]], axis=1)
    return Matching(array, distances, len(pred), len(gold))


def localisation_scores(
    predicted: npt.ArrayLike, true: npt.ArrayLike, *, radius: float
) -> dict[str, float]:
    """Precision, recall and F1 of one-to-one matches within ``radius``, with the counts.

    An image with no true and no predicted points scores 1.0 everywhere.
    """
    matching = match_points(predicted, true, radius=radius)
    tp = matching.true_positives
    fp, fn = matching.n_predicted - tp, matching.n_true - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def count_errors(predicted: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """Mean absolute and mean relative count error over images.

    The relative error of an image is ``|predicted - true| / true``; images with no true
    objects have none, so ``mre`` is over images with at least one (``nan`` if none) and
    ``mae_empty`` reports the mean absolute count on the empty ones.

    Raises:
        ValueError: The sequences differ in length or are empty.
    """
    pred = np.asarray(predicted, dtype=np.float64)
    gold = np.asarray(true, dtype=np.float64)
    if pred.shape != gold.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(
            f"predicted and true counts must be two equally long, non-empty lists; got "
            f"{pred.shape} and {gold.shape}"
        )
    error = np.abs(pred - gold)
    some = gold > 0
    return {
        "images": float(len(gold)),
        "mae": float(error.mean()),
        "mre": float((error[some] / gold[some]).mean()) if some.any() else float("nan"),
        "bias": float((pred - gold).mean()),
        "mae_empty": float(error[~some].mean()) if (~some).any() else float("nan"),
    }


@dataclass
class Consensus:
    """Several annotators' points of one image, grouped into objects.

    Attributes:
        points: ``(K, 2)`` mean position of each object at least ``min_support``
            annotators marked (the consensus).
        support: ``(K,)`` how many annotators marked each consensus object.
        annotators: The annotators, in the order used below.
        counts: Points each annotator gave.
        disputed: ``(D, 2)`` objects fewer than ``min_support`` annotators marked.
        pairwise_f1: F1 of every pair of annotators, matched within the radius.
    """

    points: Points
    support: npt.NDArray[np.intp]
    annotators: list[str]
    counts: dict[str, int]
    disputed: Points
    pairwise_f1: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def agreement(self) -> float:
        """The lowest pairwise F1 (1.0 with fewer than two annotators)."""
        return min(self.pairwise_f1.values(), default=1.0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the point arrays)."""
        return {
            "annotators": self.annotators,
            "counts": self.counts,
            "consensus": len(self.points),
            "disputed": len(self.disputed),
            "agreement": self.agreement,
            "pairwise_f1": {f"{a}|{b}": f for (a, b), f in self.pairwise_f1.items()},
        }


def consensus(
    points_by_annotator: Mapping[str, npt.ArrayLike],
    *,
    radius: float,
    min_support: int | None = None,
) -> Consensus:
    """Group several annotators' clicks into objects and keep those enough of them marked.

    Annotators are taken in sorted order; each one's points are matched one-to-one (within
    ``radius``) to the objects found so far, by their mean positions; unmatched points
    start new objects. An object keeps at most one point per annotator.

    Args:
        points_by_annotator: ``{annotator: (N, 2) points}`` for one image.
        radius: Largest distance in pixels between clicks on the same object.
        min_support: Annotators needed for the consensus; default a strict majority
            (both of two, two of three).

    Raises:
        ValueError: No annotators, a bad ``radius`` or ``min_support``.
    """
    names = sorted(points_by_annotator)
    if not names:
        raise ValueError("consensus needs the points of at least one annotator")
    need = min_support if min_support is not None else len(names) // 2 + 1
    if not 1 <= need <= len(names):
        raise ValueError(f"min_support must be between 1 and {len(names)}; got {need}")
    arrays = {n: as_points(points_by_annotator[n], name=f"points of {n}") for n in names}
    sums = np.zeros((0, 2))
    support = np.zeros(0, dtype=np.intp)
    for name in names:
        points = arrays[name]
        centres = sums / np.maximum(support, 1)[:, None] if len(support) else sums
        matching = match_points(points, centres, radius=radius)
        if matching.true_positives:
            sums[matching.pairs[:, 1]] += points[matching.pairs[:, 0]]
            support[matching.pairs[:, 1]] += 1
        new = points[matching.unmatched_predicted]
        sums = np.concatenate([sums, new])
        support = np.concatenate([support, np.ones(len(new), dtype=np.intp)])
    centres = sums / np.maximum(support, 1)[:, None] if len(support) else sums
    keep = support >= need
    pairwise = {
        (a, b): localisation_scores(arrays[a], arrays[b], radius=radius)["f1"]
        for a, b in combinations(names, 2)
    }
    return Consensus(
        points=centres[keep],
        support=support[keep],
        annotators=names,
        counts={n: len(arrays[n]) for n in names},
        disputed=centres[~keep],
        pairwise_f1=pairwise,
    )
