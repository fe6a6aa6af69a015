"""Run a released segmentation model: a label map per image.

A segmentation release (``task: segment``, input kind ``segment``) is an ONNX graph from
scaled ``(N, C, H, W)`` images to class probabilities ``(N, K + 1, H, W)`` (channel 0 is
background, channel ``k`` the card's ``classes[k - 1]``), and a card that says how to
scale an image (:mod:`lensloop.tasks.inputs`). Images of any size are run in
overlapping tiles (:func:`~lensloop.tasks.tiling.predict_tiled`); the label map is the
blended probabilities' ``argmax`` (:mod:`lensloop.annotate.labelmap`).

:func:`load_segmenter` loads a model by version, alias or folder (through the same user
cache as the other tasks); :func:`segment` is the Python entry point, ``lensloop segment``
and ``lensloop measure`` the command line ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensloop.project import Project
from lensloop.settings import Settings
from lensloop.tasks.inputs import IntensityRange, scale_image
from lensloop.tasks.tiling import predict_tiled
from lensloop.train.dense import DenseRelease, expand_images, load_dense, read_images

__all__ = [
    "KIND",
    "OUTPUT_NAME",
    "TASK",
    "SegmentResult",
    "Segmenter",
    "load_segmenter",
    "segment",
]

TASK = "segment"
#: The card's input kind.
KIND = "segment"
#: Name of the released graph's output.
OUTPUT_NAME = "probabilities"
_BATCH = 2


@dataclass(frozen=True)
class SegmentResult:
    """One image's segmentation.

    Attributes:
        source: The file path, catalog image id or array position given.
        labels: ``(H, W)`` uint8 label map (0 background, ``k`` the ``k``-th class).
        confidence: ``(H, W)`` float32 probability of the chosen label, when asked for.
    """

    source: str
    labels: npt.NDArray[np.uint8] = field(repr=False)
    confidence: npt.NDArray[np.float32] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Segmenter(DenseRelease):
    """A loaded segmentation model (see :class:`~lensloop.train.dense.DenseRelease`)."""

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes; label ``k`` is ``classes[k - 1]``."""
        return tuple(self.card["classes"])

    def probabilities(
        self, image: npt.ArrayLike, *, name: str = "image"
    ) -> npt.NDArray[np.float32]:
        """``(K + 1, H, W)`` class probabilities of an image.

        Raises:
            ConfigError: The image's shape does not fit the model.
        """
        scaling = IntensityRange.from_card(self.card["input"])
        scaled = scale_image(image, scaling, name=name)
        spec = self.card["segment"]
        return predict_tiled(
            scaled,
            self.runner,
            tile=int(spec.get("tile", 512)),
            overlap=int(spec.get("overlap", 64)),
            batch_size=_BATCH,
            out_channels=len(self.classes) + 1,
        )

    def segment_array(
        self, image: npt.ArrayLike, *, name: str = "image", confidence: bool = False
    ) -> SegmentResult:
        """Segment one image array; with ``confidence``, also each pixel's top probability."""
        probabilities = self.probabilities(image, name=name)
        labels = np.argmax(probabilities, axis=0).astype(np.uint8)
        top = np.max(probabilities, axis=0) if confidence else None
        return SegmentResult(name, labels, top)

    def segment(self, images: Iterable[str | Path | npt.NDArray[Any]]) -> list[SegmentResult]:
        """Segment image files or arrays.

        Raises:
            ConfigError: An image cannot be read or has an unusable shape (named).
        """
        return [
            self.segment_array(array, name=name)
            for name, array in read_images(images, verb="segment")
        ]


def load_segmenter(
    model: str | int | Path | None = None,
    *,
    project: Project | None = None,
    settings: Settings | None = None,
) -> Segmenter:
    """Load a released segmentation model by version number, alias or folder path.

    Args:
        model: A version or alias of ``project``'s registry, or a released model folder;
            ``None``: the champion, else the latest version.
        project: The project whose registry holds ``model`` (not needed for a path).
        settings: Where the user cache is (default: the project's, else the environment's).

    Raises:
        ConfigError: Not a segmentation model folder, an unreadable card, or a corrupt
            graph.
        NotFoundError: No such version or alias.
    """
    return load_dense(
        Segmenter,
        model,
        project=project,
        settings=settings,
        task=TASK,
        kind=KIND,
        output=OUTPUT_NAME,
        what="segmentation",
        sections=("segment", "input"),
    )


def segment(
    images: Sequence[str | Path | npt.NDArray[Any]] | str | Path,
    model: Segmenter | str | int | Path | None = None,
    *,
    project: Project | None = None,
) -> dict[str, npt.NDArray[np.uint8]]:
    """Segment images: a label map per image.

    Args:
        images: Image files, folders (their images, recursively), or arrays (keyed
            ``array 0``, ``array 1``, ...).
        model: A loaded :class:`Segmenter`, or what :func:`load_segmenter` takes.
        project: The project whose registry ``model`` names.

    Returns:
        Each image's ``(H, W)`` uint8 label map: 0 background, ``k`` the model's
        ``classes[k - 1]`` (:attr:`Segmenter.classes`).

    Raises:
        ConfigError: No images found, an unreadable image, or an unusable model.
        NotFoundError: No such model version or alias.
    """
    segmenter = model if isinstance(model, Segmenter) else load_segmenter(model, project=project)
    given: Sequence[str | Path | npt.NDArray[Any]] = (
        [images] if isinstance(images, str | Path) else images
    )
    return {r.source: r.labels for r in segmenter.segment(expand_images(given))}
