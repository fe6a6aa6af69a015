"""Scoring predicted label maps against annotated ones: a confusion matrix and IoU.

Both label maps follow :mod:`lensloop.annotate.labelmap`; with C classes there are
``n_labels = C + 1`` labels, ``0`` (background) to ``C``. The scores are built on one
``(n_labels, n_labels)`` count matrix, rows the true label and columns the predicted one,
which can be summed over any number of images (:class:`ConfusionMatrix`) before scoring.

The choices, fixed here once:

- **Void is left out.** A pixel whose *truth* is :data:`~lensloop.annotate.labelmap.VOID`
  (255) is not counted anywhere: not in the matrix, the accuracy or ``n_pixels``. A
  *prediction* has no void (a model's ``argmax`` never gives 255), so a predicted 255 is
  an error, as is any label above ``C``.
- **Background is a label like any other.** It has its own row, column and IoU (under the
  name ``"background"``) and takes part in the mean IoU.
- **IoU of a label** is ``TP / (TP + FP + FN)`` over the pooled pixels: the pixels both
  maps give that label, over the pixels either gives it. A label that neither the truth
  nor the prediction holds anywhere has no IoU: it is ``None``, never ``NaN`` and never 0
  (nothing was missed and nothing invented). A label the truth lacks but the prediction
  holds has IoU 0 (every such pixel is a false positive), and so has one the prediction
  misses entirely.
- **Mean IoU** is the unweighted mean over the labels whose IoU is defined, so a class
  absent from a batch neither helps nor hurts it; ``None`` when no label is defined (no
  non-void pixel at all).
- **Pixel accuracy** is the share of non-void pixels whose predicted label is the true
  one; ``None`` when there are none.

Scores pooled over images (one matrix summed, then scored) weight each image by its
number of pixels; that is the usual "dataset IoU" of segmentation benchmarks.

Example:
    >>> import numpy as np
    >>> truth = np.array([[0, 1], [1, 255]], np.uint8)
    >>> predicted = np.array([[0, 1], [0, 1]], np.uint8)
    >>> matrix = confusion_matrix(predicted, truth, n_labels=2)
    >>> matrix.tolist()
    [[1, 0], [1, 1]]
    >>> scores = segment_scores(matrix, ["rock"])
    >>> scores["iou"], scores["mean_iou"], scores["pixel_accuracy"]
    ({'background': 0.5, 'rock': 0.5}, 0.5, 0.6666666666666666)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lensloop.annotate.labelmap import BACKGROUND_NAMES, MAX_CLASSES, VOID
from lensloop.errors import ConfigError, LabelError

__all__ = [
    "BACKGROUND_NAME",
    "ConfusionMatrix",
    "as_label_map",
    "confusion_matrix",
    "label_histogram",
    "label_names",
    "segment_scores",
]

#: The name under which scores and measurements report label 0.
BACKGROUND_NAME: Final = "background"

_STRIP: Final = 1 << 20
"""Pixels handled at a time: NumPy's bincount turns its input into 8-byte integers."""


def label_names(classes: Sequence[str]) -> tuple[str, ...]:
    """The name of every label of a label map: ``("background", *classes)``.

    Args:
        classes: The project's classes, in label order (``classes[k - 1]`` is label ``k``).

    Returns:
        ``n_labels = len(classes) + 1`` names; index ``k`` names label ``k``.

    Raises:
        ConfigError: ``classes`` is not a sequence of distinct, non-empty str, holds more
            than 254 names, or names a class ``background`` (label 0 already is).

    Example:
        >>> label_names(["box", "rock"])
        ('background', 'box', 'rock')
    """
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ConfigError(
            f"classes must be a sequence of class names (str); got {type(classes).__name__}"
        )
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"classes[{i}] is {name!r}; class names must be non-empty str")
        if name.casefold() in BACKGROUND_NAMES:
            raise ConfigError(
                f"classes[{i}] is {name!r}, but label 0 is always the background; leave "
                f"{name!r} out of the class list (pixels of no class are background)"
            )
    if len(set(classes)) != len(classes):
        twice = sorted({name for name in classes if list(classes).count(name) > 1})
        raise ConfigError(f"classes must be distinct; {', '.join(map(repr, twice))} repeat")
    if len(classes) > MAX_CLASSES:
        raise ConfigError(
            f"a label map holds at most {MAX_CLASSES} classes; got {len(classes)} names"
        )
    return (BACKGROUND_NAME, *classes)


def _check_n_labels(n_labels: int) -> int:
    if isinstance(n_labels, bool) or not isinstance(n_labels, numbers.Integral):
        raise ValueError(f"n_labels must be an integer (len(classes) + 1); got {n_labels!r}")
    if not 1 <= n_labels <= MAX_CLASSES + 1:
        raise ValueError(
            f"n_labels must be from 1 to {MAX_CLASSES + 1} (len(classes) + 1); got {n_labels}"
        )
    return int(n_labels)


