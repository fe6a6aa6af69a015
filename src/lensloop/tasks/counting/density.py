"""Density maps from points and points from density maps, and where the loss looks.

A density map is an ``(H, W)`` float32 image whose sum over any region is the number of
objects in it: each point contributes a Gaussian of unit mass (``sigma`` pixels). Points
are pixel ``(x, y)`` with pixel ``(row i, column j)`` covering ``[j, j+1) x [i, i+1)``, so
a point at ``(j + 0.5, i + 0.5)`` is the centre of that pixel; sub-pixel positions are
splatted bilinearly onto the four nearest pixel centres before blurring, and the blur
reflects at the border, so the map's sum is exactly the number of points.

Sparse annotation is the normal case: an annotator clicks some cells, not all.
:func:`loss_weights` says which pixels the loss may trust: near an annotated point, and
background (pixels that are not foreground), always; foreground far from every annotated
point only when the image is fully annotated (``full``) or known empty (``empty``).
The foreground comes from :func:`foreground_mask`, a threshold of the image's own
intensities that adapts to each image type, or from any mask the caller has (a
segmentation model's, for instance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from lensloop.tasks.counting.points import as_points

__all__ = [
    "STATUSES",
    "density_target",
    "find_peaks",
    "foreground_mask",
    "gaussian_peak",
    "loss_weights",
]

#: How completely an image is annotated (``conflict``: annotators disagree).
STATUSES = ("empty", "sparse", "full", "conflict")
Status = Literal["empty", "sparse", "full", "conflict"]


def gaussian_peak(sigma: float) -> float:
    """Height of one object's density at its centre: ``1 / (2 pi sigma^2)``."""
    return 1.0 / (2.0 * np.pi * sigma * sigma)


def density_target(
    points: npt.ArrayLike, shape: tuple[int, int], *, sigma: float
) -> npt.NDArray[np.float32]:
    """Return the ``(H, W)`` density map of ``points`` (sum = number of points inside).

    Points outside the image are ignored.

    Raises:
        ValueError: ``sigma`` is not positive or ``shape`` is not two positive sizes.
    """
    from scipy.ndimage import gaussian_filter

    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma}")
    height, width = shape
    if height < 1 or width < 1:
        raise ValueError(f"shape must be two positive sizes; got {shape}")
    array = as_points(points)
    inside = (
        (array[:, 0] >= 0) & (array[:, 0] < width) & (array[:, 1] >= 0) & (array[:, 1] < height)
    )
    array = array[inside]
    deltas = np.zeros((height, width), dtype=np.float64)
    if len(array):
        # Continuous pixel coordinates of the point, clamped to the pixel-centre grid.
        cx = np.clip(array[:, 0] - 0.5, 0, width - 1)
        cy = np.clip(array[:, 1] - 0.5, 0, height - 1)
        x0, y0 = np.floor(cx).astype(np.intp), np.floor(cy).astype(np.intp)
        x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
        fx, fy = cx - x0, cy - y0
        for ys, xs, weight in (
            (y0, x0, (1 - fx) * (1 - fy)),
            (y0, x1, fx * (1 - fy)),
            (y1, x0, (1 - fx) * fy),
            (y1, x1, fx * fy),
        ):
            np.add.at(deltas, (ys, xs), weight)
    density: npt.NDArray[np.float32] = gaussian_filter(
        deltas, sigma=sigma, mode="reflect", truncate=4.0
    ).astype(np.float32)
    return density


def find_peaks(
    density: npt.ArrayLike,
    *,
    sigma: float,
    threshold: float = 0.3,
    min_distance: int | None = None,
) -> npt.NDArray[np.float64]:
    """Locate objects as local maxima of a density map, refined to sub-pixel positions.

    Args:
        density: ``(H, W)`` density map.
        sigma: The Gaussian width the model was trained with.
        threshold: Peaks lower than this fraction of one object's peak height are noise.
        min_distance: Smallest distance in pixels between two peaks (default
            ``max(1, round(sigma))``).

    Returns:
        ``(N, 2)`` points ``(x, y)``, strongest first.
    """
    from skimage.feature import peak_local_max

    values = np.asarray(density, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"a density map must be (H, W); got shape {values.shape}")
    distance = min_distance if min_distance is not None else max(1, round(sigma))
    peaks = peak_local_max(  # type: ignore[no-untyped-call]
        values,
        min_distance=distance,
        threshold_abs=threshold * gaussian_peak(sigma),
        exclude_border=False,
    )
    if len(peaks) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    # Sub-pixel: the intensity-weighted centre of the 3 x 3 neighbourhood.
    padded = np.pad(values, 1, mode="edge")
    offsets = np.array([-1, 0, 1])
    rows, cols = peaks[:, 0], peaks[:, 1]
    patch = np.stack(
        [
            np.stack([padded[rows + 1 + dy, cols + 1 + dx] for dx in offsets], axis=1)
            for dy in offsets
        ],
        axis=1,
    )  # (N, 3, 3): [point, dy, dx]
    weights = np.clip(patch, 0, None)
    total = weights.sum(axis=(1, 2))
    total[total == 0] = 1.0
    dy = (weights.sum(axis=2) * offsets).sum(axis=1) / total
    dx = (weights.sum(axis=1) * offsets).sum(axis=1) / total
    return np.stack([cols + 0.5 + dx, rows + 0.5 + dy], axis=1).astype(np.float64)


