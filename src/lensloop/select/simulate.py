"""Replay the labelling loop on a labelled project to measure selection strategies.

The catalog's labels are the oracle. The labelled images outside the held-out split
(``val`` and ``test``) form the pool; each round a strategy picks ``per_round`` pool images,
their labels are revealed, the embedding probe (:mod:`lensloop.select.probe`) is retrained
on everything revealed so far and scored on the held-out images. Every strategy runs with
every seed from an empty start, so the curves differ only by what the strategies chose.
Uncertainty-only strategies need a classifier, so their rounds are random until the
revealed labels hold two classes (recorded per round in ``resolved``).

The area under a learning curve (AUC) is the trapezoid area of the metric over the
labelling budget divided by the budget range: the curve's mean height, in ``[0, 1]``
(with one round, the single value).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from lensloop.catalog.models import Image
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.select.probe import fit_probe
from lensloop.select.rounds import class_labels
from lensloop.select.strategy import Pool, Strategy, choose, parse_strategy

__all__ = [
    "HELD_OUT",
    "SCHEMA",
    "Curve",
    "SimulationConfig",
    "SimulationResult",
    "area_under_curve",
    "plot_curves",
    "simulate",
]

HELD_OUT = ("val", "test")
"""Splits the simulator scores on; every other labelled image is in the pool."""
SCHEMA = 1
"""Version of the JSON document :meth:`SimulationResult.to_dict` writes."""
METRICS = ("accuracy", "macro_f1")
_RANDOM = Strategy(random=True)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SimulationConfig:
    """What to replay.

    Attributes:
        rounds: Labelling rounds per run.
        per_round: Images labelled per round.
        strategies: Strategy texts (:func:`~lensloop.select.strategy.parse_strategy`).
        seeds: Runs per strategy, with seeds ``0 .. seeds - 1``.
        backbone: Whose embeddings to use.
        depth: Class hierarchy depth (default: the project's).
    """

    rounds: int
    per_round: int
    strategies: tuple[str, ...]
    seeds: int
    backbone: str
    depth: int | None = None


@dataclass
class Curve:
    """One strategy's learning curves: ``(seeds, rounds)`` arrays per metric."""

    strategy: str
    budgets: list[int]
    values: dict[str, npt.NDArray[np.float64]]
    resolved: list[list[str]] = field(default_factory=list)

    def mean(self, metric: str) -> npt.NDArray[np.float64]:
        """Mean over seeds, per round."""
        return np.asarray(self.values[metric].mean(axis=0), dtype=np.float64)

    def std(self, metric: str) -> npt.NDArray[np.float64]:
        """Sample standard deviation over seeds (0 with one seed), per round."""
        runs = self.values[metric]
        if runs.shape[0] < 2:
            return np.zeros(runs.shape[1])
        return np.asarray(runs.std(axis=0, ddof=1), dtype=np.float64)

    def auc(self, metric: str) -> npt.NDArray[np.float64]:
        """Area under the curve of each seed."""
        return np.array([area_under_curve(self.budgets, run) for run in self.values[metric]])


@dataclass
class SimulationResult:
    """Curves of every strategy, and where they were written."""

    config: SimulationConfig
    classes: list[str]
    n_pool: int
    n_eval: int
    curves: list[Curve]
    elapsed_s: float
    json_path: Path | None = None
    png_path: Path | None = None

    def relative_to(self, baseline: str = "random") -> dict[str, dict[str, float]]:
        """Each strategy's gain over ``baseline``: AUC and first-budget accuracy, relative."""
        base = next((c for c in self.curves if c.strategy == baseline), None)
        if base is None:
            return {}
        gains: dict[str, dict[str, float]] = {}
        for curve in self.curves:
            if curve is base:
                continue
            b_auc = float(base.auc("accuracy").mean())
            b_first = float(base.mean("accuracy")[0])
            gains[curve.strategy] = {
                "auc_accuracy": _relative(float(curve.auc("accuracy").mean()), b_auc),
                "first_budget_accuracy": _relative(float(curve.mean("accuracy")[0]), b_first),
            }
        return gains

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``schema`` 1)."""
        strategies: dict[str, Any] = {}
        for curve in self.curves:
            entry: dict[str, Any] = {"resolved": curve.resolved}
            for metric in METRICS:
                auc = curve.auc(metric)
                entry[metric] = {
                    "mean": _floats(curve.mean(metric)),
                    "std": _floats(curve.std(metric)),
                    "per_seed": [_floats(run) for run in curve.values[metric]],
                    "auc": {
                        "mean": round(float(auc.mean()), 6),
                        "std": round(float(auc.std(ddof=1)) if len(auc) > 1 else 0.0, 6),
                        "per_seed": _floats(auc),
                    },
                }
            strategies[curve.strategy] = entry
        return {
            "schema": SCHEMA,
            "backbone": self.config.backbone,
            "depth": self.config.depth,
            "rounds": self.config.rounds,
            "per_round": self.config.per_round,
            "seeds": self.config.seeds,
            "budgets": self.curves[0].budgets if self.curves else [],
            "classes": self.classes,
            "n_pool": self.n_pool,
            "n_eval": self.n_eval,
            "elapsed_s": round(self.elapsed_s, 3),
            "strategies": strategies,
            "relative_to_random": self.relative_to("random"),
        }


def _relative(value: float, base: float) -> float:
    return round(value / base - 1.0, 6) if base > 0 else float("nan")


def _floats(values: npt.ArrayLike) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values).ravel()]


def area_under_curve(budgets: Sequence[int], values: npt.ArrayLike) -> float:
    """Trapezoid area of ``values`` over ``budgets`` divided by the budget range.

    Example:
        >>> area_under_curve([10, 20, 30], [0.5, 0.7, 0.9])
        0.7
    """
    x = np.asarray(budgets, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 1:
        return float(y[0])
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
    return round(area / float(x[-1] - x[0]), 12)


def _check(config: SimulationConfig) -> None:
    for name in ("rounds", "per_round", "seeds"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; received {value!r}")
    if not config.strategies:
        raise ConfigError("give at least one strategy, e.g. auto,random")
    if len(set(config.strategies)) != len(config.strategies):
        raise ConfigError(f"a strategy is listed twice in {','.join(config.strategies)}")


def _oracle(
    project: Project, config: SimulationConfig
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.bool_], list[str]]:
    """Vectors, labels and a held-out mask of the labelled images with embeddings."""
    ids, vectors = project.embeddings(config.backbone)
    labels = class_labels(project, depth=config.depth)
    with project.catalog.reader() as session:
        splits = {i: s for i, s in session.execute(select(Image.id, Image.split))}
    rows = [r for r, i in enumerate(ids.tolist()) if i in labels.by_image]
    if not rows:
        raise ConfigError(
            "simulation needs labelled images with embeddings; the project has none. Ingest "
            "with labels (e.g. --labels-from-folders) and run `lensloop embed` first"
        )
    y = np.array([labels.by_image[int(ids[r])] for r in rows], dtype=np.int64)
    held = np.array([splits.get(int(ids[r])) in HELD_OUT for r in rows], dtype=np.bool_)
    if not held.any():
        raise ConfigError(
            "simulation scores on the held-out split, and no labelled image is in val or "
            "test; ingest with --split val=0.2,test=0.1"
        )
    if len(np.unique(y)) < 2:
        only = labels.class_names[int(y[0])]
        raise ConfigError(
            f"every labelled image is of one class ({only!r}); a classifier, and so a "
            "simulation, needs at least 2 classes"
        )
    return vectors[rows], y, held, labels.class_names


def simulate(
    project: Project,
    config: SimulationConfig,
    *,
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Replay the loop for each strategy and seed; write ``simulation.json`` and ``.png``.

    Args:
        project: A project with labelled, embedded images and a held-out split.
        config: Rounds, budget per round, strategies, seeds, backbone.
        out_dir: Where to write the curves (default ``reports/simulation-<time>/`` in the
            project).
        progress: Called with ``(done, total)`` after each round.

    Raises:
        ConfigError: Bad settings, no held-out images, one class only, or a pool smaller
            than ``rounds * per_round``.
        NotFoundError: No embeddings for the backbone.
    """
    _check(config)
    strategies = [parse_strategy(text) for text in config.strategies]
    vectors, y, held, class_names = _oracle(project, config)
    pool_rows = np.flatnonzero(~held)
    budget = config.rounds * config.per_round
    if budget > len(pool_rows):
        raise ConfigError(
            f"{config.rounds} rounds of {config.per_round} need {budget} labelled pool images "
            f"but the pool (labelled, not in val or test) holds {len(pool_rows)}; lower "
            "--rounds or --per-round"
        )
    x_pool, y_pool = vectors[pool_rows], y[pool_rows]
    x_eval, y_eval = vectors[held], y[held]
    budgets = [config.per_round * (r + 1) for r in range(config.rounds)]
    total = len(strategies) * config.seeds * config.rounds
    done = 0
    started = time.perf_counter()
    curves: list[Curve] = []
    for text, strategy in zip(config.strategies, strategies, strict=True):
        values = {m: np.zeros((config.seeds, config.rounds)) for m in METRICS}
        resolved: list[list[str]] = []
        for seed in range(config.seeds):
            taken = np.zeros(len(pool_rows), dtype=np.bool_)
            modes: list[str] = []
            for r in range(config.rounds):
                pool = Pool(
                    vectors=x_pool,
                    candidates=~taken,
                    selected=taken.copy(),
                    labels=np.where(taken, y_pool, -1),
                    class_names=class_names,
                )
                this_round = strategy
                if strategy.scores and len(np.unique(y_pool[taken])) < 2:
                    this_round = _RANDOM  # no classifier yet: uncertainty starts at random
                chosen = choose(pool, config.per_round, this_round, seed=seed * 1000 + r)
                taken[chosen.indices] = True
                modes.append(chosen.strategy)
                scores = _evaluate(x_pool[taken], y_pool[taken], x_eval, y_eval, seed=seed)
                for metric, value in scores.items():
                    values[metric][seed, r] = value
                done += 1
                if progress is not None:
                    progress(done, total)
            resolved.append(modes)
        curves.append(Curve(text, budgets, values, resolved))
    result = SimulationResult(
        config=config,
        classes=class_names,
        n_pool=len(pool_rows),
        n_eval=int(held.sum()),
        curves=curves,
        elapsed_s=time.perf_counter() - started,
    )
    folder = out_dir
    if folder is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = project.root / "reports" / f"simulation-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    result.json_path = folder / "simulation.json"
    result.png_path = folder / "simulation.png"
    result.json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    plot_curves(result, result.png_path)
    return result


