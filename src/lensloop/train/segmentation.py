"""Train a segmentation model: a U-Net on the polygon- and mask-annotated images.

A ``segment`` project's annotated images (:func:`lensloop.tasks.segment.data.
load_segment_images`) become training pairs:

- input: the image scaled by one intensity range measured on the training images
  (:mod:`lensloop.tasks.inputs`; 8- and 16-bit, grey and colour alike);
- target: the label map of its regions (:mod:`lensloop.annotate.labelmap`), drawn in
  the project's class order (``[segment] draw_order``, containers first); pixels no region
  covers are background or void (``[segment] unlabelled``); void pixels cost nothing.

The U-Net (:class:`lensloop.tasks.unet.UNet`, the plain encoder or a ResNet one started
from ``weights``) is trained with Lightning on random crops (``input_size``; as many per
epoch as the images hold), flipped and turned by 90 degrees, with random gain and offset;
the loss is the cross-entropy of the labelled pixels. Validation runs on whole images
(tiled); early stopping keeps the epoch with the lowest validation loss. Validation images
are the annotated ``val`` split, or a seeded fifth of the annotated images held out.

The released ONNX graph maps scaled ``(N, C, H, W)`` images to class probabilities
``(N, K + 1, H, W)`` for any height and width (:mod:`lensloop.train.segmenter` runs it
tile by tile). The model is scored on the validation images by per-class IoU, mean IoU
and pixel accuracy (void excluded) and by how well the region measurements of its
predicted masks (area per class, fragment count) match those of the annotated ones.
"""

from __future__ import annotations

import hashlib
import json
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

from lensloop.annotate.labelmap import VOID
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.tasks.inputs import IntensityRange
from lensloop.tasks.segment.compare import score_label_maps
from lensloop.tasks.segment.data import SegmentImage, load_segment_images, segment_classes
from lensloop.tasks.segment.scoring import confusion_matrix, segment_scores
from lensloop.tasks.tiling import predict_tiled
from lensloop.tasks.unet import UNet
from lensloop.train.config import TrainConfig
from lensloop.train.dense import INPUT_NAME, OnnxDense
from lensloop.train.loop import (
    DenseInputs,
    adamw_cosine,
    fit_on_crops,
    read_annotated,
    validation_split,
)
from lensloop.train.release import release, staging_folder, tracked_metrics
from lensloop.train.segmenter import KIND, OUTPUT_NAME, TASK

if TYPE_CHECKING:
    from lensloop.train.probe import TrainResult

__all__ = ["MODEL_FILE", "SegmentNet", "build_segment_net", "train_segmentation"]

MODEL_FILE = "model.onnx"
DEFAULT_BATCH = 8
_TILE = 512
_OVERLAP = 64
_EXPORT_SIZE = 64
_GAIN = (0.75, 1.33)
_OFFSET = 0.05


