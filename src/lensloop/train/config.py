"""Training settings: defaults, a YAML file, command-line overrides, and what ran.

Precedence: command-line options over the ``--config`` YAML file over the defaults. The
resolved settings are saved with every released model (``config.yaml``), so passing that
file back with ``--config`` repeats the run exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lensloop.errors import ConfigError
from lensloop.select.probe import PROBE_C

__all__ = ["TrainConfig", "load_train_config", "save_train_config"]

DEFAULT_BACKBONE = "efficientnet-lite0"


class TrainConfig(BaseModel):
    """Every setting of a training run.

    A classification project trains by ``method`` (probe or finetune); a counting project
    always trains a density-map U-Net on its images (:mod:`lensloop.train.counting`), a
    segmentation project a U-Net classifying every pixel
    (:mod:`lensloop.train.segmentation`), both reading the shared settings (epochs,
    patience, batch size, learning rate, weight decay, augment, seed, input size as the
    crop side) and their own ones below.

    Attributes:
        method: ``probe`` (a classifier on the stored embeddings) or ``finetune`` (a CNN
            trained on the images themselves).
        head: ``logistic`` (multinomial logistic regression) or ``mlp`` (one hidden layer).
        backbone: Whose stored embeddings the probe reads.
        depth: Class hierarchy level to train on (``None``: the project's depth).
        c: Inverse L2 strength of the logistic head (embeddings are unit length, so the
            strong default of scikit-learn, 1, underfits; see ``lensloop.select.probe``).
        hidden: Hidden units of the ``mlp`` head.
        max_iter: Solver iterations (logistic) or epochs (mlp).
        class_weight: ``balanced`` weighs each class by the inverse of its frequency
            (the ``mlp`` head resamples instead); ``none`` weighs images equally.
        cv: Folds of stratified cross-validation over train + val, or ``None``.
        seed: Seed of every random choice.
        arch: The CNN ``finetune`` trains: ``efficientnet-lite0``, ``resnet18`` or
            ``resnet50`` (the package's own, torchvision-compatible ResNets).
        weights: Where ``finetune`` starts: ``imagenet`` (the architecture's published
            ImageNet weights, fetched once into the user cache), a checkpoint path or
            http(s) URL, ``none`` for random initialisation, or ``ssl`` for the project's
            self-supervised encoder (``lensloop embed DIR --backbone ssl --train-epochs
            N``; its own architecture replaces ``arch``).
        input_size: Side of the square ``finetune`` input, in pixels; any image is resized
            (aspect kept, padded) to it, and the released model takes any size. Counting
            and segmentation: the side of the random training crops (images are never
            resized).
        epochs: Most ``finetune`` epochs; early stopping may end sooner.
        patience: Epochs without a better validation loss before ``finetune`` stops.
        batch_size: Images (``finetune``) or crops (counting) per step; ``None``: 32
            images, 8 crops.
        lr: ``finetune`` learning rate of the new classifier layer (AdamW, cosine
            schedule); pretrained layers learn at a tenth of it.
        weight_decay: AdamW weight decay of ``finetune``.
        augment: Random crops, flips, 90-degree rotations, intensity jitter and blur
            during ``finetune`` (what a microscope image may look like; no "up"); for
            counting and segmentation, flips, 90-degree rotations and intensity gain and
            offset (counting also pastes objects, ``copy_paste``).
        sigma: Counting: width in pixels of each object's Gaussian in the density map
            (about half a typical object radius).
        width: Counting and segmentation: channels of the U-Net at full resolution
            (doubling per level).
        levels: Counting and segmentation: poolings of the plain U-Net (stride
            ``2**levels``).
        encoder: Segmentation: the U-Net's encoder, ``plain`` (trained from scratch) or
            ``resnet18`` / ``resnet50`` (started from ``weights``: ``imagenet``, a
            checkpoint path or URL, or ``none``; it then learns at a tenth of ``lr``).
        count_weight: Counting: weight of the count term of the loss (the squared error
            of the number of objects in each crop's trusted pixels, per 1000 pixels); 0
            (the default) leaves it out: at 1 it outweighed the density term, blurred the
            peaks (localisation F1 0.88 instead of 0.92) and made the counts jumpy
            (docs/benchmarks.md).
        match_radius: Counting: pixels within which a predicted point matches a true one
            (localisation metrics) and annotators' clicks mark the same object.
        trust_radius: Counting: pixels around an annotated point of a sparsely annotated
            image that the loss trusts (about 2 sigma; larger takes in unannotated
            neighbours as if they were background, and the model learns to count short).
        copy_paste: Counting: groups of lone annotated objects (1 to 3 objects, touching)
            pasted onto the trusted background of each training crop (copy-paste
            augmentation, :mod:`lensloop.tasks.counting.paste`: the loss then sees whole
            objects and touching groups that sparse annotation hides); ``None``: 6 when a
            training image is sparsely annotated, else 0. Assumes objects brighter than
            their background; 0 turns it off.
        foreground: Counting: how a sparse image's possible objects are found (loss
            ignores them away from annotated points): ``otsu``, ``li`` or ``triangle``
            thresholds of the image's own smoothed intensities.
        consensus_only: Counting: with several annotators, learn from the points a
            majority of them marked only (else from every annotator's points).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["probe", "finetune"] = "probe"
    head: Literal["logistic", "mlp"] = "logistic"
    backbone: str = DEFAULT_BACKBONE
    depth: int | None = Field(default=None, ge=1)
    c: float = Field(default=PROBE_C, gt=0)
    hidden: int = Field(default=256, ge=1)
    max_iter: int = Field(default=1000, ge=1)
    class_weight: Literal["balanced", "none"] = "balanced"
    cv: int | None = Field(default=None, ge=2)
    seed: int = Field(default=0, ge=0)
    arch: Literal["efficientnet-lite0", "resnet18", "resnet50"] = "efficientnet-lite0"
    weights: str = "imagenet"
    input_size: int = Field(default=128, ge=32, le=1024)
    epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=6, ge=1)
    batch_size: int | None = Field(default=None, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    augment: bool = True
    sigma: float = Field(default=2.0, gt=0, le=32)
    width: int = Field(default=16, ge=4, le=256)
    levels: int = Field(default=3, ge=1, le=6)
    encoder: Literal["plain", "resnet18", "resnet50"] = "plain"
    count_weight: float = Field(default=0.0, ge=0)
    match_radius: float = Field(default=5.0, gt=0)
    trust_radius: float = Field(default=4.0, gt=0)
    copy_paste: int | None = Field(default=None, ge=0, le=64)
    foreground: Literal["otsu", "li", "triangle"] = "otsu"
    consensus_only: bool = True


def load_train_config(path: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Resolve the settings: ``overrides`` (``None`` values ignored) over ``path`` over defaults.

    Raises:
        ConfigError: The file cannot be read or parsed, or a setting is unknown or invalid
            (the message names each one).
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read training config {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"training config {path} is not UTF-8 text: {exc.reason}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"training config {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"training config {path} must be a mapping of settings (key: value), not a "
                f"{type(loaded).__name__}"
            )
        bad = [key for key in (loaded or {}) if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"training config {path}: setting names must be text, not {bad[0]!r}")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid training settings{where}: {problems}") from None


def save_train_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved settings as YAML (``--config`` reads it back)."""
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(), sort_keys=True), encoding="utf-8")
