import numpy as np
import pytest

from lensloop.errors import ConfigError
from lensloop.select import kcenter_greedy, probcover, typicality, typiclust

N_BLOBS = 5
PER_BLOB = 40


def _blobs(seed: int = 0, spread: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Five tight, well-separated blobs of unit vectors in 16-D; returns (vectors, labels)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(16, dtype=np.float32)[:N_BLOBS]
    labels = np.repeat(np.arange(N_BLOBS), PER_BLOB)
    vectors = centres[labels] + spread * rng.standard_normal((len(labels), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def _naive_kcenter(x: np.ndarray, n: int, first: int) -> list[int]:
    x = x.astype(np.float64)
    dist = ((x - x[first]) ** 2).sum(axis=1)
    dist[first] = -1
    picks = [first]
    for _ in range(n - 1):
        pick = int(np.argmax(dist))
        picks.append(pick)
        dist = np.minimum(dist, ((x - x[pick]) ** 2).sum(axis=1))
        dist[picks] = -1
    return picks


# --------------------------------------------------------------------------- k-center


def test_kcenter_one_per_blob() -> None:
    vectors, labels = _blobs()
    picks = kcenter_greedy(vectors, N_BLOBS, seed=3)
    assert picks.dtype == np.int64
    assert picks.shape == (N_BLOBS,)
    assert sorted(labels[picks].tolist()) == list(range(N_BLOBS))


def test_kcenter_picks_far_outlier_first() -> None:
    vectors, _ = _blobs()
    vectors = np.vstack([vectors, -np.eye(16, dtype=np.float32)[:1]])
    picks = kcenter_greedy(vectors, 2, already_selected=[0])
    assert picks[0] == len(vectors) - 1


def test_kcenter_matches_naive_greedy_across_blocks() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((10_000, 8)).astype(np.float32)  # three 4,096-row blocks
    picks = kcenter_greedy(vectors, 30, already_selected=[17])
    assert picks.tolist() == _naive_kcenter(vectors, 31, 17)[1:]


def test_kcenter_deterministic_and_seeded() -> None:
    vectors, _ = _blobs()
    a = kcenter_greedy(vectors, 7, seed=5)
    assert a.tolist() == kcenter_greedy(vectors, 7, seed=5).tolist()
    firsts = {int(kcenter_greedy(vectors, 1, seed=s)[0]) for s in range(5)}
    assert len(firsts) > 1


def test_kcenter_respects_already_selected() -> None:
    vectors, labels = _blobs()
    already = np.flatnonzero(labels < 3)[::7]
    picks = kcenter_greedy(vectors, 2, already_selected=already)
    assert not set(picks.tolist()) & set(already.tolist())
    assert sorted(labels[picks].tolist()) == [3, 4]


@pytest.mark.parametrize("as_mask", [True, False])
def test_kcenter_respects_candidates(as_mask: bool) -> None:
    vectors, labels = _blobs()
    mask = labels % 2 == 0
    candidates = mask if as_mask else np.flatnonzero(mask)
    picks = kcenter_greedy(vectors, 10, candidates=candidates)
    assert mask[picks].all()
    assert sorted(set(labels[picks[:3]].tolist())) == [0, 2, 4]


def test_kcenter_all_candidates_and_duplicates() -> None:
    vectors = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # every row four times

    def labels_of(rows: np.ndarray) -> list[int]:
        return (rows // 4).tolist()

    picks = kcenter_greedy(vectors, 11, already_selected=[0, 0])
    assert sorted(picks.tolist()) == list(range(1, 12))
    assert sorted(labels_of(picks[:2])) == [1, 2]
    picks = kcenter_greedy(vectors, 11, already_selected=[0])
    assert len(set(picks.tolist())) == 11
    assert 0 not in picks


def test_kcenter_float64_input() -> None:
    vectors, labels = _blobs()
    picks = kcenter_greedy(vectors.astype(np.float64), N_BLOBS)
    assert sorted(labels[picks].tolist()) == list(range(N_BLOBS))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be >= 1; received 0"),
        ({"n": 2.0}, "n must be an integer"),
        ({"n": 201}, r"asked for n=201 but only 200 candidates remain"),
        ({"n": 199, "already_selected": [0, 1]}, "only 198 candidates remain"),
        ({"n": 3, "candidates": [1, 2]}, "only 2 candidates remain"),
        (
            {"n": 1, "already_selected": [200]},
            r"already_selected must hold row indices in 0 \.\. 199",
        ),
        ({"n": 1, "already_selected": [[1]]}, "already_selected must be a 1-D"),
        ({"n": 1, "candidates": np.ones(3, dtype=bool)}, r"shape \(200,\)"),
    ],
)
def test_kcenter_validation(kwargs: dict[str, object], match: str) -> None:
    vectors, _ = _blobs()
    n = kwargs.pop("n")
    with pytest.raises(ConfigError, match=match):
        kcenter_greedy(vectors, n, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        (np.zeros(4, dtype=np.float32), r"2-D \(N, D\).*shape \(4,\)"),
        (np.zeros((3, 2), dtype=np.int64), "floating point"),
        (np.array([[0.0, np.inf]], dtype=np.float32), "row 0 holds NaN"),
    ],
)
def test_bad_vectors(vectors: np.ndarray, match: str) -> None:
    for call in (
        lambda: kcenter_greedy(vectors, 1),
        lambda: typiclust(vectors, 1),
        lambda: probcover(vectors, 1, radius=0.1),
        lambda: typicality(vectors, k=1),
    ):
        with pytest.raises(ConfigError, match=match):
            call()


# --------------------------------------------------------------------------- typicality


def test_typicality_dense_beats_outlier() -> None:
    vectors, _ = _blobs()
    vectors = np.vstack([vectors, -np.eye(16, dtype=np.float32)[:1]])
    typ = typicality(vectors, k=5)
    assert typ.shape == (len(vectors),)
    assert typ.dtype == np.float64
    assert int(np.argmin(typ)) == len(vectors) - 1


def test_typicality_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    expected = 1 / (np.sort(d, axis=1)[:, 1:4].mean(axis=1) + 1e-5)
    np.testing.assert_allclose(typicality(x, k=3), expected, rtol=1e-4)


def test_typicality_validation() -> None:
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match="k=200 neighbours needs at least 201 vectors"):
        typicality(vectors, k=200)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        typicality(vectors, k=0)


