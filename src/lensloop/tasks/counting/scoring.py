"""Scoring a counting model's density maps against complete point annotations.

Only images whose annotation is complete (status ``full`` or ``empty``) have a true count
and a full set of true locations; sparse and conflicting images are left out of every
metric. Counts are the density's sum; locations are its peaks
(:func:`~lensloop.tasks.counting.density.find_peaks`), matched one-to-one to the true
points within a radius (:func:`~lensloop.tasks.counting.points.localisation_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.tasks.counting.data import CountImage
from lensloop.tasks.counting.density import find_peaks
from lensloop.tasks.counting.points import count_errors, localisation_scores

__all__ = ["COMPLETE", "count_metrics"]

#: Statuses of completely annotated images: the only ones with a true count.
COMPLETE = ("full", "empty")


def count_metrics(
    densities: Sequence[npt.NDArray[np.float32]],
    items: Sequence[CountImage],
    *,
    sigma: float,
    threshold: float,
    radius: float,
) -> dict[str, Any]:
    """Count and localisation metrics on the completely annotated (full, empty) images.

    Returns ``n`` (images scored), ``mae``, ``mre`` (over images with objects), ``bias``,
    ``mae_empty``, pooled ``precision``, ``recall``, ``f1`` (one-to-one within
    ``radius``), ``tp``/``fp``/``fn``, and per image ``{image_id, true, predicted,
    found}``. Sparse and conflicting images have no true count and are left out; a metric
    without images to measure it on is ``None``.
    """
    true_counts: list[float] = []
    predicted: list[float] = []
    rows = []
    tp = fp = fn = 0
    for density, item in zip(densities, items, strict=True):
        if item.status not in COMPLETE:
            continue
        peaks = find_peaks(density, sigma=sigma, threshold=threshold)
        scores = localisation_scores(peaks, item.points, radius=radius)
        tp, fp, fn = tp + int(scores["tp"]), fp + int(scores["fp"]), fn + int(scores["fn"])
        total = float(density.sum(dtype=np.float64))
        true_counts.append(float(len(item.points)))
        predicted.append(total)
        rows.append(
            {
                "image_id": item.image_id,
                "true": len(item.points),
                "predicted": round(total, 3),
                "found": len(peaks),
            }
        )
    nan = float("nan")
    errors = (
        count_errors(predicted, true_counts)
        if rows
        else {"mae": nan, "mre": nan, "bias": nan, "mae_empty": nan}
    )
    precision_ = tp / (tp + fp) if tp + fp else (1.0 if rows and fn == 0 else nan)
    recall = tp / (tp + fn) if tp + fn else (1.0 if rows and fp == 0 else nan)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else (1.0 if rows else nan)
    measured = {
        "mae": errors["mae"],
        "mre": errors["mre"],
        "bias": errors["bias"],
        "mae_empty": errors["mae_empty"],
        "precision": precision_,
        "recall": recall,
        "f1": f1,
    }
    return {
        "n": len(rows),
        # What cannot be measured (no image with objects, say) is None: JSON has no NaN.
        **{k: None if math.isnan(v) else float(v) for k, v in measured.items()},
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "radius": radius,
        "threshold": threshold,
        "per_image": rows,
    }
