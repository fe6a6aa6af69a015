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


def _naive_weighted_kcenter(
    x: np.ndarray, n: int, bonus: np.ndarray, strength: float, already: list[int]
) -> list[int]:
    """Weighted greedy by brute force: argmax of strength * d / scale + bonus, each step."""
    x = x.astype(np.float64)
    centres = list(already)
    picks: list[int] = []
    scale = None
    for _ in range(n):
        blocked = np.zeros(len(x), dtype=bool)
        blocked[centres] = True
        if not centres:
            score = bonus.copy()
        else:
            dist = np.sqrt(((x[:, None, :] - x[None, centres, :]) ** 2).sum(-1)).min(axis=1)
            if scale is None:
                far = dist[~blocked].max()
                scale = far if far > 0 else 1.0
            score = strength * dist / scale + bonus
        score[blocked] = -np.inf
        pick = int(np.argmax(score))
        picks.append(pick)
        centres.append(pick)
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


def test_weighted_kcenter_prefers_bonus_over_slightly_farther() -> None:
    # Row 0 is selected; row 1 is at distance 1.0 with a bonus, row 2 at 1.05 without.
    points = np.array([[0, 0], [1, 0], [0, 1.05]], dtype=np.float32)
    assert kcenter_greedy(points, 1, already_selected=[0]).tolist() == [2]
    bonus = np.array([0.0, 0.2, 0.0])
    assert kcenter_greedy(points, 1, already_selected=[0], bonus=bonus).tolist() == [1]
    # scale = 1.05. At strength 1: 1 / 1.05 + 0.2 = 1.15 beats 1.05 / 1.05 = 1. At strength
    # 5 the distance wins again: 5 * 1.05 / 1.05 = 5 beats 5 / 1.05 + 0.2 = 4.96.
    picks = kcenter_greedy(points, 1, already_selected=[0], bonus=bonus, strength=5)
    assert picks.tolist() == [2]


def test_weighted_kcenter_strength_zero_ranks_by_bonus() -> None:
    vectors, _ = _blobs()
    bonus = np.random.default_rng(4).uniform(size=len(vectors))
    bonus[[10, 11]] = 2.0  # a tie: the lower index first
    picks = kcenter_greedy(vectors, 20, bonus=bonus, strength=0, already_selected=[5])
    order = [int(i) for i in np.argsort(-bonus, kind="stable") if i != 5][:20]
    assert picks.tolist() == order
    assert picks[:2].tolist() == [10, 11]
    mask = np.arange(len(vectors)) % 3 == 0
    picks = kcenter_greedy(vectors, 10, bonus=bonus, strength=0.0, candidates=mask)
    assert picks.tolist() == [int(i) for i in np.argsort(-bonus, kind="stable") if mask[i]][:10]


def test_weighted_kcenter_starts_at_highest_bonus() -> None:
    vectors, labels = _blobs()
    bonus = np.zeros(len(vectors))
    bonus[[37, 150]] = 0.9  # a tie: the lower index, whatever the seed
    for seed in range(3):
        picks = kcenter_greedy(vectors, N_BLOBS, bonus=bonus, seed=seed)
        assert picks[0] == 37
        # The bonus is small next to the spread between blobs: one pick per blob.
        assert sorted(labels[picks].tolist()) == list(range(N_BLOBS))
    mask = labels == 3  # row 150's blob
    assert kcenter_greedy(vectors, 1, bonus=bonus, candidates=mask)[0] == 150


def test_weighted_kcenter_zero_bonus_is_plain_greedy() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((10_000, 8)).astype(np.float32)
    plain = kcenter_greedy(vectors, 30, already_selected=[17])
    weighted = kcenter_greedy(vectors, 30, already_selected=[17], bonus=np.zeros(10_000))
    assert weighted.tolist() == plain.tolist()