class SegmentNet(nn.Module):
    """Scaled images ``(N, C, H, W)`` -> class probabilities ``(N, K + 1, H, W)``.

    Training reads :meth:`logits`; the released graph is :meth:`forward` (softmax). A
    ResNet encoder's ImageNet weights expect normalised inputs: ``mean``/``std`` (per
    channel, applied to the scaled image) are part of the graph.
    """

    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        unet: UNet,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.unet = unet
        channels = unet.in_channels
        shift = torch.tensor(mean if mean is not None else [0.0] * channels)
        scale = torch.tensor(std if std is not None else [1.0] * channels)
        self.register_buffer("shift", shift.reshape(1, channels, 1, 1).float())
        self.register_buffer("scale", scale.reshape(1, channels, 1, 1).float())

    def logits(self, x: Tensor) -> Tensor:
        """Per-pixel class logits."""
        out: Tensor = self.unet((x - self.shift) / self.scale)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel class probabilities."""
        return torch.softmax(self.logits(x), dim=1)


def build_segment_net(
    channels: int, n_labels: int, config: TrainConfig, *, cache_dir: Path
) -> tuple[SegmentNet, bool]:
    """A fresh :class:`SegmentNet` and whether its encoder is pretrained.

    The plain encoder (``config.encoder == "plain"``) starts from random weights; a ResNet
    encoder from ``config.weights`` (``imagenet``, a checkpoint path or URL, or ``none``).

    Raises:
        ConfigError: The weights cannot be fetched or do not fit the encoder.
    """
    if config.encoder == "plain":
        unet = UNet(
            channels,
            n_labels,
            base_channels=config.width,
            depth=config.levels,
            encoder="plain",
            norm="batch",
        )
        return SegmentNet(unet), False
    from lensloop.train.finetune import build_classifier

    weights = config.weights
    if weights.strip().lower() == "ssl":
        raise ConfigError(
            "--weights ssl is for classifiers; a segmentation encoder starts from "
            "imagenet, a checkpoint path or URL, or none"
        )
    from lensloop.embed.resnet import ResNet

    resnet, pretrained, mean, std = build_classifier(
        config.encoder, 1, weights, cache_dir=cache_dir
    )
    if not isinstance(resnet, ResNet):  # pragma: no cover - build_classifier's contract
        raise TypeError(f"expected a ResNet for {config.encoder}, got {type(resnet).__name__}")
    unet = UNet(channels, n_labels, base_channels=config.width, encoder=resnet, norm="batch")
    if not pretrained:
        return SegmentNet(unet), False
    if channels == 1:
        mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    return SegmentNet(unet, mean, std), True


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """Every annotated image as scaled input and label map (memory-mapped)."""

    items: list[SegmentImage]
    classes: list[str]
    pixels: list[npt.NDArray[np.float32]]  # (C, H, W)
    labels: list[npt.NDArray[np.uint8]]  # (H, W)
    scaling: IntensityRange
    channels: int
    image_channels: list[int]


def _prepare(
    project: Project,
    items: list[SegmentImage],
    classes: list[str],
    train: Sequence[int],
    config: TrainConfig,
    folder: Path,
    progress: Callable[[str, int, int], None] | None,
) -> _Prepared:
    """Scale every image once (a range measured on the training images); draw its labels."""
    settings = project.config.segment
    inputs = DenseInputs.measure(project, [item.image_id for item in items], train, config.seed)
    pixels: list[npt.NDArray[np.float32]] = []
    labels: list[npt.NDArray[np.uint8]] = []
    for k, item in enumerate(items):
        image = read_annotated(project, item.image_id)
        height, width = image.shape[:2]
        pixels.append(
            inputs.scaled(
                image,
                folder / f"x{k}.npy",
                image_id=item.image_id,
                annotated_size=(item.width, item.height),
                what="regions were drawn",
            )
        )
        label = np.lib.format.open_memmap(
            folder / f"y{k}.npy", mode="w+", dtype=np.uint8, shape=(height, width)
        )
        label[:] = item.label_map(
            classes, draw_order=settings.draw_order, unlabelled=settings.unlabelled
        )
        labels.append(label)
        if progress is not None:
            progress("preparing images", k + 1, len(items))
    return _Prepared(
        items, classes, pixels, labels, inputs.scaling, inputs.channels, inputs.image_channels
    )


class _Crops(Dataset[tuple[Tensor, Tensor]]):
    """Random crops of the training images, as many as each image holds, augmented."""

    def __init__(
        self, prepared: _Prepared, rows: Sequence[int], crop: int, seed: int, augment: bool
    ) -> None:
        self.prepared = prepared
        self.crop = crop
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        repeats = [max(1, math.ceil(prepared.labels[k].size / (crop * crop))) for k in rows]
        self.slots = np.repeat(np.asarray(rows, dtype=np.intp), repeats)

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        k = int(self.slots[index])
        pixels, label = self.prepared.pixels[k], self.prepared.labels[k]
        channels, height, width = pixels.shape
        crop, rng = self.crop, self.rng
        # The crop is centred on a random pixel (and may reach past the image's edge), so
        # every pixel is about as likely to be seen; crops kept inside the image would
        # rarely show the pixels near its edges, such as the table around a core box.
        y = int(rng.integers(height)) - crop // 2
        x = int(rng.integers(width)) - crop // 2
        y0, y1, x0, x1 = max(y, 0), min(y + crop, height), max(x, 0), min(x + crop, width)
        xs = np.zeros((channels, crop, crop), dtype=np.float32)
        ys = np.full((1, crop, crop), VOID, dtype=np.uint8)  # padding is never scored
        xs[:, y0 - y : y1 - y, x0 - x : x1 - x] = pixels[:, y0:y1, x0:x1]
        ys[0, y0 - y : y1 - y, x0 - x : x1 - x] = label[y0:y1, x0:x1]
        if self.augment:
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            xs, ys = np.rot90(xs, turns, axes=(1, 2)), np.rot90(ys, turns, axes=(1, 2))
            if flip:
                xs, ys = xs[:, :, ::-1], ys[:, :, ::-1]
            gain = float(np.exp(rng.uniform(np.log(_GAIN[0]), np.log(_GAIN[1]))))
            xs = xs * gain + float(rng.uniform(-_OFFSET, _OFFSET))
        return (
            torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(ys[0]).astype(np.int64)),
        )


# --- scoring -------------------------------------------------------------------------------


def _probabilities(
    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    prepared: _Prepared,
    k: int,
) -> npt.NDArray[np.float32]:
    """Whole-image class probabilities ``(K + 1, H, W)`` of image ``k``, tiled."""
    return predict_tiled(
        np.moveaxis(prepared.pixels[k], 0, 2),
        predict,
        tile=_TILE,
        overlap=_OVERLAP,
        out_channels=len(prepared.classes) + 1,
    )


def _torch_probabilities(
    net: SegmentNet,
) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            return np.asarray(net(torch.from_numpy(batch)).numpy(), dtype=np.float32)

    return run


def _cross_entropy(probabilities: npt.NDArray[np.float32], label: npt.NDArray[np.uint8]) -> float:
    """Mean negative log probability of the labelled (non-void) pixels' labels."""
    keep = label != VOID
    if not keep.any():
        return 0.0
    chosen = np.take_along_axis(
        probabilities, np.where(keep, label, 0).astype(np.intp)[None], axis=0
    )[0]
    return float(-np.log(np.clip(chosen[keep], 1e-7, 1.0)).mean())