def foreground_mask(
    image: npt.ArrayLike, *, method: Literal["otsu", "li", "triangle"] = "otsu", blur: float = 1.0
) -> npt.NDArray[np.bool_]:
    """Bright objects of an image, by a global threshold of its own smoothed intensities.

    The threshold adapts to each image (its histogram), so it needs no tuning for a new
    image type as long as objects are brighter than their surroundings; for dark objects
    on a bright field, invert the image first. Colour images are averaged over channels.

    Raises:
        ValueError: Not ``(H, W)`` or ``(H, W, C)``, or an unknown method.
    """
    from scipy.ndimage import gaussian_filter
    from skimage import filters

    values = np.asarray(image)
    if values.ndim == 3:
        values = values.mean(axis=2)
    if values.ndim != 2:
        raise ValueError(f"an image must be (H, W) or (H, W, C); got shape {values.shape}")
    methods: dict[str, Callable[[npt.NDArray[Any]], float]] = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
    }
    if method not in methods:
        raise ValueError(f"unknown threshold method {method!r}; valid: {', '.join(methods)}")
    smooth = gaussian_filter(values.astype(np.float32), sigma=blur) if blur > 0 else values
    if float(smooth.min()) == float(smooth.max()):
        return np.zeros(values.shape, dtype=bool)
    mask: npt.NDArray[np.bool_] = smooth > methods[method](smooth)
    return mask


def loss_weights(
    points: npt.ArrayLike,
    shape: tuple[int, int],
    *,
    status: Status,
    foreground: npt.NDArray[np.bool_] | None,
    radius: float,
    margin: float = 0.0,
) -> npt.NDArray[np.float32]:
    """Per-pixel loss weights (1: trusted, 0: ignored) for one annotated image.

    Args:
        points: The annotated points.
        shape: ``(H, W)``.
        status: ``full`` and ``empty`` images are trusted everywhere; ``sparse`` ones near
            their points and outside the foreground; ``conflict`` ones (annotators
            disagree) only near their points.
        foreground: Where objects may be (:func:`foreground_mask`); ``None`` treats the
            whole image as possible foreground.
        radius: Pixels around an annotated point that are trusted (about a cell radius).
        margin: Pixels the foreground is grown by before the rest counts as background.
            An unannotated object's density reaches beyond its bright core (a Gaussian of
            ``sigma`` holds 86% of its mass within ``2 sigma``); trusting a zero target
            there teaches the model to count every object short, so use about
            ``2 sigma``.

    Raises:
        ValueError: Unknown status, or a foreground mask of another shape.
    """
    from scipy.ndimage import distance_transform_edt

    if status not in STATUSES:
        raise ValueError(f"unknown annotation status {status!r}; valid: {', '.join(STATUSES)}")
    height, width = shape
    if status in ("full", "empty"):
        return np.ones(shape, dtype=np.float32)
    if foreground is not None and foreground.shape != (height, width):
        raise ValueError(f"the foreground mask is {foreground.shape}, the image {(height, width)}")
    array = as_points(points)
    seeds = np.ones(shape, dtype=bool)
    if len(array):
        cols = np.clip(array[:, 0].astype(np.intp), 0, width - 1)
        rows = np.clip(array[:, 1].astype(np.intp), 0, height - 1)
        seeds[rows, cols] = False
        near: npt.NDArray[np.bool_] = distance_transform_edt(seeds) <= radius
    else:
        near = np.zeros(shape, dtype=bool)
    if status == "conflict" or foreground is None:
        return near.astype(np.float32)
    background: npt.NDArray[np.bool_]
    if margin > 0 and foreground.any():
        background = distance_transform_edt(~foreground) > margin
    else:
        background = ~foreground
    trusted = near | background
    return trusted.astype(np.float32)
