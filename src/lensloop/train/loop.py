"""What the Lightning trainers share: a quiet Lightning, the precision, epoch records.

:func:`epoch_callbacks` keeps the history of a run (and the best epoch's weights) for
:mod:`lensloop.train.finetune` and :mod:`lensloop.train.counting`; :func:`quiet_lightning`
keeps Lightning's banners and its advice for large data sets out of the output.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import lightning as L  # noqa: N812
import torch
from torch import nn

__all__ = ["epoch_callbacks", "fit_keeping_best", "precision", "quiet_lightning"]

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