def as_label_map(
    labels: npt.ArrayLike, *, n_labels: int, name: str = "labels", void: bool = True
) -> npt.NDArray[np.uint8]:
    """Check a label map and return it as ``uint8`` (without a copy when it already is).

    Args:
        labels: ``(H, W)`` integer array of labels ``0 … n_labels - 1`` (and 255, void,
            when ``void``). Other integer dtypes (a model's ``int64`` argmax) are
            converted once the values are known to fit.
        n_labels: ``len(classes) + 1``.
        name: What the array is, for the error messages ("truth", "predicted").
        void: Whether 255 (void) is allowed.

    Returns:
        The ``(H, W)`` ``uint8`` label map.

    Raises:
        ValueError: ``labels`` is not a non-empty 2-D integer array, or ``n_labels`` is
            not from 1 to 255.
        LabelError: A value is not a label of ``n_labels`` labels (or is void where void
            is not allowed).
    """
    n = _check_n_labels(n_labels)
    array = np.asarray(labels)
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be an integer label map (uint8, 0 = background, 255 = void); "
            f"got dtype {array.dtype}"
        )
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (H, W) label map; got shape {array.shape}")
    if array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > VOID:
            raise LabelError(
                f"{name} holds labels from {low} to {high}; a label map holds 0 to "
                f"{n - 1} (and {VOID} for void)"
            )
        array = array.astype(np.uint8)
    present = np.flatnonzero(label_histogram(array))
    allowed = (present < n) | (void & (present == VOID))
    if not allowed.all():
        bad = present[~allowed].tolist()
        hint = (
            "a prediction holds no void (255); predict with the model's argmax"
            if not void and VOID in bad
            else f"with {n - 1} classes the labels are 0 (background) to {n - 1}"
            + (f" and {VOID} (void)" if void else "")
            + "; check that the label map was made with the same class list"
        )
        raise LabelError(f"{name} holds label(s) {', '.join(map(str, bad))}; {hint}")
    return array


