"""Train a counting model: a density-map U-Net on the point-annotated images.

A ``count`` project's annotated images (:func:`lensloop.tasks.counting.data.
load_count_images`: points, an annotation status per image, several annotators merged
into a consensus) become training pairs:

- input: the image scaled by one intensity range measured on the training images
  (:mod:`lensloop.tasks.inputs`; 8- and 16-bit alike, never per image);
- target: a density map with a Gaussian of unit mass per point (``sigma``), times
  :data:`TARGET_SCALE` so the network's outputs are of order one;
- loss weights: where the annotation can be trusted
  (:func:`~lensloop.tasks.counting.density.loss_weights`): everywhere on ``full`` and
  ``empty`` images, near annotated points and on background (not foreground by the
  image's own threshold, or marked ``background``) on ``sparse`` ones, near points only
  on ``conflict`` ones.

The U-Net (:class:`lensloop.tasks.unet.UNet`) is trained with Lightning on random crops
(``input_size``; as many per epoch as the images hold), flipped and turned by 90 degrees,
with random gain and offset; when a training image is sparsely annotated, each crop also
gets lone annotated objects pasted onto its trusted background, alone or as touching
groups (``copy_paste``, :mod:`lensloop.tasks.counting.paste`), so that the loss sees whole
objects and touching ones whose count is known. The loss is the weighted squared error of
the density, plus, when ``count_weight`` is set, that times the squared error of the
number of objects in each crop's trusted pixels; negative outputs where the target is zero
cost nothing (the released graph clamps the density at zero, so background settles below
zero instead of adding up noise).
Validation runs on whole images (tiled); early stopping keeps the epoch with the
lowest validation loss. Validation images are the annotated ``val`` split, or, when that
has none, a seeded fifth of the annotated images held out for this run.

The released ONNX graph maps scaled ``(N, C, H, W)`` images to a non-negative density
``(N, 1, H, W)`` in objects per pixel, for any height and width. The threshold of the
peak finder is chosen on the fully annotated validation images (best localisation F1);
counts are the density's sum. The card records the scaling, sigma, threshold and tiling
that :mod:`lensloop.train.counter` applies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L  # noqa: N812
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import Dataset

from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.tasks.counting.data import CountImage, load_count_images
from lensloop.tasks.counting.density import (
    density_target,
    find_peaks,
    foreground_mask,
    loss_weights,
)
from lensloop.tasks.counting.paste import Stamp, cut_stamps, paste_objects, typical_stamps
from lensloop.tasks.counting.scoring import COMPLETE, count_metrics
from lensloop.tasks.inputs import IntensityRange
from lensloop.tasks.tiling import predict_tiled
from lensloop.tasks.unet import UNet
from lensloop.train.config import TrainConfig
from lensloop.train.counter import INPUT_NAME, OUTPUT_NAME, TASK
from lensloop.train.dense import OnnxDense
from lensloop.train.loop import (
    DenseInputs,
    adamw_cosine,
    fit_on_crops,
    read_annotated,
    validation_split,
)
from lensloop.train.release import release, staging_folder, tracked_metrics

if TYPE_CHECKING:
    from lensloop.train.probe import TrainResult

__all__ = [
    "DEFAULT_THRESHOLD",
    "MODEL_FILE",
    "TARGET_SCALE",
    "DensityNet",
    "train_counting",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
#: Training targets are densities times this (a peak of sigma 2 is ~4, not ~0.04).
TARGET_SCALE = 100.0
#: Peak threshold (fraction of one object's peak) when no validation image is complete.
DEFAULT_THRESHOLD = 0.3
_THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(11))  # 0.1 .. 0.6
DEFAULT_BATCH = 8
_TILE = 512
_EXPORT_SIZE = 64
_OVERLAP = 64
_GAIN = (0.75, 1.33)
_OFFSET = 0.05
_COUNT_AREA = 1000.0  # the count term's squared error is per this many trusted pixels
_TAIL_SIGMAS = 2.0  # the foreground grows by this many sigma before background is trusted
_AUTO_PASTE = 6  # groups of objects pasted per crop when a training image is sparse
_MAX_STAMPS = 4096


class DensityNet(nn.Module):
    """Scaled images ``(N, C, H, W)`` -> density ``(N, 1, H, W)``, objects per pixel.

    Training reads :meth:`raw` (in units of :data:`TARGET_SCALE`, unclamped); the
    released graph is :meth:`forward` (clamped at zero, in objects per pixel).
    """

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet

    def raw(self, x: Tensor) -> Tensor:
        """The U-Net's output in target units (density times :data:`TARGET_SCALE`)."""
        out: Tensor = self.unet(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Density in objects per pixel, never negative."""
        return F.relu(self.unet(x)) * (1.0 / TARGET_SCALE)


def build_density_net(channels: int, config: TrainConfig) -> DensityNet:
    """A fresh :class:`DensityNet` of ``config``'s width and levels."""
    unet = UNet(
        channels, 1, base_channels=config.width, depth=config.levels, encoder="plain", norm="batch"
    )
    return DensityNet(unet)


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """Every annotated image as scaled input, target and loss weights (memory-mapped)."""

    items: list[CountImage]
    pixels: list[npt.NDArray[np.float32]]  # (C, H, W)
    targets: list[npt.NDArray[np.float32]]  # (H, W), times TARGET_SCALE
    weights: list[npt.NDArray[np.float32]]  # (H, W) in {0, 1}
    scaling: IntensityRange
    channels: int
    image_channels: list[int]
    stamps: list[Stamp]  # lone annotated training objects to paste (empty: no pasting)
    paste: int  # groups of objects pasted per training crop
    ceilings: list[npt.NDArray[np.float32] | None]  # (C,) brightest value, where pasted onto


def _prepare(
    project: Project,
    items: list[CountImage],
    train: Sequence[int],
    config: TrainConfig,
    folder: Path,
    progress: Callable[[str, int, int], None] | None,
) -> _Prepared:
    """Scale every image once, by a range measured on the training images."""
    inputs = DenseInputs.measure(project, [item.image_id for item in items], train, config.seed)
    pixels: list[npt.NDArray[np.float32]] = []
    targets: list[npt.NDArray[np.float32]] = []
    weights: list[npt.NDArray[np.float32]] = []
    ceilings: list[npt.NDArray[np.float32] | None] = []
    paste = _paste_count(items, train, config)
    training = set(train)
    stamps: list[Stamp] = []
    for k, item in enumerate(items):
        image = read_annotated(project, item.image_id)
        height, width = image.shape[:2]
        pixels.append(
            inputs.scaled(
                image,
                folder / f"x{k}.npy",
                image_id=item.image_id,
                annotated_size=(item.width, item.height),
                what="points were placed",
            )
        )
        targets.append(
            density_target(item.points, (height, width), sigma=config.sigma) * TARGET_SCALE
        )
        pasted_onto = paste > 0 and k in training
        ceilings.append(
            pixels[-1].reshape(len(pixels[-1]), -1).max(axis=1) if pasted_onto else None
        )
        cut = pasted_onto and item.status in ("full", "sparse")
        foreground = (
            foreground_mask(image, method=config.foreground)
            if item.status == "sparse" or cut
            else None
        )
        if cut and foreground is not None:
            stamps.extend(
                cut_stamps(pixels[-1], item.points, foreground, grow=_TAIL_SIGMAS * config.sigma)
            )
        trusted = loss_weights(
            item.points,
            (height, width),
            status=item.status,
            foreground=foreground if item.status == "sparse" else None,
            radius=config.trust_radius,
            margin=_TAIL_SIGMAS * config.sigma,
        )
        background = item.background_mask()
        if background is not None:
            trusted[background] = 1.0
        weights.append(trusted)
        if progress is not None:
            progress("preparing images", k + 1, len(items))
    stamps = typical_stamps(stamps)
    if len(stamps) > _MAX_STAMPS:
        chosen = np.random.default_rng(config.seed).choice(len(stamps), _MAX_STAMPS, replace=False)
        stamps = [stamps[i] for i in sorted(chosen)]
    return _Prepared(
        items,
        pixels,
        targets,
        weights,
        inputs.scaling,
        inputs.channels,
        inputs.image_channels,
        stamps,
        paste if stamps else 0,
        ceilings,
    )


def _paste_count(items: Sequence[CountImage], train: Sequence[int], config: TrainConfig) -> int:
    """Groups pasted per crop: ``copy_paste``, or 6 when a training image is sparse."""
    if config.copy_paste is not None:
        return config.copy_paste
    return _AUTO_PASTE if any(items[k].status == "sparse" for k in train) else 0


def _split(items: list[CountImage], seed: int) -> tuple[list[int], list[int], bool]:
    """``(train, val, held_out)`` positions; complete annotations are held out first."""
    return validation_split(
        [item.split for item in items],
        [item.image_id for item in items],
        seed,
        what="counting",
        how_to_annotate="Label Studio keypoints, or `lensloop count import DIR FILE`",
        prefer=lambda k: items[k].status in COMPLETE,
    )


class _Crops(Dataset[tuple[Tensor, Tensor, Tensor]]):
    """Random crops of the training images, as many as each image holds, augmented."""

    def __init__(
        self,
        prepared: _Prepared,
        rows: Sequence[int],
        crop: int,
        seed: int,
        augment: bool,
        sigma: float,
    ) -> None:
        self.prepared = prepared
        self.crop = crop
        self.augment = augment
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)
        repeats = [max(1, math.ceil(prepared.targets[k].size / (crop * crop))) for k in rows]
        self.slots = np.repeat(np.asarray(rows, dtype=np.intp), repeats)

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        k = int(self.slots[index])
        pixels, target, weight = (
            self.prepared.pixels[k],
            self.prepared.targets[k],
            self.prepared.weights[k],
        )
        channels, height, width = pixels.shape
        crop, rng = self.crop, self.rng
        ch, cw = min(crop, height), min(crop, width)
        y = int(rng.integers(0, height - ch + 1))
        x = int(rng.integers(0, width - cw + 1))
        xs = np.zeros((channels, crop, crop), dtype=np.float32)
        ts = np.zeros((1, crop, crop), dtype=np.float32)
        ws = np.zeros((1, crop, crop), dtype=np.float32)  # padding is never trusted
        xs[:, :ch, :cw] = pixels[:, y : y + ch, x : x + cw]
        ts[0, :ch, :cw] = target[y : y + ch, x : x + cw]
        ws[0, :ch, :cw] = weight[y : y + ch, x : x + cw]
        if self.augment:
            paste_objects(
                xs,
                ts,
                ws,
                self.prepared.stamps,
                groups=self.prepared.paste,
                sigma=self.sigma,
                scale=TARGET_SCALE,
                ceiling=self.prepared.ceilings[k],
                rng=rng,
            )
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            xs, ts, ws = (np.rot90(a, turns, axes=(1, 2)) for a in (xs, ts, ws))
            if flip:
                xs, ts, ws = (a[:, :, ::-1] for a in (xs, ts, ws))
            gain = float(np.exp(rng.uniform(np.log(_GAIN[0]), np.log(_GAIN[1]))))
            xs = xs * gain + float(rng.uniform(-_OFFSET, _OFFSET))
        return (
            torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(ts)),
            torch.from_numpy(np.ascontiguousarray(ws)),
        )


