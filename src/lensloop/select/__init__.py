"""Active-learning selection: scores, samplers, strategies, rounds and the simulator.

Scores, samplers, balance and strategies are pure functions over NumPy arrays: scores
turn ``(N, C)`` class probabilities into ``(N,)`` uncertainties; samplers pick row indices
from ``(N, D)`` embedding vectors; :func:`choose` runs a parsed strategy on a
:class:`Pool`. :mod:`lensloop.select.rounds` (recorded selection rounds) and
:mod:`lensloop.select.simulate` (learning curves) work on a project and are imported
from their modules. FAISS and scikit-learn are imported when first used.
"""

from lensloop.select.balance import Balance, parse_balance
from lensloop.select.diversity import (
    ProbCoverResult,
    kcenter_greedy,
    probcover,
    typicality,
    typiclust,
)
from lensloop.select.probe import Probe, fit_probe
from lensloop.select.scores import (
    UNCERTAINTY,
    UncertaintyFn,
    entropy,
    get_uncertainty,
    least_confidence,
    list_uncertainty,
    margin,
)
from lensloop.select.strategy import Pool, Selection, Strategy, choose, parse_strategy

__all__ = [
    "UNCERTAINTY",
    "Balance",
    "Pool",
    "ProbCoverResult",
    "Probe",
    "Selection",
    "Strategy",
    "UncertaintyFn",
    "choose",
    "entropy",
    "fit_probe",
    "get_uncertainty",
    "kcenter_greedy",
    "least_confidence",
    "list_uncertainty",
    "margin",
    "parse_balance",
    "parse_strategy",
    "probcover",
    "typicality",
    "typiclust",
]
