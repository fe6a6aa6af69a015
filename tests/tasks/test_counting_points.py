"""Point matching, localisation and count metrics, and annotator consensus."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lensloop.tasks.counting.points import (
    consensus,
    count_errors,
    localisation_scores,
    match_points,
)


def test_matching_is_one_to_one_and_within_radius() -> None:
    true = [(10, 10), (20, 10), (50, 50)]
    pred = [(11, 10), (12, 10), (20, 11), (90, 90)]
    matching = match_points(pred, true, radius=5)
    assert matching.pairs.tolist() == [[0, 0], [2, 1]] or matching.pairs.tolist() == [
        [1, 0],
        [2, 1],
    ]
    assert matching.pairs[:, 0].tolist().count(2) == 1
    assert matching.true_positives == 2
    assert matching.unmatched_true.tolist() == [2]
    assert set(matching.unmatched_predicted.tolist()) >= {3}
    assert (matching.distances <= 5).all()
    scores = localisation_scores(pred, true, radius=5)
    assert scores == pytest.approx(
        {"tp": 2, "fp": 2, "fn": 1, "precision": 0.5, "recall": 2 / 3, "f1": 4 / 7}
    )


def test_hungarian_beats_greedy() -> None:
    # Greedy nearest-first would pair p0 with t1 (distance 1) and leave t0 unmatched.
    true = [(0.0, 0.0), (3.0, 0.0)]
    pred = [(2.0, 0.0), (5.5, 0.0)]
    assert match_points(pred, true, radius=2.6).true_positives == 2


def test_empty_sets_and_errors() -> None:
    assert localisation_scores([], [], radius=3)["f1"] == 1.0
    assert localisation_scores([(1, 1)], [], radius=3)["precision"] == 0.0
    assert localisation_scores([], [(1, 1)], radius=3)["recall"] == 0.0
    with pytest.raises(ValueError, match="radius must be positive"):
        match_points([], [], radius=0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        match_points([1, 2, 3], [], radius=1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 60),
    m=st.integers(0, 60),
    seed=st.integers(0, 2**16),
    radius=st.floats(0.5, 20),
)
def test_matching_agrees_with_a_dense_hungarian(n: int, m: int, seed: int, radius: float) -> None:
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    pred, true = rng.uniform(0, 60, (n, 2)), rng.uniform(0, 60, (m, 2))
    found = match_points(pred, true, radius=radius)
    if n and m:
        dist = np.linalg.norm(pred[:, None] - true[None], axis=2)
        big = 1e6
        cost = np.where(dist <= radius, dist, big)
        r, c = linear_sum_assignment(cost)
        best = int((cost[r, c] < big).sum())
    else:
        best = 0
    assert found.true_positives == best
    assert len(set(found.pairs[:, 0].tolist())) == found.true_positives
    assert len(set(found.pairs[:, 1].tolist())) == found.true_positives


def test_large_images_match_quickly() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 4000, (20000, 2))
    pred = true + rng.normal(0, 1.0, true.shape)
    scores = localisation_scores(pred, true, radius=5)
    assert scores["f1"] > 0.99


def test_count_errors() -> None:
    errors = count_errors([9, 22, 1], [10, 20, 0])
    assert errors["mae"] == pytest.approx(4 / 3)
    assert errors["mre"] == pytest.approx((0.1 + 0.1) / 2)
    assert errors["mae_empty"] == pytest.approx(1.0)
    assert errors["bias"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equally long"):
        count_errors([1], [1, 2])


def test_consensus_of_three_annotators() -> None:
    cells = np.array([(10, 10), (30, 10), (50, 10), (70, 10)], dtype=float)
    clicks = {
        "ann": cells + 0.5,
        "bob": cells[:3] - 0.5,  # missed the last cell
        "cat": np.concatenate([cells[[0, 1, 3]], [(90.0, 90.0)]]),  # missed one, one extra
    }
    found = consensus(clicks, radius=3)
    assert len(found.points) == 4  # every real cell has 2 of 3 votes
    assert sorted(found.support.tolist()) == [2, 2, 3, 3]
    assert found.disputed.tolist() == [[90.0, 90.0]]
    assert found.counts == {"ann": 4, "bob": 3, "cat": 4}
    assert found.pairwise_f1[("ann", "bob")] == pytest.approx(6 / 7)
    assert found.agreement == pytest.approx(min(found.pairwise_f1.values()))
    two = consensus({"a": cells, "b": cells[:2]}, radius=3)
    assert len(two.points) == 2  # both of two must agree
    assert consensus({"a": cells}, radius=3).agreement == 1.0
    with pytest.raises(ValueError, match="min_support"):
        consensus({"a": cells}, radius=3, min_support=2)
