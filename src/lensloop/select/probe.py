"""The quick embedding classifier that active learning consults between rounds.

Uncertainty needs class probabilities for the unlabelled images. Until a project has a
trained model, lensloop gets them from a logistic-regression probe fitted in a second on
the stored embeddings of the labelled images; the simulator retrains the same probe each
round. ``C=100`` because embeddings are unit length: scikit-learn's default ``C=1``
regularises unit-length features so hard that a probe on a few dozen labels hardly
beats chance (measured on the plankton demo and on scikit-learn's digits, both with
efficientnet-lite0 vectors: with every training label, accuracy 0.63 at ``C=1``, 0.78 at
``C=10``, 0.86 at ``C=100`` on digits).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError

__all__ = ["PROBE_C", "Probe", "fit_probe"]

PROBE_C = 100.0
"""Inverse L2 strength of the probe's logistic regression (see the module docstring)."""
_MAX_ITER = 1000


@dataclass(frozen=True)
class Probe:
    """A fitted probe.

    Attributes:
        classes: ``(C,)`` int64 class indices the probe knows, in column order of
            :meth:`predict_proba`; classes with no label yet are absent.
    """

    classes: npt.NDArray[np.int64]
    _model: Any

    def predict_proba(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(N, C)`` probabilities over :attr:`classes` for ``(N, D)`` vectors."""
        probs = self._model.predict_proba(np.asarray(vectors, dtype=np.float32))
        return np.asarray(probs, dtype=np.float64)

    def predict(self, vectors: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """``(N,)`` predicted class indices for ``(N, D)`` vectors."""
        best = np.argmax(self.predict_proba(vectors), axis=1)
        return np.asarray(self.classes[best], dtype=np.int64)


def fit_probe(vectors: npt.ArrayLike, labels: npt.ArrayLike, *, seed: int = 0) -> Probe:
    """Fit the logistic-regression probe on labelled embeddings.

    Args:
        vectors: ``(N, D)`` embeddings of the labelled images.
        labels: ``(N,)`` int class indices.
        seed: Seed of the solver.

    Returns:
        The fitted :class:`Probe`.

    Raises:
        ConfigError: Fewer than two distinct classes (a classifier needs two), or the
            shapes disagree.
    """
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    data = np.asarray(vectors, dtype=np.float32)
    target = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or target.shape != (data.shape[0],):
        raise ConfigError(
            f"the probe needs (N, D) vectors and N labels; received shapes {data.shape} and "
            f"{target.shape}"
        )
    classes = np.unique(target)
    if len(classes) < 2:
        raise ConfigError(
            f"a classifier needs labels of at least 2 classes; the labelled images are all of "
            f"{'one class' if len(classes) else 'no class'}; label images of another class "
            "first, or use a strategy without uncertainty (typical, kcenter, coverage, random)"
        )
    model = LogisticRegression(C=PROBE_C, max_iter=_MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        # A few labels in many dimensions are separable; lbfgs then stops at max_iter on
        # an already useful solution, which is not worth a warning per round.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data, target)
    return Probe(classes=np.asarray(model.classes_, dtype=np.int64), _model=model)
