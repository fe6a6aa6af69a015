"""Compare predicted label maps with annotated ones: IoU scores and measurement errors.

Segmentation is judged two ways (:func:`score_label_maps`): pixel by pixel (per-class
IoU, mean IoU and pixel accuracy, void excluded; :mod:`lensloop.tasks.segment.scoring`)
and by what users read off the masks (:mod:`lensloop.tasks.segment.measure`): each
class's area and number of fragments, predicted against annotated, summed over the
images. Pixels that are void in the annotation are left out of the predicted mask before
it is measured, so both sides measure the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.annotate.labelmap import VOID
from lensloop.tasks.segment.measure import measure_regions
from lensloop.tasks.segment.scoring import confusion_matrix, segment_scores

__all__ = ["score_label_maps"]


def score_label_maps(
    predicted: Sequence[npt.NDArray[np.uint8]],
    truth: Sequence[npt.NDArray[np.uint8]],
    classes: Sequence[str],
    *,
    min_area: int = 0,
) -> dict[str, Any]:
    """IoU scores and measurement agreement of predicted label maps against annotated ones.

    Returns:
        :func:`~lensloop.tasks.segment.scoring.segment_scores` (``pixel_accuracy``,
        ``iou``, ``mean_iou``, ...) plus ``n`` (images), ``measurements``: per class the
        annotated and predicted total area and fragment count over all images, their
        relative errors, and ``per_image`` rows (``true``/``predicted`` fragments and area
        per class).
    """
    n_labels = len(classes) + 1
    confusion = np.zeros((n_labels, n_labels), dtype=np.int64)
    per_image: list[dict[str, Any]] = []
    totals = {
        name: {"true_area": 0, "predicted_area": 0, "true_fragments": 0, "predicted_fragments": 0}
        for name in classes
    }
    for pred, true in zip(predicted, truth, strict=True):
        confusion += confusion_matrix(pred, true, n_labels)
        masked = np.where(true == VOID, VOID, pred).astype(np.uint8)
        got = measure_regions(masked, classes, min_area=min_area)
        want = measure_regions(true, classes, min_area=min_area)
        row: dict[str, Any] = {}
        for name in classes:
            a, b = want.classes[name], got.classes[name]
            totals[name]["true_area"] += int(a.area_px)
            totals[name]["predicted_area"] += int(b.area_px)
            totals[name]["true_fragments"] += int(a.fragments)
            totals[name]["predicted_fragments"] += int(b.fragments)
            row[name] = {
                "true_area": int(a.area_px),
                "predicted_area": int(b.area_px),
                "true_fragments": int(a.fragments),
                "predicted_fragments": int(b.fragments),
            }
        per_image.append(row)
    scores = segment_scores(confusion, classes)
    measurements: dict[str, Any] = {}
    for name, total in totals.items():
        measurements[name] = {
            **total,
            "area_error": _relative(total["predicted_area"], total["true_area"]),
            "fragment_error": _relative(total["predicted_fragments"], total["true_fragments"]),
        }
    return {**scores, "n": len(predicted), "measurements": measurements, "per_image": per_image}


def _relative(predicted: float, true: float) -> float | None:
    return None if true == 0 else (predicted - true) / true