@pytest.mark.parametrize(
    ("seed", "n_rows", "strength", "already"),
    [
        (0, 10_000, 1.0, []),  # three 4,096-row blocks, the last one partial
        (1, 9_000, 1.0, [3, 8_500]),
        (2, 12_288, 0.5, [100]),  # exactly three full blocks
        (3, 8_193, 3.0, []),  # one row in the last block
        (4, 10_000, 0.05, [7]),  # the bonus dominates
    ],
)
def test_weighted_kcenter_matches_brute_force(
    seed: int, n_rows: int, strength: float, already: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n_rows, 6)).astype(np.float32)
    bonus = rng.uniform(size=n_rows)
    picks = kcenter_greedy(
        vectors, 25, already_selected=already, bonus=bonus, strength=strength, seed=seed
    )
    assert picks.tolist() == _naive_weighted_kcenter(vectors, 25, bonus, strength, already)


def test_weighted_kcenter_zero_scale() -> None:
    # Every candidate sits on the selected point: scale falls back to 1, the bonus decides.
    vectors = np.zeros((4, 2), dtype=np.float32)
    picks = kcenter_greedy(vectors, 3, already_selected=[0], bonus=[0, 0.1, 0.3, 0.2])
    assert picks.tolist() == [2, 3, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bonus": np.zeros(3)}, r"bonus must have shape \(200,\).*received shape \(3,\)"),
        ({"bonus": np.zeros((200, 1))}, r"bonus must have shape \(200,\)"),
        ({"bonus": np.full(200, np.nan)}, "bonus must be finite; row 0 holds nan"),
        ({"bonus": np.ones(200, dtype=bool)}, "bonus must hold real-valued scores"),
        ({"bonus": np.zeros(200), "strength": -1.0}, "strength must be finite and >= 0"),
        ({"bonus": np.zeros(200), "strength": float("inf")}, "strength must be finite"),
        ({"bonus": np.zeros(200), "strength": True}, "strength must be a real number"),
        ({"strength": "1"}, "strength must be a real number"),
    ],
)
def test_weighted_kcenter_validation(kwargs: dict[str, object], match: str) -> None:
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match=match):
        kcenter_greedy(vectors, 2, **kwargs)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("as_mask", [True, False])
def test_typiclust_respects_candidates(as_mask: bool) -> None:
    vectors, labels = _blobs()
    mask = labels != 0
    already = np.flatnonzero(labels == 3)[:2]
    candidates = mask if as_mask else np.flatnonzero(mask)
    picks = typiclust(vectors, 12, candidates=candidates, already_selected=already, seed=0)
    assert mask[picks].all()
    assert len(set(picks.tolist())) == 12
    assert not set(picks.tolist()) & set(already.tolist())
    # One cluster per blob. Blob 0 holds no candidate and blob 3 has two selected points,
    # so blobs 1, 2 and 4 are visited twice before blob 3 gets a pick.
    picks = typiclust(
        vectors, 6, candidates=candidates, already_selected=already, max_clusters=N_BLOBS
    )
    assert sorted(labels[picks[:3]].tolist()) == [1, 2, 4]
    assert sorted(labels[picks].tolist()) == [1, 1, 2, 2, 4, 4]


def test_typiclust_max_clusters_gives_second_picks() -> None:
    vectors, labels = _blobs()
    picks = typiclust(vectors, 12, max_clusters=N_BLOBS, seed=0)
    assert len(set(picks.tolist())) == 12
    assert sorted(labels[picks[:N_BLOBS]].tolist()) == list(range(N_BLOBS))
    counts = np.bincount(labels[picks], minlength=N_BLOBS)
    assert set(counts.tolist()) <= {2, 3}
    # One cluster for everything: picks come in typicality order over all rows.
    assert typiclust(vectors, 1, max_clusters=1)[0] == int(np.argmax(typicality(vectors, k=20)))


def test_typiclust_typicality_counts_selected_points() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    already = [0, 1, 2, 3, 4]
    picks = typiclust(x, 10, already_selected=already, k=5, max_clusters=1)
    typ = typicality(x, k=5)  # measured among all 60 points, the selected ones included
    expected = [int(i) for i in np.argsort(-typ) if i not in already][:10]
    assert picks.tolist() == expected


