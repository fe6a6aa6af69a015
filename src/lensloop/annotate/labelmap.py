"""The label-map convention of the segmentation task.

A label map is a ``uint8`` ``(H, W)`` array:

- ``0`` (:data:`BACKGROUND`): none of the classes;
- ``k`` for ``1 <= k <= len(classes)``: ``classes[k - 1]``;
- ``255`` (:data:`VOID`): ignored by the loss and the scores (not annotated, or a region
  labelled ``void`` / ``ignore``).

The model's output channel ``k`` is the same class as label ``k`` (channel 0 is
background), so a prediction's ``argmax`` is a label map without void.
"""

from __future__ import annotations

__all__ = ["BACKGROUND", "BACKGROUND_NAMES", "MAX_CLASSES", "VOID", "VOID_NAMES", "class_index"]

#: Label of pixels that belong to none of the classes.
BACKGROUND = 0
#: Label of pixels the loss and the scores ignore.
VOID = 255
#: Most classes a label map can hold (1 … 254).
MAX_CLASSES = 254
#: Region labels (compared case-insensitively) that mean background.
BACKGROUND_NAMES = frozenset({"background"})
#: Region labels (compared case-insensitively) that mean void.
VOID_NAMES = frozenset({"void", "ignore"})


def class_index(label: str, classes: tuple[str, ...] | list[str]) -> int | None:
    """The label-map value of a region label, or ``None`` if it names no known class.

    ``background`` gives :data:`BACKGROUND`, ``void`` / ``ignore`` give :data:`VOID`
    (both case-insensitively, unless the class list itself holds that name).

    Example:
        >>> class_index("rock", ["box", "rock"]), class_index("Void", ["rock"])
        (2, 255)
    """
    if label in classes:
        return list(classes).index(label) + 1
    folded = label.casefold()
    if folded in BACKGROUND_NAMES:
        return BACKGROUND
    if folded in VOID_NAMES:
        return VOID
    return None
