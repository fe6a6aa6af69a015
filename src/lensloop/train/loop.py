"""What the Lightning trainers share: a quiet Lightning, the precision, epoch records.

:func:`epoch_callbacks` keeps the history of a run (and the best epoch's weights) for
:mod:`lensloop.train.finetune`, :mod:`lensloop.train.counting` and
:mod:`lensloop.train.segmentation`; :func:`quiet_lightning` keeps Lightning's banners and
its advice for large data sets out of the output. The dense trainers (counting,
segmentation) also share how they read an annotated image (:func:`read_annotated`),
choose their validation images (:func:`validation_split`) and feed whole validation
images (:class:`WholeImages`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning as L  # noqa: N812
import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lensloop.errors import ConfigError, LensloopError
from lensloop.tasks.inputs import IntensityRange, model_channels, scale_image, to_channels

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = [
    "PRETRAINED_LR_FACTOR",
    "DenseInputs",
    "WholeImages",
    "adamw_cosine",
    "epoch_callbacks",
    "fit_keeping_best",
    "fit_on_crops",
    "hash_order",
    "precision",
    "quiet_lightning",
    "read_annotated",
    "validation_split",
]

#: Pretrained layers learn at this share of the learning rate (new layers at all of it).
PRETRAINED_LR_FACTOR = 0.1

#: Share of the annotated images held out for validation when there is no val split.
VAL_SHARE = 0.2

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def epoch_callbacks(
    history: list[dict[str, float]],
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    keep_best: bool,
    network: nn.Module,
) -> tuple[list[Any], dict[str, Any]]:
    """A callback recording each epoch's losses, metrics and learning rate in ``history``.

    The module's ``val_metrics`` (set when its validation epoch ends) join each row. With
    ``keep_best``, the returned dict holds the ``epoch`` and a copy of ``network``'s
    ``state`` at the lowest ``val_loss``. ``on_epoch(epoch, row)`` is called after each.
    """
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": None}

    class _Record(L.Callback):
        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            epoch = int(trainer.current_epoch) + 1
            row: dict[str, float] = {"epoch": epoch}
            loss = trainer.callback_metrics.get("train_loss")
            if loss is not None:
                row["train_loss"] = float(loss)
            row.update(module.val_metrics)
            row["lr"] = float(trainer.optimizers[0].param_groups[-1]["lr"])
            history.append(row)
            if keep_best and row.get("val_loss", math.inf) < best["loss"]:
                best.update(
                    loss=row["val_loss"],
                    epoch=epoch,
                    state=copy.deepcopy(network.state_dict()),
                )
            if on_epoch is not None:
                on_epoch(epoch, row)

    return [_Record()], best


def precision() -> Literal["32-true", "bf16-mixed", "16-mixed"]:
    """Mixed precision on a GPU (bf16 where it has it), else full float32."""
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's banner lines and its advice for large data sets out of the output."""
    levels = {}
    for name in _LIGHTNING_LOGGERS:
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*number of training batches.*")
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def fit_keeping_best(
    module: Any,
    network: nn.Module,
    *,
    epochs: int,
    callbacks: list[Any],
    best: dict[str, Any],
    history: list[dict[str, float]],
    train_loader: Any,
    val_loader: Any,
    root_dir: str,
) -> int:
    """Fit ``module`` quietly and keep the best epoch's weights in ``network``.

    Afterwards ``network`` is on the CPU in eval mode; the return value is the epoch kept
    (the last one run when none was). ``callbacks``, ``best`` and ``history`` come from
    :func:`epoch_callbacks`.
    """
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="auto",
            devices=1,
            precision=precision(),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
            default_root_dir=root_dir,
        )
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if best["state"] is not None:
        network.load_state_dict(best["state"])
    chosen = int(best["epoch"]) if best["state"] is not None else len(history)
    network.cpu().eval()
    return chosen


# --- dense trainers ------------------------------------------------------------------------


def read_annotated(project: Project, image_id: int) -> npt.NDArray[Any]:
    """Read an annotated image for training.

    Raises:
        ConfigError: It cannot be read (the message says how to find such images).
    """
    try:
        return project.read_image(image_id)
    except (LensloopError, OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read annotated image {image_id} for training: {exc}; fix or remove it "
            "(`lensloop status DIR` lists unreadable images)"
        ) from exc


def hash_order(image_ids: Sequence[int], seed: int) -> list[int]:
    """Positions of ``image_ids`` in a seeded order that does not depend on their order."""

    def key(position: int) -> str:
        text = f"{seed}:{image_ids[position]}".encode()
        return hashlib.sha256(text).hexdigest()

    return sorted(range(len(image_ids)), key=key)


