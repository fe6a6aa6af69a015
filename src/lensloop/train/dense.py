"""What the dense-prediction tasks (counting, segmentation) share at prediction time.

A dense release is an ONNX graph from scaled ``(N, C, H, W)`` images (input ``input``)
to a per-pixel output ``(N, K, H, W)`` of any height and width, and a card whose
``input`` says how to scale an image (:mod:`lensloop.tasks.inputs`). This module opens
such a graph (:class:`OnnxDense`), loads a release of a given task by version, alias or
folder (:func:`load_dense`), and turns what a user passes (files, folders, arrays) into
named image arrays (:func:`expand_images`, :func:`read_images`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError, NotFoundError
from lensloop.project import Project
from lensloop.settings import Settings
from lensloop.tasks.inputs import IntensityRange
from lensloop.train.heads import open_onnx_session
from lensloop.train.inference import cached_model_folder, locate_model, read_card

__all__ = [
    "INPUT_NAME",
    "DenseRelease",
    "OnnxDense",
    "expand_images",
    "load_dense",
    "read_file",
    "read_images",
]

#: Name of every dense graph's input.
INPUT_NAME = "input"


class OnnxDense:
    """A released dense graph opened once: ``(N, C, H, W)`` -> ``(N, K, H, W)``.

    Args:
        path: The ``.onnx`` file.
        output: The output to read (``density``, ``probabilities``).
        what: What the model is, for messages (``counting``, ``segmentation``).

    Raises:
        ConfigError: On opening, a corrupt file or a graph without that input and output;
            on calling, input of the wrong shape.
    """

    def __init__(self, path: Path, *, output: str, what: str) -> None:
        self.path = path
        self.output = output
        self._session = open_onnx_session(path)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            raise ConfigError(
                f"{path} is not a lensloop {what} model (inputs "
                f"{[(i.name, i.shape) for i in inputs]}, outputs {outputs}); pass a model "
                f"released by `lensloop train` on a {what} project"
            )
        if output not in outputs:
            raise ConfigError(f"{path} has no {output!r} output; it is not a {what} model")
        channels = inputs[0].shape[1]
        self.channels = int(channels) if isinstance(channels, int) else None

    def __call__(self, batch: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N, K, H, W)`` output of a float32 ``(N, C, H, W)`` batch."""
        data = np.ascontiguousarray(batch, dtype=np.float32)
        if data.ndim != 4 or (self.channels is not None and data.shape[1] != self.channels):
            raise ConfigError(
                f"{self.path} takes (N, {self.channels}, H, W) images but received shape "
                f"{data.shape}"
            )
        (out,) = self._session.run([self.output], {INPUT_NAME: data})
        return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class DenseRelease:
    """A loaded dense release (the base of each task's loaded model).

    Attributes:
        folder: The (cached) model folder.
        card: The model card.
        version: Its version in the project registry (``None`` when loaded from a path).
        runner: The ONNX session.
    """

    folder: Path
    card: dict[str, Any]
    version: int | None
    runner: OnnxDense = field(repr=False, compare=False)


_Release = TypeVar("_Release", bound=DenseRelease)


def load_dense(
    cls: type[_Release],
    model: str | int | Path | None,
    *,
    project: Project | None,
    settings: Settings | None,
    task: str,
    kind: str,
    output: str,
    what: str,
    sections: Sequence[str] = ("input",),
) -> _Release:
    """Load a dense release of ``task`` by version, alias or folder, as a ``cls``.

    Args:
        cls: The task's loaded-model class (a :class:`DenseRelease`).
        model: A version or alias of ``project``'s registry, or a released model folder;
            ``None``: the champion, else the latest version.
        project: The project whose registry holds ``model`` (not needed for a path).
        settings: Where the user cache is (default: the project's, else the environment's).
        task: The card's task (``count``, ``segment``).
        kind: The card's input kind (``density``, ``segment``).
        output: The graph's output name.
        what: What the model is, for messages.
        sections: Card sections that must be present.

    Raises:
        ConfigError: A model of another task, an edited card, or a corrupt graph.
        NotFoundError: No such version or alias.
    """
    settings = settings or (project.settings if project is not None else Settings())
    folder, version = locate_model(model, project)
    card = read_card(folder)
    if card["task"] != task or card["input"].get("kind") != kind:
        raise ConfigError(
            f"the model in {folder} is a {card['task']!r} model; {what} needs a model "
            f"trained on a {task} project"
        )
    for key in sections:
        if not isinstance(card.get(key), dict):
            raise ConfigError(f"the model card in {folder} lacks {key!r}; it was edited by hand")
    cached = cached_model_folder(folder, card, settings.cache_dir)
    runner = OnnxDense(cached / str(card["onnx"]["file"]), output=output, what=what)
    channels = len(IntensityRange.from_card(card["input"]).low)
    if runner.channels is not None and runner.channels != channels:
        raise ConfigError(
            f"the model in {folder} takes {runner.channels} channels but its card scales "
            f"{channels}; the folder was changed by hand"
        )
    return cls(folder=cached, card=card, version=version, runner=runner)


def read_file(path: str | Path, *, verb: str) -> npt.NDArray[Any]:
    """Read an image file in its native dtype.

    Raises:
        ConfigError: It cannot be read (``cannot VERB PATH: why``).
    """
    from lensloop.imaging import read_image

    try:
        return read_image(Path(path))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot {verb} {path}: {exc}") from exc


def read_images(
    images: Iterable[str | Path | npt.NDArray[Any]], *, verb: str
) -> Iterator[tuple[str, npt.NDArray[Any]]]:
    """``(name, array)`` for image files (read) and arrays (named ``array K``).

    Raises:
        ConfigError: A file cannot be read (``cannot VERB NAME: why``).
    """
    for position, image in enumerate(images):
        if isinstance(image, np.ndarray):
            yield f"array {position}", image
        else:
            yield str(image), read_file(image, verb=verb)


def expand_images(
    items: Sequence[str | Path | npt.NDArray[Any]],
) -> list[str | Path | npt.NDArray[Any]]:
    """Files as given, folders as their image files (sorted, recursive), arrays as given.

    Raises:
        NotFoundError: A path does not exist, or a folder holds no image.
    """
    from lensloop.sources import IMAGE_SUFFIXES

    found: list[str | Path | npt.NDArray[Any]] = []
    for item in items:
        if isinstance(item, np.ndarray):
            found.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise NotFoundError(f"{path} holds no image files")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise NotFoundError(f"{path} does not exist")
    return found