# --- metrics -------------------------------------------------------------------------------


def _best_threshold(
    densities: Sequence[npt.NDArray[np.float32]],
    items: Sequence[CountImage],
    config: TrainConfig,
) -> tuple[float, str]:
    """The peak threshold with the best validation F1, or the default without complete images."""
    if not any(item.status == "full" and len(item.points) for item in items):
        return DEFAULT_THRESHOLD, "default (no fully annotated validation image)"
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for threshold in _THRESHOLDS:
        scores = count_metrics(
            densities, items, sigma=config.sigma, threshold=threshold, radius=config.match_radius
        )
        if scores["f1"] is not None and scores["f1"] > best_f1 + 1e-9:
            best, best_f1 = threshold, float(scores["f1"])
    return best, "validation (best localisation F1)"


def _fingerprint(items: Sequence[CountImage]) -> str:
    """sha256 of the images, statuses and points (rounded to 0.01 px), by image id."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.image_id):
        points = np.round(np.asarray(item.points, dtype=np.float64), 2).tolist()
        digest.update(json.dumps([item.image_id, item.status, points]).encode())
    return digest.hexdigest()


# --- training ------------------------------------------------------------------------------


def _densities(
    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    prepared: _Prepared,
    rows: Sequence[int],
) -> list[npt.NDArray[np.float32]]:
    """Whole-image densities (objects per pixel) of ``rows``, tiled."""
    return [
        predict_tiled(
            np.moveaxis(prepared.pixels[k], 0, 2),
            predict,
            tile=_TILE,
            overlap=_OVERLAP,
            out_channels=1,
        )[0]
        for k in rows
    ]


def _torch_density(net: DensityNet) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            return np.asarray(net(torch.from_numpy(batch)).numpy(), dtype=np.float32)

    return run


def _lightning_module(
    net: DensityNet, prepared: _Prepared, config: TrainConfig, epochs: int
) -> Any:
    class _Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.val_metrics: dict[str, float] = {}
            self._val_losses: list[float] = []
            self._val_densities: list[npt.NDArray[np.float32]] = []
            self._val_items: list[CountImage] = []

        def training_step(self, batch: Any, _index: int) -> Tensor:
            x, target, weight = batch
            raw: Tensor = self.net.raw(x).float()
            # Where the target is zero, negative outputs cost nothing (the released graph
            # clamps them), so the network can push background below zero instead of
            # leaving positive noise; where there is density, the raw output is fitted, so
            # an output that went negative on an object still gets a gradient.
            out = torch.where(target > 0, raw, F.relu(raw))
            trusted = weight.sum(dim=(1, 2, 3))
            loss = (weight * (out - target) ** 2).sum() / trusted.sum().clamp_min(1.0)
            if config.count_weight > 0:
                error = (weight * (out - target)).sum(dim=(1, 2, 3)) / TARGET_SCALE
                per_area = (trusted / _COUNT_AREA).clamp_min(1.0)
                loss = loss + config.count_weight * (error**2 / per_area).mean()
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
            return loss  # type: ignore[no-any-return]

        def validation_step(self, batch: Any, _index: int) -> None:
            k = int(batch)
            was_training = self.net.training
            self.net.eval()
            density = _densities(_torch_density(self.net), prepared, [k])[0]
            self.net.train(was_training)
            weight = prepared.weights[k]
            error = density * TARGET_SCALE - prepared.targets[k]
            self._val_losses.append(
                float((weight * error**2).sum() / max(float(weight.sum()), 1.0))
            )
            self._val_densities.append(density)
            self._val_items.append(prepared.items[k])

        def on_validation_epoch_end(self) -> None:
            if not self._val_losses:
                return
            scores = count_metrics(
                self._val_densities,
                self._val_items,
                sigma=config.sigma,
                threshold=DEFAULT_THRESHOLD,
                radius=config.match_radius,
            )
            self.val_metrics = {"val_loss": float(np.mean(self._val_losses))}
            for name in ("mae", "mre", "f1"):
                if scores[name] is not None:
                    self.val_metrics[f"val_{name}"] = float(scores[name])
            self._val_losses.clear()
            self._val_densities.clear()
            self._val_items.clear()
            self.log("val_loss", self.val_metrics["val_loss"], prog_bar=False)

        def configure_optimizers(self) -> Any:
            return adamw_cosine(
                [],
                list(self.net.parameters()),
                lr=config.lr,
                weight_decay=config.weight_decay,
                epochs=epochs,
            )

    return _Module()


def _fit(
    project: Project,
    config: TrainConfig,
    prepared: _Prepared,
    train: Sequence[int],
    val: Sequence[int],
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> tuple[DensityNet, list[dict[str, float]], int]:
    """Train one model; stop early on the validation loss and keep the best epoch."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_density_net(prepared.channels, config).train()
        module = _lightning_module(net, prepared, config, config.epochs)
        crops = _Crops(
            prepared, train, config.input_size, config.seed + 1, config.augment, config.sigma
        )
        history, chosen = fit_on_crops(
            module,
            net,
            crops,
            val,
            epochs=config.epochs,
            patience=config.patience,
            batch_size=config.batch_size or DEFAULT_BATCH,
            seed=config.seed,
            root_dir=str(project.runs_dir),
            on_epoch=on_epoch,
        )
    return net, history, chosen


