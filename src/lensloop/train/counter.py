"""Run a released counting model: counts and locations of objects in images.

A counting release (``task: count``, input kind ``density``) is an ONNX graph from scaled
``(N, C, H, W)`` images to a density ``(N, 1, H, W)`` in objects per pixel, and a card
that says how to scale an image (:mod:`lensloop.tasks.inputs`) and how to read
the density: the count is its sum, the locations its local maxima above the card's
threshold (:func:`~lensloop.tasks.counting.density.find_peaks`). Images of any size are
run in overlapping tiles (:func:`~lensloop.tasks.tiling.predict_tiled`), so a
4000 x 4000 image needs memory for one tile batch and the density, not for the network
on the whole image.

:func:`load_counter` loads a model by version, alias or folder (through the same user
cache as classifiers); :func:`count` is the Python entry point, ``lensloop count`` the
command line one.
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
from lensloop.tasks.counting.density import find_peaks
from lensloop.tasks.inputs import IntensityRange, scale_image
from lensloop.tasks.tiling import predict_tiled
from lensloop.train.dense import (
    INPUT_NAME,
    DenseRelease,
    expand_images,
    load_dense,
    read_images,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "TASK",
    "CountResult",
    "Counter",
    "count",
    "load_counter",
]

TASK = "count"
#: Name of the released graph's output (its input is ``INPUT_NAME``).
OUTPUT_NAME = "density"
_BATCH = 4


@dataclass(frozen=True)
class CountResult:
    """One image's count.

    Attributes:
        source: The file path, catalog image id or array position given.
        count: Objects in the image: the sum of the density map.
        points: ``(K, 2)`` located objects ``(x, y)`` in pixels, strongest first.
        scores: ``(K,)`` each location's peak height relative to one object's (about 1
            for an isolated, clearly seen object).
    """

    source: str
    count: float
    points: npt.NDArray[np.float64] = field(repr=False)
    scores: npt.NDArray[np.float64] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: count, number of locations, and the locations."""
        return {
            "count": round(self.count, 3),
            "located": len(self.points),
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points],
            "scores": [round(float(s), 3) for s in self.scores],
        }


@dataclass(frozen=True)
class Counter(DenseRelease):
    """A loaded counting model (see :class:`~lensloop.train.dense.DenseRelease`)."""

    @property
    def sigma(self) -> float:
        """Width of one object's Gaussian in the density, in pixels."""
        return float(self.card["density"]["sigma"])

    @property
    def threshold(self) -> float:
        """Peak threshold, as a fraction of one object's peak height."""
        return float(self.card["density"]["threshold"])

    def density(self, image: npt.ArrayLike, *, name: str = "image") -> npt.NDArray[np.float32]:
        """The ``(H, W)`` density map of an image (objects per pixel).

        Raises:
            ConfigError: The image's shape does not fit the model.
        """
        scaling = IntensityRange.from_card(self.card["input"])
        scaled = scale_image(image, scaling, name=name)
        spec = self.card["density"]
        density: npt.NDArray[np.float32] = predict_tiled(
            scaled,
            self.runner,
            tile=int(spec.get("tile", 512)),
            overlap=int(spec.get("overlap", 64)),
            batch_size=_BATCH,
            out_channels=1,
        )[0]
        return density

    def count_array(self, image: npt.ArrayLike, *, name: str = "image") -> CountResult:
        """Count the objects of one image array."""
        density = self.density(image, name=name)
        points = find_peaks(density, sigma=self.sigma, threshold=self.threshold)
        peak = 1.0 / (2.0 * np.pi * self.sigma**2)
        if len(points):
            cols = np.clip(points[:, 0].astype(np.intp), 0, density.shape[1] - 1)
            rows = np.clip(points[:, 1].astype(np.intp), 0, density.shape[0] - 1)
            scores = density[rows, cols].astype(np.float64) / peak
        else:
            scores = np.zeros(0, dtype=np.float64)
        return CountResult(name, float(density.sum(dtype=np.float64)), points, scores)

    def count(self, images: Iterable[str | Path | npt.NDArray[Any]]) -> list[CountResult]:
        """Count the objects of image files or arrays.

        Raises:
            ConfigError: An image cannot be read or has an unusable shape (named).
        """
        return [
            self.count_array(array, name=name) for name, array in read_images(images, verb="count")
        ]


def load_counter(
    model: str | int | Path | None = None,
    *,
    project: Project | None = None,
    settings: Settings | None = None,
) -> Counter:
    """Load a released counting model by version number, alias or folder path.

    Args:
        model: A version or alias of ``project``'s registry, or a released model folder;
            ``None``: the champion, else the latest version.
        project: The project whose registry holds ``model`` (not needed for a path).
        settings: Where the user cache is (default: the project's, else the environment's).

    Raises:
        ConfigError: Not a counting model folder, an unreadable card, or a corrupt graph.
        NotFoundError: No such version or alias.
    """
    return load_dense(
        Counter,
        model,
        project=project,
        settings=settings,
        task=TASK,
        kind="density",
        output=OUTPUT_NAME,
        what="counting",
        sections=("density", "input"),
    )


def count(
    images: Sequence[str | Path | npt.NDArray[Any]] | str | Path,
    model: Counter | str | int | Path | None = None,
    *,
    project: Project | None = None,
) -> tuple[dict[str, float], dict[str, npt.NDArray[np.float64]]]:
    """Count objects in images: ``(counts, locations)``, both keyed by image.

    Args:
        images: Image files, folders (their images, recursively), or arrays (keyed
            ``array 0``, ``array 1``, ...).
        model: A loaded :class:`Counter`, or what :func:`load_counter` takes.
        project: The project whose registry ``model`` names.

    Returns:
        ``counts`` maps each image to its count (the density's sum), ``locations`` to
        its ``(K, 2)`` object positions ``(x, y)`` in pixels.

    Raises:
        ConfigError: No images found, an unreadable image, or an unusable model.
        NotFoundError: No such model version or alias.
    """
    counter = model if isinstance(model, Counter) else load_counter(model, project=project)
    given: Sequence[str | Path | npt.NDArray[Any]] = (
        [images] if isinstance(images, str | Path) else images
    )
    found = expand_images(given)
    results = counter.count(found)
    return (
        {r.source: r.count for r in results},
        {r.source: r.points for r in results},
    )
