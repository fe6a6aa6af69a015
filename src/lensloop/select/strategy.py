"""Selection strategies: scores and samplers combined the way Lightly users expect.

A strategy is written as terms joined by ``+``:

- a diversity term, at most one: ``kcenter`` (core-set), ``typical`` (TypiClust) or
  ``coverage`` (ProbCover), with an optional strength, ``kcenter=0.5``;
- weighted uncertainty terms: ``margin``, ``entropy`` or ``least_confidence`` (``uncertainty``
  is ``margin``), with an optional strength, ``entropy=2``;
- thresholds, applied first: ``margin>0.2``, ``entropy>=0.5``, ``least_confidence<0.9``;
- or one of the single words ``random`` (the baseline) and ``auto``.

Weights and diversity combine as in Lightly: each pick maximises ``strength * d(x) /
scale + sum(weight_i * score_i(x))`` with ``d`` the distance to the nearest labelled or
picked image (weighted k-center greedy); weights alone rank by the weighted sum.
``typical`` and ``coverage`` pick whole sets and take thresholds but not weights.

``auto`` starts with ``typical`` (cold start: typical images of distinct clusters, the
strongest choice while labels are few) and switches to uncertainty x diversity, the
``3 n`` candidates with the smallest margin thinned by k-center greedy, once every class
has at least 3 labels. Uncertainty comes from :func:`~lensloop.select.probe.fit_probe`
on the labelled images' embeddings.

Everything here is pure: arrays in, row indices out. :mod:`lensloop.select.rounds` reads
the catalog and records what was chosen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError
from lensloop.select.balance import (
    OTHER,
    PREDICTED,
    Balance,
    group_of,
    interleave,
    number_text,
    quotas,
)
from lensloop.select.diversity import kcenter_greedy, probcover, typiclust
from lensloop.select.probe import Probe, fit_probe
from lensloop.select.scores import UNCERTAINTY

__all__ = [
    "AUTO_MIN_PER_CLASS",
    "AUTO_POOL_FACTOR",
    "DIVERSITY",
    "Pool",
    "Selection",
    "Strategy",
    "Threshold",
    "choose",
    "parse_strategy",
]

DIVERSITY = ("kcenter", "typical", "coverage")
"""Diversity terms."""
AUTO_MIN_PER_CLASS = 3
"""``auto`` leaves its cold start once every class has this many labels."""
AUTO_POOL_FACTOR = 3
"""``auto``'s uncertainty x diversity thins the ``AUTO_POOL_FACTOR * n`` most uncertain."""
_ALIASES = {"uncertainty": "margin"}
_TERM_RE = re.compile(r"^(?P<name>[a-z_]+)\s*(?:(?P<op>>=|<=|>|<|=)\s*(?P<value>[-+0-9.eE]+))?$")
_OPS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}
_COLD = "typical"
_PREDICT_BLOCK = 65_536
"""Rows per probe call, so scoring a million candidates copies 128 MiB at a time."""
_WARM_SCORE = "margin"


