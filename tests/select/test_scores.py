import math

import numpy as np
import pytest

from lensloop.errors import ConfigError, UnknownNameError
from lensloop.select import (
    UNCERTAINTY,
    entropy,
    get_uncertainty,
    least_confidence,
    list_uncertainty,
    margin,
)

PROBS = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])


def test_least_confidence_hand_computed() -> None:
    np.testing.assert_allclose(least_confidence(PROBS), [0.3, 2 / 3, 0.0, 0.5])


def test_margin_hand_computed() -> None:
    np.testing.assert_allclose(margin(PROBS), [0.5, 1.0, 0.0, 1.0])


def test_entropy_hand_computed() -> None:
    raw = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(
        entropy(PROBS, normalize=False), [raw, math.log(3), 0.0, math.log(2)]
    )
    np.testing.assert_allclose(
        entropy(PROBS), [raw / math.log(3), 1.0, 0.0, math.log(2) / math.log(3)]
    )


def test_single_class_scores_zero() -> None:
    ones = np.ones((3, 1))
    for fn in UNCERTAINTY.values():
        np.testing.assert_array_equal(fn(ones), np.zeros(3))


def test_empty_input_gives_empty_scores() -> None:
    for fn in UNCERTAINTY.values():
        out = fn(np.zeros((0, 4)))
        assert out.shape == (0,)
        assert out.dtype == np.float64


def test_float32_and_tolerance_accepted() -> None:
    probs = np.array([[0.6, 0.3999]], dtype=np.float32)
    assert least_confidence(probs).dtype == np.float64
    assert 0.0 <= margin(probs)[0] <= 1.0


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.array([0.5, 0.5]), r"probs must be a 2-D \(N, C\).*shape \(2,\)"),
        (np.zeros((2, 0)), "C >= 1"),
        (np.array([[0.5, np.nan]]), "row 0 holds NaN"),
        (np.array([[0.5, 0.5], [1.2, -0.2]]), "non-negative; row 1"),
        (np.array([[0.5, 0.5], [2.0, 3.0]]), "row 1 sums to 5.*softmax"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_probabilities_raise(probs: np.ndarray, match: str) -> None:
    for fn in UNCERTAINTY.values():
        with pytest.raises(ConfigError, match=match):
            fn(probs)


def test_registry() -> None:
    assert list_uncertainty() == ["entropy", "least_confidence", "margin"]
    assert get_uncertainty("margin") is margin
    with pytest.raises(UnknownNameError, match="valid names are: entropy, least_confidence"):
        get_uncertainty("bald")
    with pytest.raises(LookupError):
        get_uncertainty("")
