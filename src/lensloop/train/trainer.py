"""One entry point for every task and training method: ``train_model(project, config)``.

A classification project trains by ``config.method``: ``probe`` needs only scikit-learn
and ONNX; ``finetune`` needs torch and Lightning (the ``train`` extra), imported only when
it runs. A counting project trains a density-map U-Net (:mod:`lensloop.train.counting`,
also torch and Lightning), a segmentation project a U-Net classifying every pixel
(:mod:`lensloop.train.segmentation`, the same).
"""

from __future__ import annotations

from collections.abc import Callable

from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.train.config import TrainConfig
from lensloop.train.probe import TrainResult, train_probe

__all__ = ["train_model"]


def train_model(
    project: Project,
    config: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Train, score, export and register a model for the project's task.

    Args:
        project: The project.
        config: Resolved settings.
        progress: ``(stage, done, total)`` callback of the ``finetune`` method.

    Raises:
        ConfigError: ``finetune``, counting or segmentation without torch and Lightning
            installed, or any error of the trainer (see
            :func:`~lensloop.train.probe.train_probe`,
            :func:`~lensloop.train.finetune.train_finetune`,
            :func:`~lensloop.train.counting.train_counting` and
            :func:`~lensloop.train.segmentation.train_segmentation`).
    """
    if project.task == "count":
        try:
            from lensloop.train.counting import train_counting
        except ImportError as exc:
            raise ConfigError(_needs_torch("counting", exc)) from None
        return train_counting(project, config, progress=progress)
    if project.task == "segment":
        try:
            from lensloop.train.segmentation import train_segmentation
        except ImportError as exc:
            raise ConfigError(_needs_torch("segmentation", exc)) from None
        return train_segmentation(project, config, progress=progress)
    if config.method == "probe":
        return train_probe(project, config)
    try:
        from lensloop.train.finetune import train_finetune
    except ImportError as exc:
        raise ConfigError(_needs_torch("--method finetune", exc)) from None
    return train_finetune(project, config, progress=progress)


def _needs_torch(what: str, exc: ImportError) -> str:
    return (
        f"{what} needs torch and Lightning ({exc.name} is not installed); "
        "install them with: pip install 'lensloop[train]'"
    )
