"""Fine-tune a CNN on the labelled images (``lensloop train --method finetune``).

The network is one of the package's own (EfficientNet-Lite0, or the torchvision-compatible
ResNet-18/50), started from its ImageNet weights, a checkpoint, or random; its classifier
layer is replaced for the project's classes and the whole network is trained with
Lightning:

- images are prepared once by the package's input rule at ``input_size`` and kept as
  8-bit in a memory-mapped file, so a large set does not have to fit in memory;
- augmentations that suit microscopy, on batches of tensors (no torchvision): random
  resized crops (area 0.6-1), flips and 90-degree rotations, brightness, contrast and
  gamma jitter, and blur (:class:`lensloop.embed.ssl.Augment`);
- cross-entropy with balanced class weights (``class_weight``), AdamW with the pretrained
  layers at a tenth of the new layer's learning rate, cosine decay;
- early stopping on the validation loss (``patience``); the best epoch's weights are kept;
- mixed precision (bf16 where the GPU has it, else fp16) when a GPU is present;
- any input size: the networks pool adaptively, and the exported model takes any height
  and width.

The trained network, with its input normalisation and a softmax, is exported to ONNX
(dynamic batch, height and width) and checked against torch within 1e-4 before release.
``--cv K`` then trains K more models, each for the number of epochs the main run chose,
and scores each on its held-out fold.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L  # noqa: N812
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset

from lensloop.embed.ssl import Augment
from lensloop.errors import ConfigError, LensloopError
from lensloop.project import Project
from lensloop.tasks.classify import (
    TASK,
    LabelledImages,
    classification_metrics,
    load_labelled_images,
)
from lensloop.train.config import TrainConfig
from lensloop.train.loop import adamw_cosine, epoch_callbacks, fit_keeping_best
from lensloop.train.onnx_image import OUTPUT_NAME, OnnxImageClassifier, image_channels
from lensloop.train.release import (
    classification_training_data,
    cv_folds,
    release,
    staging_folder,
    summarise_folds,
    tracked_metrics,
)

if TYPE_CHECKING:
    from lensloop.train.probe import TrainResult

__all__ = ["MODEL_FILE", "ImageClassifier", "build_classifier", "train_finetune"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CROP_SCALE = (0.6, 1.0)
_EVAL_BATCH = 64
#: Images per step when ``batch_size`` is not set.
DEFAULT_BATCH = 32


class ImageClassifier(nn.Module):
    """Images in [0, 1] ``(N, 3, H, W)`` -> class probabilities, normalisation inside.

    Args:
        network: Maps normalised images to class logits.
        mean: Per-channel mean the network's weights expect.
        std: Per-channel standard deviation the network's weights expect.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, network: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def logits(self, x: Tensor) -> Tensor:
        """Class scores before the softmax."""
        out: Tensor = self.network((x - self.mean) / self.std)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Class probabilities."""
        return F.softmax(self.logits(x), dim=1)


class EncoderClassifier(nn.Module):
    """A feature encoder (images -> pooled features) with a new linear layer ``fc``."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits."""
        out: Tensor = self.fc(self.encoder(x))
        return out


def _ssl_network(
    num_classes: int, project_root: Path | None
) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """The project's SSL encoder (``models/ssl/``) with a new classifier layer."""
    from lensloop.embed.onnx_backbone import read_sidecar
    from lensloop.embed.registry import SSL_ENCODER
    from lensloop.embed.resnet import load_state_dict_checked
    from lensloop.embed.ssl import build_encoder, checkpoint_path
    from lensloop.embed.weights import load_checkpoint

    if project_root is None:
        raise ConfigError("--weights ssl needs a project (it starts from the project's encoder)")
    onnx_path = project_root / SSL_ENCODER
    checkpoint = checkpoint_path(onnx_path)
    retrain = f"train it with `lensloop embed {project_root} --backbone ssl --train-epochs N`"
    sidecar = read_sidecar(onnx_path)
    if not sidecar:
        raise ConfigError(f"--weights ssl: the project has no SSL encoder yet; {retrain}")
    missing = [k for k in ("arch", "input_size", "mean", "std") if k not in sidecar]
    if missing:
        raise ConfigError(
            f"--weights ssl: the sidecar of {onnx_path} lacks {', '.join(missing)} (the encoder "
            f"was trained by an older lensloop, which kept no torch weights); {retrain}"
        )
    arch, size = str(sidecar["arch"]), int(sidecar["input_size"])
    mean, std = tuple(sidecar["mean"]), tuple(sidecar["std"])
    if not checkpoint.is_file():
        raise ConfigError(f"--weights ssl: {checkpoint} is missing; {retrain}")
    encoder, feature_dim = build_encoder(arch, input_size=size)  # type: ignore[arg-type]
    load_state_dict_checked(encoder, load_checkpoint(checkpoint), source=f"checkpoint {checkpoint}")
    return EncoderClassifier(encoder, feature_dim, num_classes), mean, std