def train_counting(
    project: Project,
    config: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Train, score, export and register a counting model on the project's point annotations.

    Args:
        project: A ``count`` project with point annotations.
        config: Resolved settings (see :class:`~lensloop.train.config.TrainConfig`).
        progress: Called with ``(stage, done, total)`` while images are prepared and after
            every epoch (stage ``epoch``).

    Raises:
        ConfigError: Too few annotated images, an unreadable image, points placed on an
            image of another size, or an unreachable tracking server.
    """
    from lensloop.embed.export import export_onnx
    from lensloop.train.probe import TrainResult
    from lensloop.train.tracking import start_run

    started = time.perf_counter()
    items = load_count_images(
        project, radius=config.match_radius, consensus_only=config.consensus_only
    )
    train, val, held_out = _split(items, config.seed)
    if not train:
        raise ConfigError(
            "every annotated image is in the val or test split; annotate images in the "
            "train (or pool) split to learn from"
        )
    with (
        tempfile.TemporaryDirectory(prefix="lensloop-count-") as scratch,
        start_run(project, run_name=f"count-unet{config.levels}x{config.width}", task=TASK) as run,
    ):
        run.log_params(config.model_dump())
        prepared = _prepare(project, items, train, config, Path(scratch), progress)

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if progress is not None:
                progress("epoch", epoch, config.epochs)

        net, history, best_epoch = _fit(project, config, prepared, train, val, on_epoch)
        val_items = [items[k] for k in val]
        metrics: dict[str, Any] = {
            "validation_fingerprint": _fingerprint(val_items),
            "validation": "held out from the annotated images" if held_out else "val split",
            "n_train": len(train),
            "n_val": len(val),
            "statuses": _status_counts([items[k] for k in train]),
            "copy_paste": {"per_crop": prepared.paste, "stamps": len(prepared.stamps)},
            "history": history,
            "best_epoch": best_epoch,
        }
        with staging_folder(project) as staging:
            export_onnx(
                net,
                staging / MODEL_FILE,
                input_size=_EXPORT_SIZE,
                output_name=OUTPUT_NAME,
                channels=prepared.channels,
            )
            session = OnnxDense(staging / MODEL_FILE, output=OUTPUT_NAME, what="counting")
            densities = _densities(session, prepared, val)
            torch_densities = _densities(_torch_density(net), prepared, val[:2])
            pairs = zip(densities[:2], torch_densities, strict=True)
            metrics["onnx_max_abs_diff"] = max(float(np.max(np.abs(a - b))) for a, b in pairs)
            threshold, source = _best_threshold(densities, val_items, config)
            metrics["val"] = count_metrics(
                densities,
                val_items,
                sigma=config.sigma,
                threshold=threshold,
                radius=config.match_radius,
            )
            metrics["train_s"] = round(time.perf_counter() - started, 3)
            run.log_metrics(tracked_metrics(metrics, TASK))
            _draw_validation(staging, project, prepared, val, densities, metrics["val"], config)
            card = {
                "method": "density",
                "arch": f"unet-plain-{config.levels}x{config.width}",
                "classes": _labels(project),
                "depth": None,
                "input": {
                    "kind": "density",
                    "channels": prepared.channels,
                    "trained_channels": prepared.image_channels,
                    "scaling": prepared.scaling.as_card(),
                },
                "density": {
                    "sigma": config.sigma,
                    "threshold": threshold,
                    "threshold_source": source,
                    "match_radius": config.match_radius,
                    "tile": _TILE,
                    "overlap": _OVERLAP,
                    "count": "sum of the density map",
                    "locations": "local maxima above threshold x one object's peak height, "
                    "refined to sub-pixel",
                },
                "onnx": {"file": MODEL_FILE, "input": INPUT_NAME, "output": OUTPUT_NAME},
            }
            model = release(
                project,
                staging,
                task=TASK,
                card=card,
                metrics=metrics,
                config=config,
                training_data={
                    "fingerprint": _fingerprint([items[k] for k in train]),
                    "n_images": len(train),
                    "n_points": int(sum(len(items[k].points) for k in train)),
                    "validation_fingerprint": metrics["validation_fingerprint"],
                },
                run=run,
            )
    return TrainResult(model=model, metrics=metrics, elapsed_s=time.perf_counter() - started)


def _status_counts(items: Sequence[CountImage]) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in items:
        found[item.status] = found.get(item.status, 0) + 1
    return dict(sorted(found.items()))


def _labels(project: Project) -> list[str]:
    """The project's point labels (its schema), or ``["object"]`` without classes."""
    from lensloop.annotate.schema import project_schema

    try:
        return list(project_schema(project).labels)
    except ConfigError:
        return ["object"]


def _draw_validation(
    staging: Path,
    project: Project,
    prepared: _Prepared,
    val: Sequence[int],
    densities: Sequence[npt.NDArray[np.float32]],
    scores: dict[str, Any],
    config: TrainConfig,
) -> None:
    """Predicted-vs-true counts and overlays of the fully annotated validation images."""
    from lensloop.reports import draw_count_overlay, draw_count_scatter

    rows = scores["per_image"]
    if rows:
        draw_count_scatter(
            [r["true"] for r in rows],
            [r["predicted"] for r in rows],
            staging / "counts.png",
            title="validation: predicted vs annotated counts",
        )
    overlays = staging / "val-overlays"
    for k, density in list(zip(val, densities, strict=True))[:8]:
        item = prepared.items[k]
        peaks = find_peaks(density, sigma=config.sigma, threshold=scores["threshold"])
        overlays.mkdir(exist_ok=True)
        draw_count_overlay(
            read_annotated(project, item.image_id),
            peaks,
            overlays / f"image-{item.image_id}.png",
            true=item.points if item.status in COMPLETE else None,
            radius=config.match_radius,
            title=f"image {item.image_id} ({item.status}): {density.sum():.1f} predicted",
        )