def label_histogram(labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """How many pixels hold each value of a ``uint8`` label map, counted a strip at a time.

    Args:
        labels: ``(H, W)`` ``uint8`` label map (see :func:`as_label_map`).

    Returns:
        ``(256,)`` ``int64`` counts; index ``k`` counts label ``k``, index 255 void.
    """
    flat = labels.reshape(-1)
    counts = np.zeros(256, np.int64)
    for start in range(0, flat.size, _STRIP):
        counts += np.bincount(flat[start : start + _STRIP], minlength=256)
    return counts


def confusion_matrix(
    predicted: npt.ArrayLike, truth: npt.ArrayLike, n_labels: int
) -> npt.NDArray[np.int64]:
    """Count the pixels of each (true label, predicted label) pair, void truth left out.

    Works a strip of about a million pixels at a time: each pair is coded as
    ``truth * 256 + predicted`` in 16 bits and counted with :func:`numpy.bincount`, so a
    6000 x 4000 pair costs a few tens of MB beyond the inputs.

    Args:
        predicted: ``(H, W)`` predicted label map, labels ``0 … n_labels - 1`` (no void).
        truth: ``(H, W)`` annotated label map, labels ``0 … n_labels - 1`` or 255 (void).
        n_labels: ``len(classes) + 1`` (background included).

    Returns:
        ``(n_labels, n_labels)`` ``int64`` counts; row ``i``, column ``j`` counts the
        non-void pixels of true label ``i`` predicted as ``j``.

    Raises:
        ValueError: The maps are not non-empty 2-D integer arrays of one shape, or
            ``n_labels`` is not from 1 to 255.
        LabelError: A map holds a value that is not one of its labels.

    Example:
        >>> import numpy as np
        >>> confusion_matrix(np.array([[1, 1]]), np.array([[0, 1]]), 2).tolist()
        [[0, 1], [0, 1]]
    """
    n = _check_n_labels(n_labels)
    pred = as_label_map(predicted, n_labels=n, name="predicted", void=False)
    gold = as_label_map(truth, n_labels=n, name="truth")
    if pred.shape != gold.shape:
        raise ValueError(
            f"predicted and truth must have the same (H, W); got {pred.shape} and {gold.shape}"
        )
    flat_pred, flat_gold = pred.reshape(-1), gold.reshape(-1)
    pairs = np.zeros(256 * 256, np.int64)
    code = np.empty(min(_STRIP, flat_gold.size), np.uint16)
    for start in range(0, flat_gold.size, _STRIP):
        stop = min(start + _STRIP, flat_gold.size)
        part = code[: stop - start]
        np.left_shift(flat_gold[start:stop], 8, out=part, dtype=np.uint16)
        np.bitwise_or(part, flat_pred[start:stop], out=part)
        pairs += np.bincount(part, minlength=256 * 256)
    return pairs.reshape(256, 256)[:n, :n].copy()


def segment_scores(confusion: npt.ArrayLike, classes: Sequence[str]) -> dict[str, Any]:
    """Pixel accuracy and IoU per label from a confusion matrix (see the module's rules).

    Args:
        confusion: ``(n_labels, n_labels)`` non-negative integer counts, rows the true
            label and columns the predicted one (from :func:`confusion_matrix`, or summed
            over images).
        classes: The ``n_labels - 1`` classes, in label order.

    Returns:
        A dict with ``pixel_accuracy`` (float, or None without pixels), ``iou``
        (``{name: float | None}``, ``"background"`` first, then the classes in label
        order; None for a label neither map holds), ``mean_iou`` (the mean of the defined
        IoUs, or None), ``n_pixels`` (the non-void pixels scored) and ``support``
        (``{name: int}``, the true pixels of each label).

    Raises:
        ConfigError: ``confusion`` is not a square matrix of non-negative integers with
            one row per label, or ``classes`` is not a valid class list.

    Example:
        >>> segment_scores([[3, 0, 0], [1, 2, 0], [0, 0, 0]], ["rock", "box"])["iou"]
        {'background': 0.75, 'rock': 0.6666666666666666, 'box': None}
    """
    names = label_names(classes)
    counts = np.asarray(confusion)
    if counts.dtype == np.bool_ or counts.dtype.kind not in "iu":
        raise ConfigError(f"confusion must hold integer pixel counts; got dtype {counts.dtype}")
    if counts.shape != (len(names), len(names)):
        raise ConfigError(
            f"confusion must be (n_labels, n_labels) = ({len(names)}, {len(names)}) for "
            f"{len(classes)} classes plus background; got shape {counts.shape}"
        )
    if counts.size and counts.min() < 0:
        raise ConfigError(f"confusion counts must be >= 0; got a minimum of {counts.min()}")
    counts = counts.astype(np.int64)
    hits = np.diagonal(counts)
    truth_total = counts.sum(axis=1)
    union = truth_total + counts.sum(axis=0) - hits
    iou: dict[str, float | None] = {
        name: (float(hit / both) if both else None)
        for name, hit, both in zip(names, hits.tolist(), union.tolist(), strict=True)
    }
    defined = [value for value in iou.values() if value is not None]
    n_pixels = int(truth_total.sum())
    return {
        "pixel_accuracy": float(hits.sum() / n_pixels) if n_pixels else None,
        "iou": iou,
        "mean_iou": float(np.mean(defined)) if defined else None,
        "n_pixels": n_pixels,
        "support": dict(zip(names, map(int, truth_total.tolist()), strict=True)),
    }


class ConfusionMatrix:
    """A confusion matrix summed over images, then scored once.

    Args:
        classes: The project's classes, in label order (background is added as label 0).

    Raises:
        ConfigError: ``classes`` is not a valid class list (see :func:`label_names`).

    Example:
        >>> import numpy as np
        >>> total = ConfusionMatrix(["rock"])
        >>> total.update(np.array([[1, 0]]), np.array([[1, 1]]))
        >>> total.update(np.array([[1]]), np.array([[255]]))
        >>> total.n_images, total.scores()["iou"]
        (2, {'background': 0.0, 'rock': 0.5})
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self._names = label_names(classes)
        self._classes = tuple(classes)
        n = len(self._names)
        self._counts = np.zeros((n, n), np.int64)
        self._images = 0

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes, in label order (without background)."""
        return self._classes

    @property
    def n_labels(self) -> int:
        """``len(classes) + 1``: the side of the matrix."""
        return len(self._names)

    @property
    def n_images(self) -> int:
        """How many pairs of label maps were added."""
        return self._images

    @property
    def matrix(self) -> npt.NDArray[np.int64]:
        """A copy of the summed ``(n_labels, n_labels)`` counts (rows truth, columns predicted)."""
        return self._counts.copy()

    def update(self, predicted: npt.ArrayLike, truth: npt.ArrayLike) -> None:
        """Add one image's pair of label maps (see :func:`confusion_matrix`).

        Raises:
            ValueError: The maps are not 2-D integer arrays of one shape.
            LabelError: A map holds a value that is not one of its labels.
        """
        self._counts += confusion_matrix(predicted, truth, self.n_labels)
        self._images += 1

    def scores(self) -> dict[str, Any]:
        """The scores of the summed matrix, as :func:`segment_scores` gives them."""
        return segment_scores(self._counts, self._classes)