def build_classifier(
    arch: str,
    num_classes: int,
    weights: str,
    *,
    cache_dir: Path,
    project_root: Path | None = None,
) -> tuple[nn.Module, bool, tuple[float, ...], tuple[float, ...]]:
    """Build the network for ``arch`` with ``num_classes`` outputs, from ``weights``.

    Args:
        arch: ``efficientnet-lite0``, ``resnet18`` or ``resnet50``.
        num_classes: Outputs of the new classifier layer.
        weights: ``imagenet``, a checkpoint path or URL, ``none``, or ``ssl`` (the
            project's self-supervised encoder, whatever its architecture; ``arch`` is
            then not used).
        cache_dir: The user cache (fetched weights are kept there).
        project_root: The project (for ``ssl``).

    Returns:
        ``(network, pretrained, mean, std)``: the network maps normalised images to
        logits; ``mean``/``std`` is the normalisation its weights expect.

    Raises:
        ConfigError: The weights cannot be fetched or do not fit the architecture, or
            the project has no SSL encoder with torch weights.
    """
    from lensloop.embed.resnet import load_state_dict_checked
    from lensloop.embed.weights import load_checkpoint

    source = weights.strip()
    pretrained = source.lower() != "none"
    if source.lower() == "ssl":
        network, mean, std = _ssl_network(num_classes, project_root)
        return network, True, mean, std
    if arch == "efficientnet-lite0":
        from lensloop.embed.efficientnet import (
            EFFICIENTNET_SPEC,
            build_efficientnet_lite0,
            fetch_efficientnet_weights,
        )

        path: Path | None = None
        if source.lower() == "imagenet":
            path = fetch_efficientnet_weights(cache_dir=cache_dir)
        elif pretrained:
            from lensloop.embed.weights import resolve_weights

            path = resolve_weights(source, cache_dir=cache_dir)
        network = build_efficientnet_lite0(num_classes=num_classes, weights=path)
        return network, pretrained, EFFICIENTNET_SPEC.mean, EFFICIENTNET_SPEC.std
    if arch in ("resnet18", "resnet50"):
        from lensloop.embed.resnet import build_resnet
        from lensloop.embed.weights import expand_weights_alias, resolve_weights

        resnet = build_resnet(arch, num_classes=num_classes)  # type: ignore[arg-type]
        if pretrained:
            spec, sha256 = expand_weights_alias(source, backbone=arch)
            checkpoint = resolve_weights(spec, cache_dir=cache_dir, sha256=sha256)
            state = load_checkpoint(checkpoint)
            load_state_dict_checked(
                resnet, state, ignore_prefixes=("fc.",), source=f"checkpoint {checkpoint}"
            )
        return resnet, pretrained, _IMAGENET_MEAN, _IMAGENET_STD
    raise ConfigError(
        f"unknown architecture {arch!r}; valid: efficientnet-lite0, resnet18, resnet50"
    )


def _new_layer_prefix(arch: str, weights: str) -> str:
    if weights.strip().lower() != "ssl" and arch == "efficientnet-lite0":
        return "_fc."
    return "fc."  # the ResNets and EncoderClassifier


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """The labelled images at the input size, as 8-bit ``(N, 3, S, S)`` (memory-mapped)."""

    pixels: npt.NDArray[np.uint8]
    channels: list[int]