def _fingerprint(items: Sequence[SegmentImage]) -> str:
    """sha256 of the images and their regions (polygons rounded to 0.01 px), by image id."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.image_id):
        digest.update(json.dumps([item.image_id, item.annotator]).encode())
        for region in item.regions:
            digest.update(region.label.encode())
            if region.polygon is not None:
                digest.update(np.round(region.polygon, 2).tobytes())
            elif region.mask is not None:
                digest.update(np.packbits(region.mask).tobytes())
    return digest.hexdigest()


# --- training ------------------------------------------------------------------------------


def _lightning_module(
    net: SegmentNet, prepared: _Prepared, config: TrainConfig, epochs: int, pretrained: bool
) -> Any:
    class _Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.val_metrics: dict[str, float] = {}
            self._val_losses: list[float] = []
            self._confusion = np.zeros(
                (len(prepared.classes) + 1, len(prepared.classes) + 1), dtype=np.int64
            )

        def training_step(self, batch: Any, _index: int) -> Tensor:
            x, y = batch
            logits = self.net.logits(x).float()
            if bool((y != VOID).any()):
                loss = F.cross_entropy(logits, y, ignore_index=VOID)
            else:
                loss = logits.sum() * 0.0
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
            return loss

        def validation_step(self, batch: Any, _index: int) -> None:
            k = int(batch)
            was_training = self.net.training
            self.net.eval()
            probabilities = _probabilities(_torch_probabilities(self.net), prepared, k)
            self.net.train(was_training)
            label = prepared.labels[k]
            self._val_losses.append(_cross_entropy(probabilities, label))
            predicted = np.argmax(probabilities, axis=0).astype(np.uint8)
            self._confusion += confusion_matrix(predicted, label, len(prepared.classes) + 1)

        def on_validation_epoch_end(self) -> None:
            if not self._val_losses:
                return
            scores = segment_scores(self._confusion, prepared.classes)
            self.val_metrics = {"val_loss": float(np.mean(self._val_losses))}
            for name in ("mean_iou", "pixel_accuracy"):
                if scores.get(name) is not None:
                    self.val_metrics[f"val_{name}"] = float(scores[name])
            self._val_losses.clear()
            self._confusion[:] = 0
            self.log("val_loss", self.val_metrics["val_loss"], prog_bar=False)

        def configure_optimizers(self) -> Any:
            encoder = list(self.net.unet.encoder.parameters())
            ids = {id(p) for p in encoder}
            rest = [p for p in self.net.parameters() if id(p) not in ids]
            return adamw_cosine(
                encoder if pretrained else [],
                rest if pretrained else [*encoder, *rest],
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
) -> tuple[SegmentNet, list[dict[str, float]], int]:
    """Train one model; stop early on the validation loss and keep the best epoch."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net, pretrained = build_segment_net(
            prepared.channels,
            len(prepared.classes) + 1,
            config,
            cache_dir=project.settings.cache_dir,
        )
        net.train()
        module = _lightning_module(net, prepared, config, config.epochs, pretrained)
        crops = _Crops(prepared, train, config.input_size, config.seed + 1, config.augment)
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