def _evaluate(
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.int64],
    x_eval: npt.NDArray[np.float32],
    y_eval: npt.NDArray[np.int64],
    *,
    seed: int,
) -> dict[str, float]:
    """Accuracy and macro-F1 on the held-out images of a probe on the revealed labels."""
    from sklearn.metrics import f1_score  # type: ignore[import-untyped]

    if len(np.unique(y_train)) < 2:
        predicted = np.full(len(y_eval), y_train[0], dtype=np.int64)  # one class known
    else:
        predicted = fit_probe(x_train, y_train, seed=seed).predict(x_eval)
    macro = f1_score(y_eval, predicted, average="macro", labels=np.unique(y_eval), zero_division=0)
    return {"accuracy": float(np.mean(predicted == y_eval)), "macro_f1": float(macro)}


def plot_curves(result: SimulationResult, path: Path) -> None:
    """Draw accuracy and macro-F1 against labels, mean line and one-std band per strategy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(METRICS))
    for ax, metric in zip(axes, METRICS, strict=True):
        for curve in result.curves:
            mean, std = curve.mean(metric), curve.std(metric)
            auc = float(curve.auc(metric).mean())
            (line,) = ax.plot(
                curve.budgets, mean, marker="o", label=f"{curve.strategy} (AUC {auc:.3f})"
            )
            colour = line.get_color()
            ax.fill_between(curve.budgets, mean - std, mean + std, alpha=0.2, color=colour)
        ax.set_xlabel("labelled images")
        ax.set_ylabel(metric.replace("_", "-"))
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    figure.suptitle(
        f"{result.config.backbone}: {result.n_pool} pool, {result.n_eval} held out, "
        f"{result.config.seeds} seeds"
    )
    figure.tight_layout()
    figure.savefig(path)
