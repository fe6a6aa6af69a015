"""Uncertainty scores from predicted class probabilities.

Every score maps ``(N, C)`` probabilities to ``(N,)`` float64 values in ``[0, 1]`` where
higher means the model is less sure, so a sampler can always take the largest. Rows must
already be probabilities: non-negative, finite and summing to 1 within ``1e-3``. Rows that
do not are rejected rather than renormalised, because a row of logits or of unnormalised
scores that was silently rescaled would give plausible but wrong rankings.

Example:
    >>> import numpy as np
    >>> least_confidence(np.array([[0.7, 0.2, 0.1]])).round(3)
    array([0.3])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError, UnknownNameError

__all__ = [
    "UNCERTAINTY",
    "UncertaintyFn",
    "entropy",
    "get_uncertainty",
    "least_confidence",
    "list_uncertainty",
    "margin",
]

UncertaintyFn = Callable[[npt.ArrayLike], npt.NDArray[np.float64]]
"""A score: ``(N, C)`` probabilities in, ``(N,)`` float64 uncertainties out."""

_ROW_SUM_TOL = 1e-3


def _as_probs(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Check that ``probs`` are ``(N, C)`` probabilities and return them as float64."""
    array = np.asarray(probs)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ConfigError(
            f"probs must be a 2-D (N, C) array of class probabilities with C >= 1; "
            f"received shape {array.shape}; pass one row per item and one column per class"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ConfigError(
            f"probs must be a real-valued array; received dtype {array.dtype}; "
            "pass float probabilities"
        )
    data = array.astype(np.float64, copy=False)
    if data.shape[0] == 0:
        return data
    if not np.isfinite(data).all():
        bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise ConfigError(
            f"probs must be finite; row {bad} holds NaN or inf; check the model's output"
        )
    if (data < 0).any():
        bad = int(np.flatnonzero((data < 0).any(axis=1))[0])
        raise ConfigError(
            f"probs must be non-negative; row {bad} has minimum {data[bad].min():g}; "
            "pass probabilities (apply softmax to logits first)"
        )
    sums = data.sum(axis=1)
    off = np.abs(sums - 1.0) > _ROW_SUM_TOL
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        raise ConfigError(
            f"probs rows must sum to 1 within {_ROW_SUM_TOL:g}; row {bad} sums to "
            f"{sums[bad]:g} ({int(off.sum())} of {len(sums)} rows are off); pass "
            "probabilities (apply softmax to logits, or divide each row by its sum)"
        )
    return data


def least_confidence(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Score items by how low their most likely class's probability is.

    Args:
        probs: ``(N, C)`` float class probabilities, rows summing to 1.

    Returns:
        ``(N,)`` float64 ``1 - max_c probs[:, c]``, in ``[0, 1 - 1/C]``.

    Raises:
        ConfigError: ``probs`` is not a 2-D array of finite, non-negative rows summing to 1.
    """
    data = _as_probs(probs)
    if data.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(np.clip(1.0 - data.max(axis=1), 0.0, 1.0), dtype=np.float64)


def margin(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Score items by how close their two most likely classes are.

    Args:
        probs: ``(N, C)`` float class probabilities, rows summing to 1.

    Returns:
        ``(N,)`` float64 ``1 - (p1 - p2)`` where ``p1 >= p2`` are the two largest
        probabilities of the row: 1 for a tie, 0 for a certain prediction. With a single
        class (``C == 1``) there is nothing to be unsure about and every score is 0.

    Raises:
        ConfigError: ``probs`` is not a 2-D array of finite, non-negative rows summing to 1.
    """
    data = _as_probs(probs)
    n, c = data.shape
    if n == 0 or c == 1:
        return np.zeros(n, dtype=np.float64)
    top2 = np.partition(data, c - 2, axis=1)[:, c - 2 :]
    return np.asarray(np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0), dtype=np.float64)


def entropy(probs: npt.ArrayLike, *, normalize: bool = True) -> npt.NDArray[np.float64]:
    """Score items by the Shannon entropy of their predicted class distribution.

    Zero probabilities contribute 0 (the limit of ``p log p``).

    Args:
        probs: ``(N, C)`` float class probabilities, rows summing to 1.
        normalize: Divide by ``log C`` so the scores lie in ``[0, 1]`` whatever the number
            of classes; with ``C == 1`` every score is 0.

    Returns:
        ``(N,)`` float64 entropies in nats (``normalize=False``) or as a fraction of the
        largest possible entropy ``log C``.

    Raises:
        ConfigError: ``probs`` is not a 2-D array of finite, non-negative rows summing to 1.
    """
    data = _as_probs(probs)
    n, c = data.shape
    if n == 0 or c == 1:
        return np.zeros(n, dtype=np.float64)
    logs = np.log(np.where(data > 0, data, 1.0))
    values = np.maximum(-(data * logs).sum(axis=1), 0.0)
    if normalize:
        values = np.clip(values / np.log(c), 0.0, 1.0)
    return np.asarray(values, dtype=np.float64)


UNCERTAINTY: dict[str, UncertaintyFn] = {
    "entropy": entropy,
    "least_confidence": least_confidence,
    "margin": margin,
}
"""The uncertainty scores by name; each takes ``(N, C)`` probabilities."""


def list_uncertainty() -> list[str]:
    """Return the names of the registered uncertainty scores, sorted.

    Returns:
        The keys of :data:`UNCERTAINTY`.
    """
    return sorted(UNCERTAINTY)


def get_uncertainty(name: str) -> UncertaintyFn:
    """Look up an uncertainty score by name.

    Args:
        name: One of :func:`list_uncertainty`.

    Returns:
        The score function.

    Raises:
        UnknownNameError: No score has that name; the message lists the valid names.
    """
    try:
        return UNCERTAINTY[name]
    except KeyError:
        raise UnknownNameError("uncertainty score", name, list(UNCERTAINTY)) from None
