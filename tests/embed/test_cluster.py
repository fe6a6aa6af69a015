"""k-means, HDBSCAN and the choice of k on well-separated blobs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from lensloop.embed import cluster as cluster_module
from lensloop.embed.cluster import choose_k, cluster_hdbscan, cluster_kmeans
from lensloop.embed.index import EmbeddingError
from lensloop.errors import ConfigError


def blobs(
    seed: int = 0, *, n_blobs: int = 4, per_blob: int = 150, dim: int = 16, spread: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around centres 10 apart (in random directions), shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_blobs, dim))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_blobs), per_blob)
    points = centres[truth] + spread * rng.standard_normal((len(truth), dim))
    order = rng.permutation(len(truth))
    return points[order].astype(np.float32), truth[order]


def test_kmeans_recovers_the_blobs() -> None:
    points, truth = blobs()
    labels = cluster_kmeans(points, k=4, seed=0)
    assert labels.dtype == np.int64
    assert labels.shape == (600,)
    assert set(labels.tolist()) == {0, 1, 2, 3}
    assert adjusted_rand_score(truth, labels) > 0.95


def test_kmeans_is_deterministic_and_numbers_clusters_by_size() -> None:
    points, _ = blobs(1, n_blobs=3, per_blob=50)
    extra, _ = blobs(1, n_blobs=3, per_blob=50)
    points = np.concatenate([points, extra[:60]])  # the blobs now differ in size
    first = cluster_kmeans(points, k=3, seed=7)
    np.testing.assert_array_equal(first, cluster_kmeans(points, k=3, seed=7))
    counts = np.bincount(first)
    assert (np.diff(counts) <= 0).all()


def test_kmeans_edge_cases() -> None:
    points, _ = blobs(n_blobs=2, per_blob=5)
    np.testing.assert_array_equal(cluster_kmeans(points, k=1), np.zeros(10, np.int64))
    labels = cluster_kmeans(points, k=10)
    assert sorted(labels.tolist()) == list(range(10))


def test_kmeans_rejects_bad_k_and_vectors() -> None:
    points, _ = blobs(n_blobs=2, per_blob=5)
    with pytest.raises(ConfigError, match="k=11 clusters is more than the 10 vectors"):
        cluster_kmeans(points, k=11)
    for k in (0, 2.5, True):
        with pytest.raises(ConfigError, match="k must be an integer >= 1"):
            cluster_kmeans(points, k=k)  # type: ignore[arg-type]
    with pytest.raises(EmbeddingError, match="at least 2 row"):
        cluster_kmeans(points[:1], k=1)
    bad = points.copy()
    bad[3, 0] = np.nan
    with pytest.raises(EmbeddingError, match="row 3 has a NaN"):
        cluster_kmeans(bad, k=2)


def test_hdbscan_finds_the_blobs_and_marks_outliers_as_noise() -> None:
    points, truth = blobs(2, n_blobs=3, per_blob=100)
    rng = np.random.default_rng(5)
    outliers = rng.uniform(-30, 30, (6, points.shape[1])).astype(np.float32)
    labels = cluster_hdbscan(np.concatenate([points, outliers]), min_cluster_size=10)
    assert labels.dtype == np.int64
    assert set(labels[:300].tolist()) == {0, 1, 2}
    assert adjusted_rand_score(truth, labels[:300]) > 0.95
    assert (labels[300:] == -1).all()


def test_hdbscan_projects_many_dimensions_first(caplog: pytest.LogCaptureFixture) -> None:
    points, truth = blobs(3, n_blobs=3, per_blob=100, dim=80)
    caplog.set_level(logging.INFO, logger="lensloop.embed.cluster")
    labels = cluster_hdbscan(points, min_cluster_size=20, seed=1)
    assert "projecting 300 x 80 vectors to 50 dimensions" in caplog.text
    assert adjusted_rand_score(truth, labels) > 0.95
    np.testing.assert_array_equal(labels, cluster_hdbscan(points, min_cluster_size=20, seed=1))


def test_hdbscan_rejects_bad_options() -> None:
    points, _ = blobs(n_blobs=2, per_blob=5)
    with pytest.raises(ConfigError, match="min_cluster_size=11 is more than the 10 vectors"):
        cluster_hdbscan(points, min_cluster_size=11)
    with pytest.raises(ConfigError, match="min_cluster_size must be an integer >= 2"):
        cluster_hdbscan(points, min_cluster_size=1)
    with pytest.raises(EmbeddingError, match="at least 2 row"):
        cluster_hdbscan(points[:1])


def test_choose_k_finds_the_number_of_blobs() -> None:
    points, _ = blobs(4, n_blobs=5, per_blob=60)
    assert choose_k(points, k_range=range(2, 9), seed=0) == 5


def test_choose_k_samples_large_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    points, _ = blobs(6, n_blobs=3, per_blob=200)
    monkeypatch.setattr(cluster_module, "CHOOSE_K_SAMPLE", 120)
    assert choose_k(points, k_range=[2, 3, 4, 6], seed=2) == 3


def test_choose_k_rejects_bad_ranges() -> None:
    points, _ = blobs(n_blobs=2, per_blob=5)
    with pytest.raises(ConfigError, match="k_range is empty"):
        choose_k(points, k_range=[])
    with pytest.raises(ConfigError, match=r"integers from 2 to 9 .*got 10"):
        choose_k(points, k_range=range(2, 11))
    with pytest.raises(ConfigError, match="got 1"):
        choose_k(points, k_range=[1, 2])
    with pytest.raises(EmbeddingError, match="at least 3 row"):
        choose_k(points[:2], k_range=[2])