def _prepare(
    project: Project,
    image_ids: npt.NDArray[np.int64],
    size: int,
    folder: Path,
    progress: Callable[[str, int, int], None] | None,
) -> _Prepared:
    from lensloop.embed.base import InputSpec, to_model_input

    raw = InputSpec(size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pixels = np.lib.format.open_memmap(
        folder / "pixels.npy", mode="w+", dtype=np.uint8, shape=(len(image_ids), 3, size, size)
    )
    channels: set[int] = set()
    for row, image_id in enumerate(image_ids.tolist()):
        try:
            image = project.read_image(int(image_id))
            unit = to_model_input(image, raw)
        except (LensloopError, OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read labelled image {image_id} for training: {exc}; fix or remove it "
                "(`lensloop status DIR` lists unreadable images)"
            ) from exc
        channels.add(image_channels(image))
        pixels[row] = np.rint(unit * 255.0).astype(np.uint8)
        if progress is not None:
            progress("preparing images", row + 1, len(image_ids))
    pixels.flush()
    return _Prepared(pixels=pixels, channels=sorted(channels))


def _class_weights(labels: npt.NDArray[np.int64], num_classes: int, mode: str) -> list[float]:
    if mode == "none":
        return [1.0] * num_classes
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return [float(w) for w in weights]


def _loader(
    prepared: _Prepared,
    rows: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> Any:
    class _Rows(Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            row = int(rows[index])
            return torch.from_numpy(np.array(prepared.pixels[row])), int(labels[row])

    generator = torch.Generator().manual_seed(seed)
    # Batch norm cannot train on a batch of one: a shuffled last batch of one is dropped
    # (a different image each epoch).
    drop_last = shuffle and len(rows) > batch_size and len(rows) % batch_size == 1
    return DataLoader(
        _Rows(),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=0,
        drop_last=drop_last,
    )


# --- training ------------------------------------------------------------------------------


def _lightning_module(
    classifier: ImageClassifier,
    *,
    arch: str,
    pretrained: bool,
    class_weights: list[float],
    config: TrainConfig,
    class_names: list[str],
    epochs: int,
) -> Any:
    class _Module(L.LightningModule):
        class_weights: Tensor

        def __init__(self) -> None:
            super().__init__()
            self.classifier = classifier
            self.register_buffer("class_weights", torch.tensor(class_weights))
            self.augment = Augment(
                input_size=config.input_size,
                generator=torch.Generator().manual_seed(config.seed + 1),
                crop_scale=_CROP_SCALE,
            )
            self._val_probs: list[torch.Tensor] = []
            self._val_labels: list[torch.Tensor] = []
            self.val_metrics: dict[str, float] = {}

        def training_step(self, batch: Any, _index: int) -> torch.Tensor:
            pixels, labels = batch
            x = pixels.float() / 255.0
            if config.augment:
                x = self.augment(x)
            logits = self.classifier.logits(x)
            loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights)
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
            return loss

        def validation_step(self, batch: Any, _index: int) -> None:
            pixels, labels = batch
            logits = self.classifier.logits(pixels.float() / 255.0).float()
            self._val_probs.append(F.softmax(logits, dim=1).cpu())
            self._val_labels.append(labels.cpu())

        def on_validation_epoch_end(self) -> None:
            if not self._val_probs:
                return
            probs = torch.cat(self._val_probs)
            labels = torch.cat(self._val_labels)
            self._val_probs.clear()
            self._val_labels.clear()
            loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)
            scores = classification_metrics(
                labels.numpy(), probs.argmax(dim=1).numpy(), class_names
            )
            self.val_metrics = {
                "val_loss": float(loss),
                "val_accuracy": scores["accuracy"],
                "val_macro_f1": scores["macro_f1"],
            }
            for name, value in self.val_metrics.items():
                self.log(name, value, prog_bar=False)

        def configure_optimizers(self) -> Any:
            prefix = "network." + _new_layer_prefix(arch, config.weights)
            new: list[nn.Parameter] = []
            old: list[nn.Parameter] = []
            for name, parameter in self.classifier.named_parameters():
                (new if name.startswith(prefix) else old).append(parameter)
            return adamw_cosine(
                old if pretrained else [],
                new if pretrained else [*old, *new],
                lr=config.lr,
                weight_decay=config.weight_decay,
                epochs=epochs,
            )

    return _Module()


def _fit(
    project: Project,
    config: TrainConfig,
    prepared: _Prepared,
    data: LabelledImages,
    fit_rows: npt.NDArray[np.int64],
    val_rows: npt.NDArray[np.int64] | None,
    *,
    epochs: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[ImageClassifier, list[dict[str, float]], int]:
    """Train one model; with ``val_rows``, stop early and keep the best epoch's weights."""
    num_classes = len(data.class_names)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network, pretrained, mean, std = build_classifier(
            config.arch,
            num_classes,
            config.weights,
            cache_dir=project.settings.cache_dir,
            project_root=project.root,
        )
        classifier = ImageClassifier(network, mean, std).train()
        module = _lightning_module(
            classifier,
            arch=config.arch,
            pretrained=pretrained,
            class_weights=_class_weights(data.labels[fit_rows], num_classes, config.class_weight),
            config=config,
            class_names=data.class_names,
            epochs=epochs,
        )
        history: list[dict[str, float]] = []
        callbacks, best = epoch_callbacks(
            history, on_epoch, keep_best=val_rows is not None, network=classifier
        )
        if val_rows is not None:
            callbacks.append(
                L.pytorch.callbacks.EarlyStopping(
                    monitor="val_loss", mode="min", patience=config.patience
                )
            )
        train_loader = _loader(
            prepared,
            fit_rows,
            data.labels,
            batch_size=config.batch_size or DEFAULT_BATCH,
            shuffle=True,
            seed=config.seed,
        )
        val_loader = None
        if val_rows is not None:
            val_loader = _loader(
                prepared, val_rows, data.labels, batch_size=_EVAL_BATCH, shuffle=False, seed=0
            )
        chosen = fit_keeping_best(
            module,
            classifier,
            epochs=epochs,
            callbacks=callbacks,
            best=best,
            history=history,
            train_loader=train_loader,
            val_loader=val_loader,
            root_dir=str(project.runs_dir),
        )
    return classifier, history, chosen


def _probabilities(
    model: Callable[[Any], Any], prepared: _Prepared, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    blocks = []
    for start in range(0, len(rows), _EVAL_BATCH):
        chunk = rows[start : start + _EVAL_BATCH]
        pixels = np.asarray(prepared.pixels[chunk], dtype=np.float32) / 255.0
        blocks.append(np.asarray(model(pixels), dtype=np.float32))
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)


def _torch_probabilities(classifier: nn.Module) -> Callable[[Any], Any]:
    def run(pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            return np.asarray(classifier(torch.from_numpy(pixels)).numpy(), np.float32)

    return run


def train_finetune(
    project: Project,
    config: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Fine-tune ``config.arch`` on the labelled images, score it on val, export, register.

    Args:
        project: The project.
        config: Resolved settings (``method`` is ``finetune``).
        progress: Called with ``(stage, done, total)`` while images are prepared and after
            every epoch (stage ``epoch``).

    Raises:
        ConfigError: torch or Lightning missing, no val images, a class without training
            images, ``--cv`` larger than the rarest class, weights that cannot be fetched
            or do not fit, an unreadable labelled image, or an unreachable tracking server.
    """
    from lensloop.embed.export import export_onnx
    from lensloop.train.probe import TrainResult
    from lensloop.train.tracking import start_run

    started = time.perf_counter()
    data = load_labelled_images(project, depth=config.depth)
    train_rows, val_rows = data.train_rows(), data.rows("val")
    if len(val_rows) == 0:
        raise ConfigError(
            "training needs labelled images in the val split to score the model and stop "
            "early; ingest with --split val=0.2,test=0.1"
        )
    missing = sorted(set(range(len(data.class_names))) - set(data.labels[train_rows].tolist()))
    if missing:
        raise ConfigError(
            f"class {data.class_names[missing[0]]!r} has no training image (all of its "
            "images are in val or test); label more images of it or roll up with --depth"
        )
    with (
        tempfile.TemporaryDirectory(prefix="lensloop-finetune-") as scratch,
        start_run(project, run_name=f"finetune-{config.arch}", task=TASK) as run,
    ):
        run.log_params(config.model_dump())
        prepared = _prepare(project, data.image_ids, config.input_size, Path(scratch), progress)

        def on_epoch(epoch: int, row: dict[str, float]) -> None:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if progress is not None:
                progress("epoch", epoch, config.epochs)

        classifier, history, best_epoch = _fit(
            project, config, prepared, data, train_rows, val_rows,
            epochs=config.epochs, on_epoch=on_epoch,
        )  # fmt: skip
        metrics: dict[str, Any] = {
            "validation_fingerprint": data.fingerprint(val_rows),
            "n_train": len(train_rows),
            "history": history,
            "best_epoch": best_epoch,
        }
        if config.cv is not None:
            per_fold = []
            for fold, (fit_rows, test_rows) in enumerate(cv_folds(data, config.cv, config.seed)):
                fold_model, _, _ = _fit(
                    project, config, prepared, data, fit_rows, None, epochs=max(1, best_epoch)
                )
                probs = _probabilities(_torch_probabilities(fold_model), prepared, test_rows)
                scores = classification_metrics(
                    data.labels[test_rows], np.argmax(probs, axis=1), data.class_names
                )
                per_fold.append(scores)
                run.log_metrics(
                    {
                        "cv_fold_accuracy": scores["accuracy"],
                        "cv_fold_macro_f1": scores["macro_f1"],
                    },
                    step=fold + 1,
                )
                if progress is not None:
                    progress("cross-validation", fold + 1, config.cv)
            metrics["cv"] = summarise_folds(per_fold)
        with staging_folder(project) as staging:
            export_onnx(
                classifier,
                staging / MODEL_FILE,
                input_size=config.input_size,
                output_name=OUTPUT_NAME,
            )
            session = OnnxImageClassifier(staging / MODEL_FILE)
            onnx_probs = _probabilities(session, prepared, val_rows)
            torch_probs = _probabilities(_torch_probabilities(classifier), prepared, val_rows)
            metrics["onnx_max_abs_diff"] = float(np.max(np.abs(onnx_probs - torch_probs)))
            predicted = np.argmax(onnx_probs, axis=1)
            metrics["val"] = classification_metrics(
                data.labels[val_rows], predicted, data.class_names
            )
            metrics["train_s"] = round(time.perf_counter() - started, 3)
            run.log_metrics(tracked_metrics(metrics))
            card = {
                "method": config.method,
                "classes": data.class_names,
                "depth": data.depth,
                "arch": _card_arch(project, config),
                "weights": config.weights,
                "input": {
                    "kind": "image",
                    "size": config.input_size,
                    "channels": prepared.channels,
                    "scaling": "8-bit / 255; other dtypes 0.5-99.5 percentile stretch; longest "
                    "side resized to size, padded square with the border median",
                    "normalisation": {
                        "mean": list(_normalisation(classifier, "mean")),
                        "std": list(_normalisation(classifier, "std")),
                        "where": "inside the graph",
                    },
                },
                "onnx": {"file": MODEL_FILE, "input": "input", "output": OUTPUT_NAME},
            }
            model = release(
                project,
                staging,
                task=TASK,
                card=card,
                metrics=metrics,
                config=config,
                training_data=classification_training_data(data, train_rows, metrics),
                run=run,
            )
    return TrainResult(model=model, metrics=metrics, elapsed_s=time.perf_counter() - started)


def _card_arch(project: Project, config: TrainConfig) -> str:
    """The architecture trained: ``config.arch``, or ``ssl-<arch>`` of the SSL encoder."""
    if config.weights.strip().lower() != "ssl":
        return config.arch
    from lensloop.embed.onnx_backbone import read_sidecar
    from lensloop.embed.registry import SSL_ENCODER

    return f"ssl-{read_sidecar(project.root / SSL_ENCODER)['arch']}"


def _normalisation(classifier: nn.Module, name: str) -> list[float]:
    buffer: Tensor = getattr(classifier, name)
    return [round(float(v), 6) for v in buffer.flatten().tolist()]
