import numpy as np
import pytest

from lensloop.errors import ConfigError
from lensloop.select.balance import Balance, parse_balance
from lensloop.select.probe import fit_probe
from lensloop.select.scores import margin
from lensloop.select.strategy import (
    Pool,
    Strategy,
    Threshold,
    choose,
    parse_strategy,
)

DIM = 8


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _blobs(n_blobs: int, per_blob: int, *, seed: int = 0, spread: float = 0.05):
    """Tight unit-vector blobs around the first ``n_blobs`` axes; (vectors, blob of each)."""
    rng = np.random.default_rng(seed)
    blob = np.repeat(np.arange(n_blobs), per_blob)
    x = np.eye(DIM, dtype=np.float32)[blob] + spread * rng.standard_normal((len(blob), DIM))
    return _unit(x), blob


def _pool(
    vectors: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_names: tuple[str, ...] = ("a", "b"),
    groups: np.ndarray | None = None,
) -> Pool:
    """Labelled rows are selected; every other row is a candidate."""
    n = vectors.shape[0]
    labels = np.full(n, -1, dtype=np.int64) if labels is None else labels.astype(np.int64)
    selected = labels >= 0
    return Pool(
        vectors=vectors,
        candidates=~selected,
        selected=selected,
        labels=labels,
        class_names=list(class_names),
        groups=groups,
    )


def _label_first(blob: np.ndarray, per_class: int) -> np.ndarray:
    """Labels: the first ``per_class`` rows of each blob get the blob's class."""
    labels = np.full(len(blob), -1, dtype=np.int64)
    for b in np.unique(blob):
        labels[np.flatnonzero(blob == b)[:per_class]] = b
    return labels


def _boundary_pool() -> tuple[Pool, np.ndarray]:
    """Two mirrored labelled blobs (around e0 and e1) and candidates on the arc between.

    Returns the pool and each candidate's angle in degrees from e0 (NaN for labelled
    rows). Mirroring makes the probe's boundary the bisector, at 45 degrees.
    """
    rng = np.random.default_rng(1)
    a = np.zeros((10, DIM), dtype=np.float32)
    a[:, 0] = 1.0
    a += 0.05 * rng.standard_normal((10, DIM)).astype(np.float32)
    b = a.copy()
    b[:, [0, 1]] = a[:, [1, 0]]
    angles = np.linspace(0.0, 90.0, 19)
    arc = np.zeros((len(angles), DIM), dtype=np.float32)
    arc[:, 0] = np.cos(np.radians(angles))
    arc[:, 1] = np.sin(np.radians(angles))
    vectors = _unit(np.concatenate([a, b, arc]))
    labels = np.concatenate([np.zeros(10), np.ones(10), np.full(len(angles), -1)])
    return _pool(vectors, labels), np.concatenate([np.full(20, np.nan), angles])


# --------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", Strategy(auto=True)),
        (" auto ", Strategy(auto=True)),
        ("random", Strategy(random=True)),
        ("kcenter", Strategy(diversity="kcenter")),
        ("typical", Strategy(diversity="typical")),
        ("coverage", Strategy(diversity="coverage")),
        ("uncertainty", Strategy(weights=(("margin", 1.0),))),
        ("margin", Strategy(weights=(("margin", 1.0),))),
        ("entropy=2", Strategy(weights=(("entropy", 2.0),))),
        (
            "kcenter=0.5+margin=2",
            Strategy(diversity="kcenter", diversity_strength=0.5, weights=(("margin", 2.0),)),
        ),
        (
            "kcenter + uncertainty = 0.5 + least_confidence",
            Strategy(diversity="kcenter", weights=(("margin", 0.5), ("least_confidence", 1.0))),
        ),
        (
            "typical+margin>0.2",
            Strategy(diversity="typical", thresholds=(Threshold("margin", ">", 0.2),)),
        ),
        (
            "random+entropy>=0.5",
            Strategy(random=True, thresholds=(Threshold("entropy", ">=", 0.5),)),
        ),
        (
            "kcenter+least_confidence<0.9",
            Strategy(diversity="kcenter", thresholds=(Threshold("least_confidence", "<", 0.9),)),
        ),
        (
            "kcenter+uncertainty<=1e-1",
            Strategy(diversity="kcenter", thresholds=(Threshold("margin", "<=", 0.1),)),
        ),
        ("kcenter=0", Strategy(diversity="kcenter", diversity_strength=0.0)),
    ],
)
def test_parse_strategy(text: str, expected: Strategy) -> None:
    assert parse_strategy(text) == expected