def validation_split(
    splits: Sequence[str | None],
    image_ids: Sequence[int],
    seed: int,
    *,
    what: str,
    how_to_annotate: str,
    prefer: Callable[[int], bool] | None = None,
) -> tuple[list[int], list[int], bool]:
    """``(train positions, val positions, held_out)``: the val split or a held-out fifth.

    Images in ``test`` are never used. With annotated images in ``val``, those validate;
    otherwise a seeded fifth of the rest is held out for this run, positions for which
    ``prefer`` is true first (e.g. completely annotated images, which can score a model).

    Raises:
        ConfigError: Fewer than two annotated images outside ``test``.
    """
    usable = [k for k, split in enumerate(splits) if split != "test"]
    val = [k for k in usable if splits[k] == "val"]
    if val:
        return [k for k in usable if splits[k] != "val"], val, False
    if len(usable) < 2:
        raise ConfigError(
            f"{what} needs at least two annotated images outside the test split (one to "
            f"learn from, one to validate on); {len(usable)} found. Annotate more images "
            f"({how_to_annotate})"
        )
    order = hash_order([image_ids[k] for k in usable], seed)
    if prefer is not None:
        order.sort(key=lambda p: not prefer(usable[p]))
    n_val = max(1, round(VAL_SHARE * len(usable)))
    held = sorted(usable[p] for p in order[:n_val])
    return [k for k in usable if k not in set(held)], held, True


class WholeImages(Dataset[int]):
    """Positions of the validation images (read whole, one at a time)."""

    def __init__(self, rows: Sequence[int]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> int:
        return self.rows[index]


@dataclass(frozen=True)
class DenseInputs:
    """How a dense model's training images are scaled: one range, measured once.

    Attributes:
        scaling: The intensity range measured on the training images.
        channels: Channels the model takes (1 if every image is grey, else 3).
        image_channels: The channel counts the training images had.
    """

    scaling: IntensityRange
    channels: int
    image_channels: list[int]

    @classmethod
    def measure(
        cls, project: Project, image_ids: Sequence[int], train: Sequence[int], seed: int
    ) -> DenseInputs:
        """Channels from the catalog's images; the range from those at positions ``train``."""
        from sqlalchemy import select

        from lensloop.catalog.images import in_chunks
        from lensloop.catalog.models import Image

        with project.catalog.reader() as session:
            counts: set[int] = set()
            for chunk in in_chunks(list(image_ids)):
                counts.update(session.scalars(select(Image.channels).where(Image.id.in_(chunk))))
        channels = model_channels(counts)
        scaling = IntensityRange.measure(
            (to_channels(read_annotated(project, image_ids[k]), channels) for k in train),
            channels,
            seed=seed,
        )
        return cls(scaling, channels, sorted(counts))

    def scaled(
        self,
        image: npt.NDArray[Any],
        path: Path,
        *,
        image_id: int,
        annotated_size: tuple[int, int],
        what: str,
    ) -> npt.NDArray[np.float32]:
        """The image scaled into a ``(C, H, W)`` float32 memory-mapped file at ``path``.

        Raises:
            ConfigError: The image's ``(width, height)`` is not the one its ``what`` (points,
                regions) was annotated on.
        """
        height, width = image.shape[:2]
        if (width, height) != annotated_size:
            raise ConfigError(
                f"image {image_id} is {width} x {height} pixels but its {what} on a "
                f"{annotated_size[0]} x {annotated_size[1]} image; annotate it again"
            )
        array: npt.NDArray[np.float32] = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(self.channels, height, width)
        )
        array[:] = np.moveaxis(scale_image(image, self.scaling, name=f"image {image_id}"), 2, 0)
        return array


def fit_on_crops(
    module: Any,
    net: nn.Module,
    crops: Dataset[Any],
    val: Sequence[int],
    *,
    epochs: int,
    patience: int,
    batch_size: int,
    seed: int,
    root_dir: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> tuple[list[dict[str, float]], int]:
    """A dense trainer's Lightning run: shuffled crops, whole validation images.

    Early stopping on ``val_loss`` (``patience`` epochs); the best epoch's weights are
    loaded back into ``net``. Returns ``(history, best epoch)``.
    """
    history: list[dict[str, float]] = []
    callbacks, best = epoch_callbacks(history, on_epoch, keep_best=True, network=net)
    callbacks.append(
        L.pytorch.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=patience)
    )
    size = len(crops)  # type: ignore[arg-type]
    train_loader = DataLoader(
        crops,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=0,
        drop_last=size > batch_size,
    )
    val_loader = DataLoader(WholeImages(val), batch_size=None, shuffle=False, num_workers=0)
    chosen = fit_keeping_best(
        module,
        net,
        epochs=epochs,
        callbacks=callbacks,
        best=best,
        history=history,
        train_loader=train_loader,
        val_loader=val_loader,
        root_dir=root_dir,
    )
    return history, chosen


def adamw_cosine(
    pretrained: Sequence[nn.Parameter],
    new: Sequence[nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    epochs: int,
) -> dict[str, Any]:
    """Every trainer's optimiser: AdamW with a cosine schedule over ``epochs``.

    ``pretrained`` parameters learn at :data:`PRETRAINED_LR_FACTOR` times ``lr``, ``new``
    ones at ``lr``. Returns what a Lightning module's ``configure_optimizers`` returns.
    """
    groups = [
        {"params": list(pretrained), "lr": lr * PRETRAINED_LR_FACTOR},
        {"params": list(new), "lr": lr},
    ]
    optimizer = torch.optim.AdamW(
        [group for group in groups if group["params"]], weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return {"optimizer": optimizer, "lr_scheduler": schedule}