def train_segmentation(
    project: Project,
    config: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Train, score, export and register a segmentation model on the project's regions.

    Args:
        project: A ``segment`` project with polygon or mask annotations.
        config: Resolved settings (see :class:`~lensloop.train.config.TrainConfig`).
        progress: Called with ``(stage, done, total)`` while images are prepared and after
            every epoch (stage ``epoch``).

    Raises:
        ConfigError: Too few annotated images, an unreadable image, regions drawn on an
            image of another size, unknown region labels, or an unreachable tracking
            server.
    """
    from lensloop.embed.export import export_onnx
    from lensloop.train.probe import TrainResult
    from lensloop.train.tracking import start_run

    started = time.perf_counter()
    items = load_segment_images(project)
    classes = segment_classes(project, items)
    train, val, held_out = validation_split(
        [item.split for item in items],
        [item.image_id for item in items],
        config.seed,
        what="segmentation",
        how_to_annotate="Label Studio brush or polygon labels, or `lensloop segment import "
        "DIR FILES`",
    )
    if not train:
        raise ConfigError(
            "every annotated image is in the val or test split; annotate images in the "
            "train (or pool) split to learn from"
        )
    arch = f"unet-{config.encoder}-{config.levels}x{config.width}"
    with (
        tempfile.TemporaryDirectory(prefix="lensloop-segment-") as scratch,
        start_run(project, run_name=f"segment-{arch}", task=TASK) as run,
    ):
        run.log_params(config.model_dump())
        prepared = _prepare(project, items, classes, train, config, Path(scratch), progress)

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
            "history": history,
            "best_epoch": best_epoch,
        }
        settings = project.config.segment
        with staging_folder(project) as staging:
            export_onnx(
                net.eval(),
                staging / MODEL_FILE,
                input_size=_EXPORT_SIZE,
                output_name=OUTPUT_NAME,
                channels=prepared.channels,
            )
            session = OnnxDense(staging / MODEL_FILE, output=OUTPUT_NAME, what="segmentation")
            predicted: list[npt.NDArray[np.uint8]] = []
            for k in val:
                probabilities = _probabilities(session, prepared, k)
                if k == val[0]:  # the exported graph against the network, on one image
                    torch_run = _probabilities(_torch_probabilities(net), prepared, k)
                    metrics["onnx_max_abs_diff"] = float(np.max(np.abs(probabilities - torch_run)))
                predicted.append(np.argmax(probabilities, axis=0).astype(np.uint8))
            truth = [prepared.labels[k] for k in val]
            metrics["val"] = score_label_maps(predicted, truth, classes, min_area=settings.min_area)
            metrics["train_s"] = round(time.perf_counter() - started, 3)
            run.log_metrics(tracked_metrics(metrics, TASK))
            _draw_validation(staging, project, prepared, val, predicted, metrics["val"])
            card = {
                "method": "unet",
                "arch": arch,
                "classes": classes,
                "depth": None,
                "input": {
                    "kind": KIND,
                    "channels": prepared.channels,
                    "trained_channels": prepared.image_channels,
                    "scaling": prepared.scaling.as_card(),
                },
                "segment": {
                    "tile": _TILE,
                    "overlap": _OVERLAP,
                    "labels": "0 background, k the k-th class (label = argmax of the output)",
                    "draw_order": list(settings.draw_order),
                    "unlabelled": settings.unlabelled,
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
                    "n_regions": int(sum(len(items[k].regions) for k in train)),
                    "validation_fingerprint": metrics["validation_fingerprint"],
                },
                run=run,
            )
    return TrainResult(model=model, metrics=metrics, elapsed_s=time.perf_counter() - started)


def _draw_validation(
    staging: Path,
    project: Project,
    prepared: _Prepared,
    val: Sequence[int],
    predicted: Sequence[npt.NDArray[np.uint8]],
    scores: dict[str, Any],
) -> None:
    """Per-class IoU bars and overlays of the first validation images' predictions."""
    from lensloop.reports.segmentation import draw_iou_bars, draw_segment_overlay

    draw_iou_bars(scores, staging / "iou.png")
    overlays = staging / "val-overlays"
    overlays.mkdir(exist_ok=True)
    for k, labels in list(zip(val, predicted, strict=True))[:8]:
        item = prepared.items[k]
        draw_segment_overlay(
            read_annotated(project, item.image_id),
            labels,
            prepared.classes,
            overlays / f"image-{item.image_id}.png",
            title=f"image {item.image_id}: predicted",
        )