def test_thresholds_alone_weight_the_first_thresholds_score() -> None:
    strategy = parse_strategy("margin>0.2")
    assert strategy.weights == (("margin", 1.0),)
    assert strategy.thresholds == (Threshold("margin", ">", 0.2),)
    assert strategy.diversity is None
    strategy = parse_strategy("entropy>=0.5+least_confidence<0.9")
    assert strategy.weights == (("entropy", 1.0),)
    assert strategy.thresholds == (
        Threshold("entropy", ">=", 0.5),
        Threshold("least_confidence", "<", 0.9),
    )
    assert strategy.scores == ("entropy", "least_confidence")


def test_scores_lists_each_score_once() -> None:
    assert parse_strategy("kcenter+margin+margin>0.1+entropy<0.9").scores == ("margin", "entropy")
    assert parse_strategy("kcenter").scores == ()
    assert parse_strategy("random").scores == ()


@pytest.mark.parametrize(
    "text",
    [
        "auto",
        "random",
        "kcenter",
        "typical",
        "coverage",
        "margin",
        "kcenter=0.5+margin=2",
        "kcenter+entropy+least_confidence=0.25",
        "typical+margin>0.2",
        "coverage+entropy>=0.5+least_confidence<0.9",
        "random+margin<=0.75",
        "margin>0.2",
        "kcenter=0",
    ],
)
def test_describe_round_trips(text: str) -> None:
    strategy = parse_strategy(text)
    assert parse_strategy(strategy.describe()) == strategy