# --------------------------------------------------------------------------- TypiClust


def test_typiclust_one_per_blob_near_centres() -> None:
    vectors, labels = _blobs()
    picks = typiclust(vectors, N_BLOBS, seed=0)
    assert sorted(labels[picks].tolist()) == list(range(N_BLOBS))
    for pick in picks:
        members = vectors[labels == labels[pick]]
        centre = members.mean(axis=0)
        dists = np.linalg.norm(members - centre, axis=1)
        assert np.linalg.norm(vectors[pick] - centre) <= np.quantile(dists, 0.5)


def test_typiclust_already_selected_and_deterministic() -> None:
    vectors, labels = _blobs()
    already = np.flatnonzero(labels == 0)[:1]
    picks = typiclust(vectors, 4, already_selected=already, seed=1)
    assert sorted(labels[picks].tolist()) == [1, 2, 3, 4]
    assert picks.tolist() == typiclust(vectors, 4, already_selected=already, seed=1).tolist()


def test_typiclust_takes_everything() -> None:
    vectors, _ = _blobs()
    vectors = vectors[:12]
    picks = typiclust(vectors, 10, already_selected=[0, 1])
    assert sorted(picks.tolist()) == list(range(2, 12))


def test_typiclust_validation() -> None:
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match="asked for n=200 but only 199 candidates remain"):
        typiclust(vectors, 200, already_selected=[3])
    with pytest.raises(ConfigError, match="k must be >= 1"):
        typiclust(vectors, 2, k=0)


# --------------------------------------------------------------------------- ProbCover


def test_probcover_auto_radius_covers_all_blobs() -> None:
    vectors, labels = _blobs()
    result = probcover(vectors, N_BLOBS, n_clusters=N_BLOBS, seed=0)
    d = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)
    same = labels[:, None] == labels[None, :]
    # The rule: the largest radius at which >= 95% of balls are pure. Here that is above
    # every within-blob distance, yet at least 95% of balls stay within one blob.
    nearest_other = np.where(same, np.inf, d).min(axis=1)
    assert d[same].max() < result.radius
    assert (nearest_other > result.radius).mean() >= 0.95
    assert sorted(labels[result.indices].tolist()) == list(range(N_BLOBS))
    assert result.coverage == pytest.approx(1.0)
    assert result.indices.dtype == np.int64


def test_probcover_given_radius_greedy_order() -> None:
    # A dense group of 6 points and a sparse pair: the dense group's centre covers most.
    line = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [5.0], [5.1]], dtype=np.float32)
    result = probcover(line, 3, radius=0.25)
    assert result.radius == 0.25
    assert result.indices[0] in (2, 3)
    assert result.coverage <= 1.0
    # After everything is covered the remaining picks are random but distinct.
    full = probcover(line, 8, radius=10.0)
    assert sorted(full.indices.tolist()) == list(range(8))
    assert full.coverage == 1.0


def test_probcover_already_selected_and_deterministic() -> None:
    vectors, labels = _blobs()
    already = np.flatnonzero(labels == 2)[:2]
    result = probcover(vectors, 4, radius=0.5, already_selected=already)
    assert sorted(labels[result.indices].tolist()) == [0, 1, 3, 4]
    again = probcover(vectors, 4, radius=0.5, already_selected=already)
    assert result.indices.tolist() == again.indices.tolist()


def test_probcover_zero_radius_with_duplicates() -> None:
    vectors = np.repeat(np.eye(3, dtype=np.float32), [3, 1, 1], axis=0)
    result = probcover(vectors, 2, radius=0.0)
    assert result.indices[0] == 0  # its ball holds the two exact duplicates
    assert result.coverage == pytest.approx(4 / 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": -1.0}, "radius must be a finite distance >= 0.*received -1.0"),
        ({"radius": float("nan")}, "radius must be a finite distance"),
        ({"n_clusters": 1}, "n_clusters must be >= 2"),
        ({"n_clusters": 201}, "n_clusters=201 pseudo-labels is more than the 200 vectors"),
        ({"purity": 0.0}, r"purity must be in \(0, 1\]"),
    ],
)
def test_probcover_validation(kwargs: dict[str, object], match: str) -> None:
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match=match):
        probcover(vectors, 2, **kwargs)  # type: ignore[arg-type]