def test_typiclust_large_cluster_sample_deterministic() -> None:
    # One cluster of 2,500 points: typicality is estimated on seeded samples of 1,000,
    # and 1,200 picks use up the first sample of candidates and draw a second.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2_500, 8)).astype(np.float32)
    mask = np.ones(2_500, dtype=bool)
    mask[::5] = False
    a = typiclust(x, 1_200, candidates=mask, max_clusters=1, seed=7)
    assert a.tolist() == typiclust(x, 1_200, candidates=mask, max_clusters=1, seed=7).tolist()
    assert len(set(a.tolist())) == 1_200
    assert mask[a].all()
    assert a.tolist() != typiclust(x, 1_200, candidates=mask, max_clusters=1, seed=8).tolist()
    # The estimate still prefers the dense middle: the first picks lie near the mean.
    radius = np.linalg.norm(x - x.mean(axis=0), axis=1)
    assert np.median(radius[a[:50]]) < np.quantile(radius, 0.25)


def test_typiclust_deterministic_per_seed() -> None:
    vectors, _ = _blobs(spread=0.2)
    a = typiclust(vectors, 8, seed=4)
    assert a.tolist() == typiclust(vectors, 8, seed=4).tolist()


def test_typiclust_validation() -> None:
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match="asked for n=200 but only 199 candidates remain"):
        typiclust(vectors, 200, already_selected=[3])
    with pytest.raises(ConfigError, match="only 2 candidates remain"):
        typiclust(vectors, 3, candidates=[1, 2, 3], already_selected=[3])
    with pytest.raises(ConfigError, match="k must be >= 1"):
        typiclust(vectors, 2, k=0)
    with pytest.raises(ConfigError, match="max_clusters must be >= 1; received 0"):
        typiclust(vectors, 2, max_clusters=0)
    with pytest.raises(ConfigError, match=r"candidates as a boolean mask must have shape"):
        typiclust(vectors, 2, candidates=np.ones(3, dtype=bool))


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


@pytest.mark.parametrize("as_mask", [True, False])
def test_probcover_respects_candidates(as_mask: bool) -> None:
    line = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [5.0], [5.1]], dtype=np.float32)
    mask = np.zeros(8, dtype=bool)
    mask[[0, 1, 6, 7]] = True
    candidates = mask if as_mask else np.flatnonzero(mask)
    result = probcover(line, 3, radius=0.25, candidates=candidates, seed=0)
    # Row 1's ball holds rows 0-3, row 6's rows 6-7; then no candidate covers anything new.
    assert result.indices[:2].tolist() == [1, 6]
    assert mask[result.indices].all()
    assert len(set(result.indices.tolist())) == 3
    assert result.coverage == pytest.approx(6 / 8)  # coverage counts every row
    result = probcover(line, 1, radius=0.25, candidates=candidates, already_selected=[1])
    assert result.indices.tolist() == [6]


def test_probcover_max_edges() -> None:
    line = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [5.0], [5.1]], dtype=np.float32)
    # radius 10: every pair, 8 * 8 = 64 edges with the self-loops.
    assert probcover(line, 2, radius=10.0, max_edges=64).coverage == 1.0
    with pytest.raises(ConfigError, match=r"radius=10: .*at least 64 edges.*max_edges=63"):
        probcover(line, 2, radius=10.0, max_edges=63)
    with pytest.raises(ConfigError, match="pass a smaller radius"):
        probcover(line, 2, radius=10.0, max_edges=5)  # fewer than the self-loops
    vectors, _ = _blobs()
    with pytest.raises(ConfigError, match=r"radius=3: .*at least [\d,]+ edges") as err:
        probcover(vectors, 2, radius=3.0, max_edges=5_000)
    assert "kcenter_greedy or typiclust" in str(err.value)
    with pytest.raises(ConfigError, match="chosen by the purity rule"):
        probcover(vectors, 2, n_clusters=N_BLOBS, max_edges=300)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": -1.0}, "radius must be a finite distance >= 0.*received -1.0"),
        ({"radius": 1.0, "max_edges": 0}, "max_edges must be >= 1; received 0"),
        ({"radius": 1.0, "candidates": [5]}, "only 1 candidates remain"),
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