@dataclass(frozen=True)
class Threshold:
    """Keep only candidates whose ``score`` satisfies ``op value``."""

    score: str
    op: str
    value: float

    def describe(self) -> str:
        """The term as written, e.g. ``margin>0.2``."""
        return f"{self.score}{self.op}{number_text(self.value)}"


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy; build one with :func:`parse_strategy`.

    Attributes:
        auto: Decide per round (see the module docstring).
        random: Seeded random picks (the baseline); thresholds still apply first.
        diversity: ``kcenter``, ``typical``, ``coverage`` or ``None``.
        diversity_strength: Weight of the distance term (``kcenter`` with weights).
        weights: ``(score, strength)`` uncertainty terms.
        thresholds: Filters applied before anything else.
        top_factor: Keep the ``top_factor * n`` candidates with the highest sum of weights
            before diversity picks among them (``auto``'s uncertainty x diversity), or 0.
    """

    auto: bool = False
    random: bool = False
    diversity: str | None = None
    diversity_strength: float = 1.0
    weights: tuple[tuple[str, float], ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    top_factor: int = 0

    def describe(self) -> str:
        """The text that :func:`parse_strategy` turns back into this strategy.

        ``auto``'s resolved uncertainty x diversity plan has no text form; it reads
        ``kcenter+margin (top 3n by uncertainty)``.
        """
        if self.auto:
            return "auto"
        terms: list[str] = ["random"] if self.random else []
        if self.diversity is not None:
            strength = (
                "" if self.diversity_strength == 1.0 else f"={number_text(self.diversity_strength)}"
            )
            terms.append(self.diversity + strength)
        terms += [f"{name}={number_text(w)}" if w != 1.0 else name for name, w in self.weights]
        terms += [t.describe() for t in self.thresholds]
        text = "+".join(terms)
        if self.top_factor:
            text += f" (top {self.top_factor}n by uncertainty)"
        return text

    @property
    def scores(self) -> tuple[str, ...]:
        """Uncertainty scores this strategy reads (so it needs a probe)."""
        names = [name for name, _ in self.weights] + [t.score for t in self.thresholds]
        return tuple(dict.fromkeys(names))


def _valid_names() -> list[str]:
    return ["auto", "random", *DIVERSITY, "uncertainty", *sorted(UNCERTAINTY)]


def parse_strategy(text: str) -> Strategy:
    """Parse a strategy such as ``auto``, ``kcenter+margin=0.5`` or ``typical+entropy>0.3``.

    Raises:
        ConfigError: An unknown term, a bad number, two diversity terms, or a combination
            that has no meaning (``typical`` or ``coverage`` with weights, ``auto`` or
            ``random`` with weights).
    """
    parts = [p.strip() for p in text.split("+")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(
            f"strategy {text!r} is empty or has an empty term; write terms joined by '+', "
            "e.g. kcenter+margin=0.5"
        )
    strategy = Strategy()
    weights: list[tuple[str, float]] = []
    thresholds: list[Threshold] = []
    for part in parts:
        match = _TERM_RE.match(part)
        name = _ALIASES.get(match["name"], match["name"]) if match else ""
        if match is None or name not in _valid_names() + list(UNCERTAINTY):
            valid = ", ".join(_valid_names())
            raise ConfigError(
                f"unknown strategy term {part!r} in {text!r}; terms are {valid}, each with an "
                "optional =strength (uncertainty terms also >value, <value)"
            )
        op, value_text = match["op"], match["value"]
        value = 1.0
        if op is not None:
            try:
                value = float(value_text)
            except ValueError:
                raise ConfigError(f"{part!r}: {value_text!r} is not a number") from None
            if not math.isfinite(value):
                raise ConfigError(f"{part!r}: the number must be finite")
        if name in ("auto", "random"):
            if op is not None:
                raise ConfigError(f"{part!r}: {name} takes no value")
            strategy = (
                replace(strategy, auto=True) if name == "auto" else replace(strategy, random=True)
            )
        elif op in _OPS:
            if name not in UNCERTAINTY:
                raise ConfigError(
                    f"{part!r}: thresholds apply to uncertainty scores "
                    f"({', '.join(sorted(UNCERTAINTY))})"
                )
            thresholds.append(Threshold(name, str(op), value))
        else:
            if value < 0:
                raise ConfigError(f"{part!r}: a strength must be >= 0")
            if name in DIVERSITY:
                if strategy.diversity is not None:
                    raise ConfigError(
                        f"strategy {text!r} has two diversity terms; keep one of "
                        f"{', '.join(DIVERSITY)}"
                    )
                strategy = replace(strategy, diversity=name, diversity_strength=value)
            else:
                weights.append((name, value))
    strategy = replace(strategy, weights=tuple(weights), thresholds=tuple(thresholds))
    if strategy.auto and len(parts) > 1:
        raise ConfigError(f"strategy {text!r}: auto decides every term itself; use it alone")
    if strategy.random and (strategy.weights or strategy.diversity):
        raise ConfigError(
            f"strategy {text!r}: random combines with thresholds only (e.g. random+margin>0.2)"
        )
    if strategy.diversity in ("typical", "coverage") and strategy.weights:
        raise ConfigError(
            f"strategy {text!r}: {strategy.diversity} picks whole sets and does not take "
            "weights; combine weights with kcenter, or use thresholds (e.g. "
            f"{strategy.diversity}+margin>0.2)"
        )
    if not (strategy.auto or strategy.random or strategy.diversity or strategy.weights):
        # Thresholds alone: the survivors in order of the first threshold's score.
        strategy = replace(strategy, weights=((thresholds[0].score, 1.0),))
    return strategy


@dataclass
class Pool:
    """What a strategy chooses from.

    Attributes:
        vectors: ``(N, D)`` float32 embeddings of every image considered.
        candidates: ``(N,)`` bool, the rows that may be picked.
        selected: ``(N,)`` bool, rows already labelled or queued: diversity treats them as
            covered; never picked.
        labels: ``(N,)`` int64 class index of each labelled row, ``-1`` elsewhere; the
            probe trains on these.
        class_names: Name of each class index (all classes the project knows).
        groups: ``(N,)`` object array of each row's value of the balance field (``str`` or
            ``None``), when balancing on metadata.
        model_probs: ``(N, K)`` class probabilities of a released model (stored
            predictions; NaN rows where an image has none). When every candidate has a row,
            uncertainty and predicted-class balance read them instead of fitting the probe.
        model_classes: The ``K`` class names of ``model_probs``' columns.
    """

    vectors: npt.NDArray[np.float32]
    candidates: npt.NDArray[np.bool_]
    selected: npt.NDArray[np.bool_]
    labels: npt.NDArray[np.int64]
    class_names: Sequence[str]
    groups: npt.NDArray[np.object_] | None = None
    model_probs: npt.NDArray[np.float64] | None = None
    model_classes: Sequence[str] = ()

    def __post_init__(self) -> None:
        n = self.vectors.shape[0]
        for name in ("candidates", "selected", "labels"):
            if getattr(self, name).shape != (n,):
                raise ConfigError(f"pool {name} must have shape ({n},)")
        if self.groups is not None and self.groups.shape != (n,):
            raise ConfigError(f"pool groups must have shape ({n},)")

    @property
    def label_counts(self) -> npt.NDArray[np.int64]:
        """Labelled rows per class index."""
        known = self.labels[self.labels >= 0]
        return np.bincount(known, minlength=len(self.class_names)).astype(np.int64)


@dataclass(frozen=True)
class Selection:
    """What :func:`choose` picked.

    Attributes:
        indices: ``(n,)`` int64 pool rows in the order to label them.
        strategy: The concrete strategy that ran (``auto`` resolved).
        details: Facts worth recording: auto's mode, the balance quotas, thresholds'
            survivors, ProbCover's radius.
        groups: With a balance, each pick's value of the balance field (``None`` for
            the share of unnamed values).
    """

    indices: npt.NDArray[np.int64]
    strategy: str
    details: dict[str, Any] = field(default_factory=dict)
    groups: list[str | None] | None = None


def resolve_auto(pool: Pool) -> tuple[Strategy, dict[str, Any]]:
    """``auto``'s plan for this pool: cold start or uncertainty x diversity."""
    counts = pool.label_counts
    least = int(counts.min()) if len(counts) else 0
    details: dict[str, Any] = {
        "labels_per_class_min": least,
        "labels_per_class_needed": AUTO_MIN_PER_CLASS,
    }
    if len(counts) >= 2 and least >= AUTO_MIN_PER_CLASS:
        details["mode"] = "uncertainty x diversity"
        plan = Strategy(
            diversity="kcenter", weights=((_WARM_SCORE, 1.0),), top_factor=AUTO_POOL_FACTOR
        )
        return plan, details
    details["mode"] = "cold start"
    return Strategy(diversity=_COLD), details


