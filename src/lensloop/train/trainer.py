"""One entry point for every training method: ``train_model(project, config)``.

``probe`` needs only scikit-learn and ONNX; ``finetune`` needs torch and Lightning (the
``train`` extra), imported only when it runs.
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
    """Train, score, export and register a model by ``config.method``.

    Args:
        project: The project.
        config: Resolved settings.
        progress: ``(stage, done, total)`` callback of the ``finetune`` method.

    Raises:
        ConfigError: ``finetune`` without torch and Lightning installed, or any error of
            the method (see :func:`~lensloop.train.probe.train_probe` and
            :func:`~lensloop.train.finetune.train_finetune`).
    """
    if config.method == "probe":
        return train_probe(project, config)
    try:
        from lensloop.train.finetune import train_finetune
    except ImportError as exc:
        raise ConfigError(
            f"--method finetune needs torch and Lightning ({exc.name} is not installed); "
            "install them with: pip install 'lensloop[train]'"
        ) from None
    return train_finetune(project, config, progress=progress)