def test_describe_text() -> None:
    assert parse_strategy("uncertainty").describe() == "margin"
    assert parse_strategy("kcenter=0.5+margin=2").describe() == "kcenter=0.5+margin=2"
    assert parse_strategy("kcenter=1+margin=1").describe() == "kcenter+margin"
    assert parse_strategy("typical+entropy>=0.5").describe() == "typical+entropy>=0.5"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty or has an empty term"),
        ("   ", "is empty or has an empty term"),
        ("kcenter+", "is empty or has an empty term"),
        ("kcenter++margin", "is empty or has an empty term"),
        ("+margin", "is empty or has an empty term"),
        (
            "badterm",
            r"unknown strategy term 'badterm' in 'badterm'; terms are auto, random, kcenter, "
            r"typical, coverage, uncertainty, entropy, least_confidence, margin",
        ),
        ("kcenter+Margin", "unknown strategy term 'Margin'"),
        ("margin=abc", "unknown strategy term 'margin=abc'"),
        ("margin==0.5", "unknown strategy term"),
        ("margin=1.2.3", r"'margin=1.2.3': '1.2.3' is not a number"),
        ("margin=1e999", "the number must be finite"),
        ("kcenter+typical", "has two diversity terms; keep one of kcenter, typical, coverage"),
        ("coverage+kcenter=2", "has two diversity terms"),
        ("auto+margin", "auto decides every term itself; use it alone"),
        ("auto+kcenter", "use it alone"),
        ("auto+margin>0.2", "use it alone"),
        ("auto+auto", "use it alone"),
        ("auto=1", "'auto=1': auto takes no value"),
        ("random>0.5", "random takes no value"),
        ("random+margin", "random combines with thresholds only"),
        ("random+kcenter", "random combines with thresholds only"),
        ("typical+margin", "typical picks whole sets and does not take weights"),
        ("coverage+entropy=2", "coverage picks whole sets and does not take weights"),
        ("margin=-1", "'margin=-1': a strength must be >= 0"),
        ("kcenter=-0.5", "a strength must be >= 0"),
        ("kcenter>0.5", "'kcenter>0.5': thresholds apply to uncertainty scores"),
        ("typical<=1", "thresholds apply to uncertainty scores"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_strategy(text)


# --------------------------------------------------------------------------- Pool


def test_pool_checks_shapes() -> None:
    vectors, _ = _blobs(2, 3)
    with pytest.raises(ConfigError, match=r"pool candidates must have shape \(6,\)"):
        Pool(vectors, np.ones(5, bool), np.zeros(6, bool), np.full(6, -1), ["a", "b"])
    with pytest.raises(ConfigError, match=r"pool labels must have shape \(6,\)"):
        Pool(vectors, np.ones(6, bool), np.zeros(6, bool), np.full(7, -1), ["a", "b"])
    with pytest.raises(ConfigError, match=r"pool groups must have shape \(6,\)"):
        Pool(
            vectors,
            np.ones(6, bool),
            np.zeros(6, bool),
            np.full(6, -1),
            ["a", "b"],
            groups=np.array(["x"], dtype=object),
        )


def test_pool_label_counts() -> None:
    vectors, _ = _blobs(2, 3)
    pool = _pool(vectors, np.array([0, 0, -1, 2, -1, -1]), class_names=("a", "b", "c"))
    assert pool.label_counts.tolist() == [2, 0, 1]


# --------------------------------------------------------------------------- choose: n


@pytest.mark.parametrize("n", [0, -1, True, 1.5, "2"])
def test_choose_rejects_bad_n(n: object) -> None:
    vectors, _ = _blobs(2, 5)
    with pytest.raises(ConfigError, match="n must be a positive integer; received"):
        choose(_pool(vectors), n, parse_strategy("random"))  # type: ignore[arg-type]


def test_choose_no_candidates() -> None:
    vectors, blob = _blobs(2, 3)
    pool = _pool(vectors, blob)  # every row labelled
    with pytest.raises(ConfigError, match="there is nothing left to select"):
        choose(pool, 1, parse_strategy("random"))


def test_choose_n_above_candidates() -> None:
    vectors, blob = _blobs(2, 5)
    pool = _pool(vectors, _label_first(blob, 3))
    with pytest.raises(ConfigError, match=r"asked for n=5 but only 4 images can be selected.*-n 4"):
        choose(pool, 5, parse_strategy("kcenter"))


def test_choose_accepts_numpy_integer_n() -> None:
    vectors, _ = _blobs(2, 5)
    picks = choose(_pool(vectors), np.int64(3), parse_strategy("random")).indices
    assert len(picks) == 3


# --------------------------------------------------------------------------- random


def test_random_is_seeded_and_skips_selected() -> None:
    vectors, blob = _blobs(3, 20)
    pool = _pool(vectors, _label_first(blob, 5))
    strategy = parse_strategy("random")
    first = choose(pool, 10, strategy, seed=7)
    again = choose(pool, 10, strategy, seed=7)
    other = choose(pool, 10, strategy, seed=8)
    assert first.strategy == "random"
    assert first.indices.dtype == np.int64
    np.testing.assert_array_equal(first.indices, again.indices)
    assert first.indices.tolist() != other.indices.tolist()
    for selection in (first, other):
        assert len(set(selection.indices.tolist())) == 10
        assert not pool.selected[selection.indices].any()
        assert pool.candidates[selection.indices].all()


def test_random_takes_every_candidate_when_n_is_all() -> None:
    vectors, blob = _blobs(2, 6)
    pool = _pool(vectors, _label_first(blob, 2))
    picks = choose(pool, 8, parse_strategy("random")).indices
    assert sorted(picks.tolist()) == np.flatnonzero(pool.candidates).tolist()


# --------------------------------------------------------------------------- kcenter


def test_kcenter_skips_selected_and_covers_uncovered_blobs() -> None:
    vectors, blob = _blobs(4, 15)
    labels = np.full(len(blob), -1, dtype=np.int64)
    labels[np.flatnonzero(blob == 0)[:3]] = 0  # blob 0 is covered
    pool = _pool(vectors, labels, class_names=("a", "b", "c", "d"))
    selection = choose(pool, 3, parse_strategy("kcenter"), seed=2)
    picks = selection.indices
    assert selection.strategy == "kcenter"
    assert len(set(picks.tolist())) == 3
    assert not pool.selected[picks].any()
    # One pick in each blob not yet covered.
    assert sorted(blob[picks].tolist()) == [1, 2, 3]


def test_kcenter_picks_distinct_rows_up_to_all_candidates() -> None:
    vectors, blob = _blobs(3, 6)
    pool = _pool(vectors, _label_first(blob, 1))
    picks = choose(pool, 15, parse_strategy("kcenter"), seed=0).indices
    assert sorted(picks.tolist()) == np.flatnonzero(pool.candidates).tolist()


def test_kcenter_on_few_candidates_among_many_rows() -> None:
    # Fewer than half the rows are candidates or selected: the compact path.
    vectors, blob = _blobs(3, 20)
    candidates = np.zeros(len(blob), dtype=bool)
    candidates[[1, 2, 21, 22, 41, 42]] = True
    selected = np.zeros(len(blob), dtype=bool)
    selected[[0]] = True
    labels = np.where(selected, 0, -1).astype(np.int64)
    pool = Pool(vectors, candidates, selected, labels, ["a", "b"])
    picks = choose(pool, 2, parse_strategy("kcenter"), seed=0).indices
    assert candidates[picks].all()
    assert sorted(blob[picks].tolist()) == [1, 2]


# --------------------------------------------------------------------------- uncertainty


@pytest.mark.parametrize(
    "text", ["margin", "kcenter+entropy", "random+margin>0.1", "typical+margin>0"]
)
def test_uncertainty_needs_two_labelled_classes(text: str) -> None:
    vectors, blob = _blobs(2, 10)
    labels = np.full(len(blob), -1, dtype=np.int64)
    labels[:4] = 0  # one class only
    with pytest.raises(ConfigError, match=r"needs labels of at least 2 classes.*cover 1"):
        choose(_pool(vectors, labels), 2, parse_strategy(text))
    with pytest.raises(ConfigError, match=r"at least 2 classes.*cover 0"):
        choose(_pool(vectors), 2, parse_strategy(text))


@pytest.mark.parametrize("text", ["margin", "uncertainty", "entropy", "least_confidence=3"])
def test_uncertainty_picks_nearest_the_boundary(text: str) -> None:
    pool, angles = _boundary_pool()
    selection = choose(pool, 3, parse_strategy(text))
    assert sorted(angles[selection.indices].tolist()) == [40.0, 45.0, 50.0]
    assert angles[selection.indices[0]] == 45.0
    assert choose(pool, 1, parse_strategy(text)).indices.tolist() == [
        int(np.flatnonzero(angles == 45.0)[0])
    ]


def test_weights_rank_by_score() -> None:
    pool, _ = _boundary_pool()
    labelled = pool.labels >= 0
    probe = fit_probe(pool.vectors[labelled], pool.labels[labelled])
    score = margin(probe.predict_proba(pool.vectors))
    rows = np.flatnonzero(pool.candidates)
    expected = rows[np.argsort(-score[rows], kind="stable")[:6]]
    np.testing.assert_array_equal(choose(pool, 6, parse_strategy("margin")).indices, expected)


def test_thresholds_filter_candidates() -> None:
    pool, angles = _boundary_pool()
    labelled = pool.labels >= 0
    probe = fit_probe(pool.vectors[labelled], pool.labels[labelled])
    score = margin(probe.predict_proba(pool.vectors))
    cut = float(np.sort(score[pool.candidates])[-6])  # six candidates reach the cut
    passing = set(np.flatnonzero(pool.candidates & (score >= cut)).tolist())
    assert len(passing) == 6
    selection = choose(pool, 4, parse_strategy(f"random+margin>={cut!r}"), seed=3)
    assert set(selection.indices.tolist()) <= passing
    assert selection.details["passed_thresholds"] == 6
    # Thresholds alone: the survivors ranked by the score.
    selection = choose(pool, 6, parse_strategy(f"margin>={cut!r}"))
    assert set(selection.indices.tolist()) == passing
    # A threshold that every candidate passes changes nothing.
    loose = choose(pool, 3, parse_strategy("margin+least_confidence<0.9"))
    assert sorted(angles[loose.indices].tolist()) == [40.0, 45.0, 50.0]
    assert loose.details["passed_thresholds"] == int(pool.candidates.sum())


def test_thresholds_leaving_too_few_candidates() -> None:
    pool, _ = _boundary_pool()
    with pytest.raises(
        ConfigError,
        match=r"only \d+ candidates pass the thresholds margin>0\.999; loosen them or pass -n",
    ):
        choose(pool, 5, parse_strategy("margin>0.999"))
    with pytest.raises(ConfigError, match="only 0 candidates pass the thresholds margin<0"):
        choose(pool, 1, parse_strategy("kcenter+margin<0"))


def test_kcenter_with_margin_weights_stays_in_candidates() -> None:
    pool, angles = _boundary_pool()
    selection = choose(pool, 4, parse_strategy("kcenter=0.1+margin=5"), seed=0)
    assert selection.strategy == "kcenter=0.1+margin=5"
    picks = selection.indices
    assert len(set(picks.tolist())) == 4
    assert pool.candidates[picks].all()
    # Uncertainty dominates: the first pick is the point on the boundary.
    assert angles[picks[0]] == 45.0


# --------------------------------------------------------------------------- auto


def test_auto_without_labels_is_cold_start() -> None:
    vectors, blob = _blobs(4, 15)
    pool = _pool(vectors, class_names=("a", "b", "c", "d"))
    selection = choose(pool, 4, parse_strategy("auto"), seed=0)
    assert selection.strategy == "typical"
    assert selection.details["mode"] == "cold start"
    assert selection.details["labels_per_class_min"] == 0
    assert selection.details["labels_per_class_needed"] == 3
    assert len(set(selection.indices.tolist())) == 4
    # Typical images of distinct clusters: one per blob.
    assert sorted(blob[selection.indices].tolist()) == [0, 1, 2, 3]


def test_auto_stays_cold_until_every_class_has_three_labels() -> None:
    vectors, blob = _blobs(2, 15)
    labels = _label_first(blob, 3)
    labels[np.flatnonzero(labels == 1)[0]] = -1  # class b has only 2 labels
    pool = _pool(vectors, labels)
    selection = choose(pool, 3, parse_strategy("auto"), seed=0)
    assert selection.details["mode"] == "cold start"
    assert selection.details["labels_per_class_min"] == 2
    assert not pool.selected[selection.indices].any()


def test_auto_with_labels_is_uncertainty_times_diversity() -> None:
    vectors, blob = _blobs(2, 30)
    pool = _pool(vectors, _label_first(blob, 3))
    selection = choose(pool, 5, parse_strategy("auto"), seed=0)
    assert selection.details["mode"] == "uncertainty x diversity"
    assert selection.details["labels_per_class_min"] == 3
    assert selection.strategy.startswith("kcenter+margin")
    picks = selection.indices
    assert len(set(picks.tolist())) == 5
    assert not pool.selected[picks].any()
    # The picks come from the 3n candidates with the highest margin score.
    labelled = pool.labels >= 0
    probe = fit_probe(pool.vectors[labelled], pool.labels[labelled])
    score = margin(probe.predict_proba(pool.vectors))
    rows = np.flatnonzero(pool.candidates)
    top = rows[np.argsort(-score[rows], kind="stable")[:15]]
    assert set(picks.tolist()) <= set(top.tolist())


# --------------------------------------------------------------------------- balance


def _grouped_pool() -> tuple[Pool, np.ndarray]:
    vectors, blob = _blobs(3, 20)
    groups = np.array(["Fe", "X-ray", "Cu"], dtype=object)[blob]
    labels = _label_first(blob, 1)
    return _pool(vectors, labels, class_names=("a", "b", "c"), groups=groups), blob


@pytest.mark.parametrize("text", ["kcenter", "random", "typical"])
def test_balance_on_metadata_meets_quotas(text: str) -> None:
    pool, _ = _grouped_pool()
    balance = parse_balance("particle_type=Fe:0.5,X-ray:0.25,Cu:0.25")
    selection = choose(pool, 8, parse_strategy(text), seed=0, balance=balance)
    picks = selection.indices
    assert len(set(picks.tolist())) == 8
    assert pool.candidates[picks].all()
    assert selection.details["balance"] == balance.describe()
    assert selection.details["quotas"] == {"Fe": 4, "X-ray": 2, "Cu": 2}
    assert selection.groups == [pool.groups[p] for p in picks]  # type: ignore[index]
    assert sorted(selection.groups, key=str) == sorted(
        ["Fe"] * 4 + ["X-ray"] * 2 + ["Cu"] * 2, key=str
    )


def test_balance_interleaves_groups() -> None:
    pool, _ = _grouped_pool()
    balance = parse_balance("particle_type=Fe:0.5,X-ray:0.5")
    selection = choose(pool, 6, parse_strategy("kcenter"), seed=0, balance=balance)
    assert selection.groups == ["Fe", "X-ray", "Fe", "X-ray", "Fe", "X-ray"]


def test_balance_equal_shares_and_other() -> None:
    pool, _ = _grouped_pool()
    even = choose(pool, 9, parse_strategy("random"), seed=1, balance=Balance("particle_type"))
    assert even.details["quotas"] == {"Cu": 3, "Fe": 3, "X-ray": 3}
    rest = choose(
        pool, 10, parse_strategy("random"), seed=1, balance=parse_balance("particle_type=Fe:0.6")
    )
    assert rest.details["quotas"] == {"Fe": 6}
    assert rest.details["quota_other_values"] == 4
    assert rest.groups is not None
    assert rest.groups.count("Fe") == 6
    assert rest.groups.count(None) == 4
    for pick, group in zip(rest.indices, rest.groups, strict=True):
        assert (pool.groups[pick] == "Fe") == (group == "Fe")  # type: ignore[index]


def test_balance_with_uncertainty_scores() -> None:
    pool, blob = _grouped_pool()
    labels = _label_first(blob, 3)
    pool = _pool(pool.vectors, labels, class_names=("a", "b", "c"), groups=pool.groups)
    selection = choose(
        pool, 6, parse_strategy("kcenter+margin"), balance=parse_balance("particle_type")
    )
    assert selection.details["quotas"] == {"Cu": 2, "Fe": 2, "X-ray": 2}
    assert sorted(blob[selection.indices].tolist()) == [0, 0, 1, 1, 2, 2]


def test_balance_on_predicted_classes() -> None:
    vectors, blob = _blobs(2, 20)
    pool = _pool(vectors, _label_first(blob, 3), class_names=("cat", "dog"))
    selection = choose(pool, 6, parse_strategy("kcenter"), seed=0, balance=Balance("predicted"))
    assert selection.details["quotas"] == {"cat": 3, "dog": 3}
    assert selection.groups is not None
    names = np.array(["cat", "dog"], dtype=object)
    # Blobs are well separated, so the predicted class is the blob's class.
    assert selection.groups == names[blob[selection.indices]].tolist()
    skewed = choose(
        pool, 4, parse_strategy("random"), balance=parse_balance("predicted=dog:0.75,cat:0.25")
    )
    assert sorted(blob[skewed.indices].tolist()) == [0, 1, 1, 1]


def test_balance_on_predicted_needs_two_classes() -> None:
    vectors, blob = _blobs(2, 10)
    labels = np.full(len(blob), -1, dtype=np.int64)
    labels[:3] = 0
    with pytest.raises(ConfigError, match="balancing on predicted classes needs a classifier"):
        choose(_pool(vectors, labels), 2, parse_strategy("kcenter"), balance=Balance("predicted"))


def test_balance_value_no_image_has() -> None:
    pool, _ = _grouped_pool()
    with pytest.raises(ConfigError, match=r"no image has particle_type='Zn'.*'Cu', 'Fe', 'X-ray'"):
        choose(
            pool,
            4,
            parse_strategy("kcenter"),
            balance=parse_balance("particle_type=Fe:0.5,Zn:0.5"),
        )


def test_balance_without_groups() -> None:
    vectors, _ = _blobs(2, 10)
    with pytest.raises(ConfigError, match="balancing on 'site' needs each image's value of it"):
        choose(_pool(vectors), 2, parse_strategy("random"), balance=Balance("site"))


def test_balance_too_few_in_named_groups() -> None:
    pool, _ = _grouped_pool()
    balance = parse_balance("particle_type=Fe:0.5,Cu:0.5")
    # Fe and Cu have 19 candidates each.
    with pytest.raises(ConfigError, match="leaves 38 candidates, fewer than n=39"):
        choose(pool, 39, parse_strategy("random"), balance=balance)


# --------------------------------------------------------------------------- coverage


def test_coverage_covers_each_blob_and_records_radius() -> None:
    vectors, blob = _blobs(4, 15)
    labels = np.full(len(blob), -1, dtype=np.int64)
    labels[np.flatnonzero(blob == 0)[:2]] = 0  # blob 0 is covered
    pool = _pool(vectors, labels, class_names=("a", "b", "c", "d"))
    selection = choose(pool, 3, parse_strategy("coverage"), seed=0)
    assert selection.strategy == "coverage"
    picks = selection.indices
    assert len(set(picks.tolist())) == 3
    assert pool.candidates[picks].all()
    assert sorted(blob[picks].tolist()) == [1, 2, 3]
    assert selection.details["coverage_radius"] > 0
    assert 0.0 < selection.details["coverage"] <= 1.0


def test_coverage_respects_candidates_and_thresholds() -> None:
    pool, angles = _boundary_pool()
    selection = choose(pool, 2, parse_strategy("coverage+margin>0.5"), seed=0)
    picks = selection.indices
    assert pool.candidates[picks].all()
    labelled = pool.labels >= 0
    probe = fit_probe(pool.vectors[labelled], pool.labels[labelled])
    assert (margin(probe.predict_proba(pool.vectors[picks])) > 0.5).all()
    assert selection.details["passed_thresholds"] >= 2
    assert not np.isnan(angles[picks]).any()


# --------------------------------------------------------------------------- probe


def test_probe_needs_two_classes() -> None:
    vectors, _ = _blobs(2, 5)
    with pytest.raises(ConfigError, match=r"at least 2 classes.*all of one class"):
        fit_probe(vectors, np.zeros(10, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"at least 2 classes.*all of no class"):
        fit_probe(np.zeros((0, DIM), dtype=np.float32), np.zeros(0, dtype=np.int64))


def test_probe_checks_shapes() -> None:
    vectors, blob = _blobs(2, 5)
    with pytest.raises(ConfigError, match=r"received shapes \(10, 8\) and \(9,\)"):
        fit_probe(vectors, blob[:9])
    with pytest.raises(ConfigError, match=r"received shapes \(80,\)"):
        fit_probe(vectors.ravel(), blob)


def test_probe_recovers_blob_labels() -> None:
    vectors, blob = _blobs(2, 20)
    probe = fit_probe(vectors[::2], blob[::2])
    assert probe.classes.tolist() == [0, 1]
    predicted = probe.predict(vectors[1::2])
    assert predicted.dtype == np.int64
    np.testing.assert_array_equal(predicted, blob[1::2])


def test_probe_proba_columns_follow_classes() -> None:
    vectors, blob = _blobs(3, 12)
    labels = np.array([2, 5, 7])[blob]  # sparse class indices
    probe = fit_probe(vectors, labels, seed=1)
    assert probe.classes.tolist() == [2, 5, 7]
    probs = probe.predict_proba(vectors)
    assert probs.dtype == np.float64
    assert probs.shape == (len(blob), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)  # float32 model
    assert (probs >= 0).all()
    np.testing.assert_array_equal(np.argmax(probs, axis=1), blob)
    np.testing.assert_array_equal(probe.predict(vectors), labels)
    # float64 and list input are accepted.
    np.testing.assert_allclose(probe.predict_proba(vectors.astype(np.float64).tolist()), probs)
