"""Train a project's self-supervised encoder on its own images (``--backbone ssl``).

The encoder lives at ``DIR/models/ssl/encoder.onnx`` with its sidecar
``encoder.onnx.json`` and its torch weights ``encoder.pt``; the ``ssl`` backbone reads it
from there, and ``lensloop train --method finetune --weights ssl`` starts from it.
Training again never silently replaces an encoder whose vectors may be stored: the
previous one is kept under ``models/ssl/previous/<version>.onnx`` (with its sidecar and
torch weights; its vectors stay in their own embedding set, under their own version).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sqlalchemy import select

from lensloop.catalog.models import Image
from lensloop.embed.registry import SSL_ENCODER
from lensloop.errors import ConfigError, ImageError
from lensloop.project import Project

__all__ = ["train_project_encoder"]

_log = logging.getLogger(__name__)


def _archive(encoder: Path) -> None:
    sidecar = encoder.with_name(encoder.name + ".json")
    if not encoder.is_file():
        return
    try:
        version = str(json.loads(sidecar.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        version = "unknown"
    previous = encoder.parent / "previous"
    previous.mkdir(exist_ok=True)
    target = previous / f"{version}.onnx"
    shutil.move(str(encoder), target)
    if sidecar.is_file():
        shutil.move(str(sidecar), target.with_name(target.name + ".json"))
    if encoder.with_suffix(".pt").is_file():
        shutil.move(str(encoder.with_suffix(".pt")), target.with_suffix(".pt"))
    _log.info("previous ssl encoder kept at %s", target)


def train_project_encoder(
    project: Project,
    *,
    epochs: int,
    seed: int = 0,
    input_size: int | None = None,
    arch: str = "small",
    max_images: int = 20_000,
) -> Path:
    """Train the project's SSL encoder (SimCLR) on its images and install it.

    Args:
        project: The open project.
        epochs: Passes over the images.
        seed: Seed of sampling, initialisation and augmentations.
        input_size: Side of the training views (default 96).
        arch: ``small``, ``resnet18`` or ``resnet50``.
        max_images: Train on a seeded sample of at most this many images.

    Returns:
        The installed encoder's path.

    Raises:
        ConfigError: Fewer than 2 readable images, or bad training options.
    """
    from lensloop.embed.ssl import train_ssl

    with project.catalog.reader() as session:
        ids = list(session.scalars(select(Image.id).order_by(Image.id)))
    if len(ids) > max_images:
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=max_images, replace=False).tolist())
    if len(ids) < 2:
        raise ConfigError(f"SSL training needs at least 2 images; the project has {len(ids)}")

    def images() -> Iterator[np.ndarray]:
        for image_id in ids:
            try:
                yield project.read_image(image_id)
            except (ImageError, OSError) as exc:
                _log.warning("skipping image %d in SSL training: %s", image_id, exc)

    final = project.root / SSL_ENCODER
    staging = final.with_name("encoder.training.onnx")
    train_ssl(
        images,
        out_path=staging,
        arch=arch,  # type: ignore[arg-type]
        input_size=input_size or 96,
        epochs=epochs,
        seed=seed,
    )
    _archive(final)
    staging.replace(final)
    staging.with_name(staging.name + ".json").replace(final.with_name(final.name + ".json"))
    staging.with_suffix(".pt").replace(final.with_suffix(".pt"))
    return final
