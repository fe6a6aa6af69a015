"""Confusion matrix, IoU and pixel accuracy of predicted label maps against annotated ones."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import lensloop.tasks.segment.scoring as scoring_module
from lensloop.errors import ConfigError, LabelError
from lensloop.tasks.segment.scoring import (
    ConfusionMatrix,
    as_label_map,
    confusion_matrix,
    label_names,
    segment_scores,
)

V = 255

# 3 x 4 maps, labels 0 (background), 1 (box), 2 (rock), void in the truth.
TRUTH = np.array(
    [
        [0, 0, 1, 1],
        [2, 2, 2, 1],
        [V, V, 2, 0],
    ],
    np.uint8,
)
PREDICTED = np.array(
    [
        [0, 1, 1, 1],
        [2, 2, 1, 1],
        [2, 0, 2, 0],
    ],
    np.uint8,
)


def _brute_force(pred: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), np.int64)
    for t, p in zip(truth.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if t != V:
            matrix[t, p] += 1
    return matrix


def test_confusion_matrix_by_hand_leaves_void_truth_out() -> None:
    matrix = confusion_matrix(PREDICTED, TRUTH, 3)
    # rows truth, columns predicted; the two void pixels (predicted 2 and 0) are not counted
    assert matrix.tolist() == [
        [2, 1, 0],
        [0, 3, 0],
        [0, 1, 3],
    ]
    assert matrix.dtype == np.int64
    assert matrix.sum() == TRUTH.size - 2


def test_scores_by_hand() -> None:
    scores = segment_scores(confusion_matrix(PREDICTED, TRUTH, 3), ["box", "rock"])
    # background: TP 2, FN 1, FP 0 -> 2/3; box: TP 3, FP 2 -> 3/5; rock: TP 3, FN 1 -> 3/4
    assert scores["iou"] == pytest.approx({"background": 2 / 3, "box": 3 / 5, "rock": 3 / 4})
    assert list(scores["iou"]) == ["background", "box", "rock"]
    assert scores["mean_iou"] == pytest.approx((2 / 3 + 3 / 5 + 3 / 4) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(8 / 10)
    assert scores["n_pixels"] == 10
    assert scores["support"] == {"background": 3, "box": 3, "rock": 4}


def test_absent_label_has_no_iou_and_is_left_out_of_the_mean() -> None:
    truth = np.array([[0, 1], [1, 0]], np.uint8)
    pred = np.array([[0, 1], [1, 1]], np.uint8)
    scores = segment_scores(confusion_matrix(pred, truth, 3), ["rock", "gravel"])
    assert scores["iou"]["gravel"] is None  # in neither map: not 0, not NaN
    assert scores["iou"]["background"] == pytest.approx(1 / 2)
    assert scores["iou"]["rock"] == pytest.approx(2 / 3)
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_label_only_predicted_or_only_true_scores_zero() -> None:
    truth = np.array([[0, 0, 1]], np.uint8)
    pred = np.array([[2, 0, 0]], np.uint8)
    scores = segment_scores(confusion_matrix(pred, truth, 3), ["rock", "gravel"])
    assert scores["iou"]["rock"] == 0.0  # missed entirely
    assert scores["iou"]["gravel"] == 0.0  # invented
    assert scores["mean_iou"] == pytest.approx((1 / 3 + 0 + 0) / 3)


def test_all_void_has_no_scores() -> None:
    truth = np.full((2, 2), V, np.uint8)
    scores = segment_scores(confusion_matrix(np.zeros((2, 2), np.uint8), truth, 2), ["a"])
    assert scores == {
        "pixel_accuracy": None,
        "iou": {"background": None, "a": None},
        "mean_iou": None,
        "n_pixels": 0,
        "support": {"background": 0, "a": 0},
    }


def test_matches_brute_force_across_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring_module, "_STRIP", 37)  # many strips, the last one short
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, (23, 31)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.2] = V
    pred = rng.integers(0, 5, (23, 31)).astype(np.uint8)
    assert confusion_matrix(pred, truth, 5).tolist() == _brute_force(pred, truth, 5).tolist()


def test_other_integer_dtypes_are_accepted() -> None:
    matrix = confusion_matrix(PREDICTED.astype(np.int64), TRUTH.astype(np.int32), 3)
    assert matrix.tolist() == confusion_matrix(PREDICTED, TRUTH, 3).tolist()


@pytest.mark.parametrize(
    ("pred", "truth", "error", "match"),
    [
        (np.array([[V]], np.uint8), np.array([[0]], np.uint8), LabelError, "no void"),
        (np.array([[3]], np.uint8), np.array([[0]], np.uint8), LabelError, "label.s. 3"),
        (np.array([[0]], np.uint8), np.array([[7]], np.uint8), LabelError, "truth holds"),
        (np.array([[-1]]), np.array([[0]], np.uint8), LabelError, "from -1"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), ValueError, "same"),
        (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), ValueError, "dtype"),
        (np.zeros(4, np.uint8), np.zeros(4, np.uint8), ValueError, r"\(H, W\)"),
    ],
)
def test_bad_maps_are_refused(
    pred: np.ndarray, truth: np.ndarray, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        confusion_matrix(pred, truth, 3)


@pytest.mark.parametrize("n_labels", [0, 256, 2.0, True])
def test_bad_n_labels(n_labels: Any) -> None:
    one = np.zeros((1, 1), np.uint8)
    with pytest.raises(ValueError, match="n_labels"):
        confusion_matrix(one, one, n_labels)


def test_as_label_map_keeps_uint8_without_copy() -> None:
    assert as_label_map(TRUTH, n_labels=3) is TRUTH


def test_segment_scores_checks_its_matrix() -> None:
    with pytest.raises(ConfigError, match=r"\(3, 3\)"):
        segment_scores(np.zeros((2, 2), np.int64), ["a", "b"])
    with pytest.raises(ConfigError, match="integer"):
        segment_scores(np.zeros((2, 2)), ["a"])
    with pytest.raises(ConfigError, match=">= 0"):
        segment_scores(np.array([[1, -1], [0, 0]]), ["a"])


def test_label_names_refuse_bad_class_lists() -> None:
    assert label_names(["box", "rock"]) == ("background", "box", "rock")
    with pytest.raises(ConfigError, match="label 0 is always the background"):
        label_names(["Background", "rock"])
    with pytest.raises(ConfigError, match="'rock' repeat"):
        label_names(["rock", "box", "rock"])
    with pytest.raises(ConfigError, match="sequence"):
        label_names("rock")
    with pytest.raises(ConfigError, match="at most 254"):
        label_names([f"c{i}" for i in range(255)])


def test_confusion_matrix_class_sums_over_images() -> None:
    total = ConfusionMatrix(["box", "rock"])
    total.update(PREDICTED, TRUTH)
    total.update(PREDICTED[:1], TRUTH[:1])
    assert total.n_images == 2
    assert total.n_labels == 3
    expected = confusion_matrix(PREDICTED, TRUTH, 3) + confusion_matrix(PREDICTED[:1], TRUTH[:1], 3)
    assert total.matrix.tolist() == expected.tolist()
    assert total.scores() == segment_scores(expected, ["box", "rock"])
    total.matrix[0, 0] = 999  # a copy: the running sum is not touched
    assert total.matrix.tolist() == expected.tolist()


def test_large_pair_in_bounded_memory() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (4000, 6000), dtype=np.uint8)
    truth[:100] = V
    pred = np.roll(truth, 1, axis=1)
    pred[pred == V] = 0
    tracemalloc.start()
    try:
        matrix = confusion_matrix(pred, truth, 4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert matrix.sum() == 3900 * 6000
    assert peak < 40 * 2**20  # a few bytes per pixel would be 100+ MB