def _fit(pool: Pool, *, seed: int) -> Probe:
    labelled = np.flatnonzero(pool.labels >= 0)
    return fit_probe(pool.vectors[labelled], pool.labels[labelled], seed=seed)


def _probabilities(
    probe: Probe, vectors: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """``(len(rows), C)`` probabilities, in blocks so no copy of all rows is made."""
    blocks = [
        probe.predict_proba(vectors[rows[start : start + _PREDICT_BLOCK]])
        for start in range(0, len(rows), _PREDICT_BLOCK)
    ]
    return np.concatenate(blocks) if blocks else np.zeros((0, len(probe.classes)))


def _run(
    strategy: Strategy,
    pool: Pool,
    candidates: npt.NDArray[np.bool_],
    selected: npt.NDArray[np.bool_],
    n: int,
    scores: dict[str, npt.NDArray[np.float64]],
    *,
    seed: int,
    details: dict[str, Any],
) -> npt.NDArray[np.int64]:
    """Run a concrete strategy on ``candidates``; ``scores`` are full-length (N,) arrays."""
    candidates = candidates.copy()
    for threshold in strategy.thresholds:
        candidates &= _OPS[threshold.op](scores[threshold.score], threshold.value)
    available = int(candidates.sum())
    if strategy.thresholds:
        details.setdefault("passed_thresholds", 0)
        details["passed_thresholds"] += available
    if available < n:
        reason = (
            f" pass the thresholds {', '.join(t.describe() for t in strategy.thresholds)};"
            " loosen them or"
            if strategy.thresholds
            else ";"
        )
        raise ConfigError(f"only {available} candidates{reason} pass -n {available} or less")
    bonus: npt.NDArray[np.float64] | None = None
    if strategy.weights:
        bonus = np.zeros(pool.vectors.shape[0], dtype=np.float64)
        for name, weight in strategy.weights:
            bonus += weight * np.nan_to_num(scores[name], nan=0.0)
    if strategy.top_factor and bonus is not None:
        rows = np.flatnonzero(candidates)
        keep = rows[np.argsort(-bonus[rows], kind="stable")[: strategy.top_factor * n]]
        candidates = np.zeros_like(candidates)
        candidates[keep] = True
        bonus = None  # the filter used the scores; diversity picks among the survivors
    if strategy.random:
        rng = np.random.default_rng(seed)
        return rng.choice(np.flatnonzero(candidates), size=n, replace=False).astype(np.int64)
    if strategy.diversity is None:
        assert bonus is not None
        rows = np.flatnonzero(candidates)
        return rows[np.argsort(-bonus[rows], kind="stable")[:n]].astype(np.int64)
    if strategy.diversity == "kcenter":
        return _kcenter(pool.vectors, candidates, selected, n, bonus, strategy, seed=seed)
    if strategy.diversity == "typical":
        return typiclust(
            pool.vectors,
            n,
            already_selected=np.flatnonzero(selected),
            candidates=candidates,
            seed=seed,
        )
    n_classes = len(pool.class_names)
    result = probcover(
        pool.vectors,
        n,
        already_selected=np.flatnonzero(selected),
        candidates=candidates,
        n_clusters=max(2, min(n_classes if n_classes >= 2 else 10, pool.vectors.shape[0])),
        seed=seed,
    )
    details["coverage_radius"] = result.radius
    details["coverage"] = result.coverage
    return result.indices


def _kcenter(
    vectors: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.bool_],
    selected: npt.NDArray[np.bool_],
    n: int,
    bonus: npt.NDArray[np.float64] | None,
    strategy: Strategy,
    *,
    seed: int,
) -> npt.NDArray[np.int64]:
    """k-center greedy, on just the candidate and selected rows when they are few."""
    rows = np.flatnonzero(candidates | selected)
    compact = len(rows) < vectors.shape[0] // 2
    if not compact:
        rows = np.arange(vectors.shape[0])
    picks = kcenter_greedy(
        vectors[rows] if compact else vectors,
        n,
        already_selected=np.flatnonzero(selected[rows]),
        candidates=candidates[rows],
        bonus=None if bonus is None else bonus[rows],
        strength=strategy.diversity_strength,
        seed=seed,
    )
    return rows[picks].astype(np.int64)


