"""Active-learning selection: uncertainty scores and diversity samplers.

Pure functions over NumPy arrays. Scores turn ``(N, C)`` class probabilities into ``(N,)``
uncertainties; samplers pick row indices from ``(N, D)`` embedding vectors. FAISS is
imported only by the samplers that use it, when they are called.
"""

from lensloop.select.diversity import (
    ProbCoverResult,
    kcenter_greedy,
    probcover,
    typicality,
    typiclust,
)
from lensloop.select.scores import (
    UNCERTAINTY,
    UncertaintyFn,
    entropy,
    get_uncertainty,
    least_confidence,
    list_uncertainty,
    margin,
)

__all__ = [
    "UNCERTAINTY",
    "ProbCoverResult",
    "UncertaintyFn",
    "entropy",
    "get_uncertainty",
    "kcenter_greedy",
    "least_confidence",
    "list_uncertainty",
    "margin",
    "probcover",
    "typicality",
    "typiclust",
]