def choose(
    pool: Pool,
    n: int,
    strategy: Strategy,
    *,
    seed: int = 0,
    balance: Balance | None = None,
) -> Selection:
    """Pick ``n`` pool rows with ``strategy``, balanced over a field if asked.

    Args:
        pool: Vectors, candidates, labelled rows and classes.
        n: How many to pick, ``1 <= n <=`` the number of candidates.
        strategy: From :func:`parse_strategy`.
        seed: Seed of every random choice (random picks, k-means, first k-center pick).
        balance: Target proportions; ``pool.groups`` must hold the field's values unless
            the key is ``predicted``.

    Returns:
        The :class:`Selection`.

    Raises:
        ConfigError: ``n`` out of range, no candidates, uncertainty without labels of two
            classes, thresholds that leave too few candidates, or a balance that cannot be
            met (see :func:`~lensloop.select.balance.quotas`).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive integer; received {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0; received {seed!r}")
    # A row both selected and a candidate is selected: never picked.
    pool = replace(pool, candidates=pool.candidates & ~pool.selected)
    available = int(pool.candidates.sum())
    if available == 0:
        raise ConfigError(
            "there is nothing left to select: every image with embeddings is already "
            "labelled or queued in an earlier round; ingest and embed more images"
        )
    if n > available:
        raise ConfigError(
            f"asked for n={n} but only {available} images can be selected (not labelled, not "
            f"queued, with embeddings); pass -n {available} or less"
        )
    details: dict[str, Any] = {}
    if strategy.auto:
        strategy, details = resolve_auto(pool)
    names = list(strategy.scores)
    scores: dict[str, npt.NDArray[np.float64]] = {}
    rows = np.flatnonzero(pool.candidates)
    probs: npt.NDArray[np.float64] | None = None
    prob_classes: list[str] = []
    needs_model = bool(names) or (balance is not None and balance.key == PREDICTED)
    if needs_model and pool.model_probs is not None and not np.isnan(pool.model_probs[rows]).any():
        probs = np.asarray(pool.model_probs[rows], dtype=np.float64)
        prob_classes = list(pool.model_classes)
        details["uncertainty_from"] = "stored predictions"
    elif needs_model:
        n_labelled_classes = int((pool.label_counts > 0).sum())
        if n_labelled_classes < 2:
            what = "uncertainty" if names else "balancing on predicted classes"
            raise ConfigError(
                f"{what} needs a classifier, which needs labels of at least 2 classes; the "
                f"labelled images cover {n_labelled_classes}; label more, or use --strategy "
                "auto, typical, kcenter, coverage or random"
            )
        probe = _fit(pool, seed=seed)
        probs = _probabilities(probe, pool.vectors, rows)
        prob_classes = [pool.class_names[int(c)] for c in probe.classes]
        details["uncertainty_from"] = "probe on the labelled embeddings"
    for name in names:
        assert probs is not None
        full = np.full(pool.vectors.shape[0], np.nan)
        full[rows] = UNCERTAINTY[name](probs)
        scores[name] = full
    if balance is None:
        picks = _run(
            strategy, pool, pool.candidates, pool.selected, n, scores, seed=seed, details=details
        )
        return Selection(picks.astype(np.int64), strategy.describe(), details)

    if balance.key == PREDICTED:
        assert probs is not None
        groups = np.full(pool.vectors.shape[0], None, dtype=object)
        groups[rows] = [prob_classes[int(c)] for c in np.argmax(probs, axis=1)]
    elif pool.groups is None:
        raise ConfigError(f"balancing on {balance.key!r} needs each image's value of it")
    else:
        groups = pool.groups
    quota = quotas(groups, pool.candidates, balance, n)
    member = np.array([group_of(v, balance, quota) for v in groups], dtype=object)
    selected = pool.selected.copy()
    per_group: list[npt.NDArray[np.int64]] = []
    pick_group: dict[int, str | None] = {}
    for group in sorted(quota):
        mask = pool.candidates & (member == group)
        picks = _run(
            strategy, pool, mask, selected, quota[group], scores, seed=seed, details=details
        )
        selected[picks] = True
        per_group.append(picks)
        pick_group.update(dict.fromkeys(picks.tolist(), None if group == OTHER else group))
    details["balance"] = balance.describe()
    details["quotas"] = {g: c for g, c in quota.items() if g != OTHER}
    if OTHER in quota:
        details["quota_other_values"] = quota[OTHER]
    order = interleave(per_group)
    return Selection(order, strategy.describe(), details, [pick_group[int(p)] for p in order])
