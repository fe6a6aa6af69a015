"""The segmentation benchmark: synthetic core-box photographs, trained and scored the user's way.

Usage:
    .venv/bin/python bench/bench_segment.py [--train 48] [--test 16] [--epochs 60] [--out FILE]

A fresh ``segment`` project (classes ``box`` and ``rock``, drawing order box then rock,
``min_area`` 20 px) is made from synthetic core-box photographs with known masks
(:mod:`lensloop.tasks.segment.synthetic`, 256 x 384 RGB). Their polygons reach the catalog
as labelme JSON files through ``import_labels`` (rock listed before the box in each file,
so only the drawing order keeps the box from painting over it); the model is trained with
``train_model`` at its default settings except ``--epochs`` (default 60 here; the
package default of 30 stops short on this set: see docs/benchmarks.md), with a fifth of
the training images held out for early stopping, and scored with ``evaluate_model`` on
the test split:

- per-class IoU, mean IoU and pixel accuracy;
- region measurements of the predicted masks against those of the annotated masks:
  rock area and rock fragment count per image (mean absolute relative error) and in all;
- the measurement code itself against the generator's known truth: fragment counts and
  rock areas measured on the annotated masks.

Then a 6000 x 4000 photograph (a mosaic of synthetic core boxes at the training scale, so
its pixel accuracy means something) is segmented by the model in a fresh process that
loads it from a ``.npy`` file; its resident memory before and its peak while segmenting (Linux:
the peak is reset just before) are reported. ``--model DIR`` measures only that.

Prints a Markdown table and writes the figures as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update

from lensloop.annotate.maskfiles import import_labels
from lensloop.catalog.models import Image
from lensloop.imaging import write_image
from lensloop.project import Project
from lensloop.project.config import CONFIG_FILE, save_config
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.segment.data import load_segment_images
from lensloop.tasks.segment.measure import measure_regions
from lensloop.tasks.segment.synthetic import Scene, make_core_dataset, make_core_image
from lensloop.train.config import TrainConfig
from lensloop.train.evaluate import evaluate_model
from lensloop.train.trainer import train_model

_LARGE = """
import sys, time
from pathlib import Path
import numpy as np
from lensloop.train.segmenter import load_segmenter

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

image = np.load(sys.argv[2])
model = load_segmenter(sys.argv[1])
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
start = time.perf_counter()
result = model.segment_array(image)
seconds = time.perf_counter() - start
truth = np.load(sys.argv[3])
print(float((result.labels == truth).mean()), seconds, before, status("VmHWM"))
"""
MIN_AREA = 20
CLASSES = ["box", "rock"]


def _labelme(scene: Scene, image_name: str) -> dict[str, Any]:
    height, width = scene.labels.shape
    regions = sorted(scene.regions, key=lambda r: r.label != "rock")  # rock first
    return {
        "imagePath": image_name,
        "imageHeight": height,
        "imageWidth": width,
        "shapes": [
            {"label": r.label, "points": r.polygon.tolist(), "shape_type": "polygon"}
            for r in regions
            if r.polygon is not None
        ],
    }


def _project(root: Path, train: list[Scene], test: list[Scene]) -> tuple[Project, dict[int, Scene]]:
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    names: dict[str, tuple[Scene, str]] = {}
    for split, scenes in (("train", train), ("test", test)):
        for k, scene in enumerate(scenes):
            name = f"{split}-{k:03d}.png"
            write_image(images / name, scene.image)
            (labels / f"{split}-{k:03d}.json").write_text(json.dumps(_labelme(scene, name)))
            names[name] = (scene, split)
    settings = Settings(cache_dir=root / "cache")
    project = Project.init(root / "project", task="segment", classes=CLASSES, settings=settings)
    config = project.config.model_copy(deep=True)
    config.segment.draw_order = ["box", "rock"]
    config.segment.min_area = MIN_AREA
    save_config(config, project.root / CONFIG_FILE)
    project = Project.open(project.root, settings=settings)
    ingest(project, [images])
    import_labels(project, [labels], annotator="bench")
    truth: dict[int, Scene] = {}
    with project.catalog.transaction() as session:
        for image_id, uri in session.execute(select(Image.id, Image.uri)):
            scene, split = names[uri.rsplit("/", 1)[-1]]
            truth[image_id] = scene
            if split == "test":
                session.execute(update(Image).where(Image.id == image_id).values(split="test"))
    return project, truth


def _measurement_check(project: Project, truth: dict[int, Scene]) -> dict[str, Any]:
    """Fragments and rock areas measured on the annotated masks vs the generator's truth."""
    fragments_off, area_errors = 0, []
    settings = project.config.segment
    for item in load_segment_images(project):
        scene = truth[item.image_id]
        labels = item.label_map(CLASSES, draw_order=settings.draw_order)
        found = measure_regions(labels, CLASSES)
        fragments_off += int(found["rock"].fragments != scene.fragments)
        true_area = int((scene.labels == 2).sum())
        area_errors.append(abs(found["rock"].area_px - true_area) / max(true_area, 1))
    return {
        "images": len(truth),
        "images_with_wrong_fragment_count": fragments_off,
        "max_rock_area_error": float(max(area_errors)),
    }


def _per_image_errors(metrics: dict[str, Any]) -> dict[str, float]:
    area, count = [], []
    for row in metrics["per_image"]:
        rock = row["rock"]
        area.append(abs(rock["predicted_area"] - rock["true_area"]) / max(rock["true_area"], 1))
        count.append(
            abs(rock["predicted_fragments"] - rock["true_fragments"])
            / max(rock["true_fragments"], 1)
        )
    return {
        "rock_area_mean_abs_error": float(np.mean(area)),
        "rock_fragments_mean_abs_error": float(np.mean(count)),
        "rock_fragments_exact_images": int(sum(c == 0 for c in count)),
    }


def _mosaic(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``height`` x ``width`` photograph of many core boxes at the training scale."""
    rows, cols = -(-height // 256), -(-width // 384)
    image = np.empty((rows * 256, cols * 384, 3), dtype=np.uint8)
    labels = np.empty((rows * 256, cols * 384), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            scene = make_core_image(256, 384, seed=seed * 10_000 + r * 100 + c)
            image[r * 256 : (r + 1) * 256, c * 384 : (c + 1) * 384] = scene.image
            labels[r * 256 : (r + 1) * 256, c * 384 : (c + 1) * 384] = scene.labels
    return image[:height, :width], labels[:height, :width]


def _large(root: Path, folder: str) -> dict[str, Any]:
    """Segment a 6000 x 4000 photograph in a fresh process; its peak memory."""
    image, labels = _mosaic(4000, 6000, seed=99)
    np.save(root / "large.npy", image)
    np.save(root / "large-labels.npy", labels)
    del image, labels
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _LARGE,
            folder,
            str(root / "large.npy"),
            str(root / "large-labels.npy"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    accuracy, seconds, before, peak = done.stdout.split()
    return {
        "image": "6000 x 4000 RGB (a mosaic of 16 x 16 core boxes at the training scale)",
        "pixel_accuracy": round(float(accuracy), 4),
        "seconds": round(float(seconds), 1),
        "rss_before_mib": round(float(before)),
        "peak_rss_while_segmenting_mib": round(float(peak)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/out/segment.json"))
    parser.add_argument("--model", help="Only segment the 6000 x 4000 image with this model.")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="lensloop-bench-segment-") as scratch:
        root = Path(scratch)
        if args.model:
            print(json.dumps(_large(root, args.model)))
            return
        config = TrainConfig(epochs=args.epochs, input_size=args.input_size)
        train = make_core_dataset(args.train, seed=1)
        test = make_core_dataset(args.test, seed=2)
        project, truth = _project(root, train, test)
        with project:
            started = time.perf_counter()
            trained = train_model(project, config)
            train_s = time.perf_counter() - started
            tested = evaluate_model(project, str(trained.model.version), split="test").metrics
            check = _measurement_check(project, truth)
        measured = tested["measurements"]
        results = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "config": config.model_dump(),
            "train_images": trained.metrics["n_train"],
            "val_images": trained.metrics["n_val"],
            "best_epoch": trained.metrics["best_epoch"],
            "epochs_run": len(trained.metrics["history"]),
            "train_s": round(train_s, 1),
            "test": {
                "n": tested["n"],
                "pixel_accuracy": tested["pixel_accuracy"],
                "mean_iou": tested["mean_iou"],
                "iou": tested["iou"],
                "measurements": measured,
                **_per_image_errors(tested),
            },
            "measurement_code_vs_truth": check,
            "large": _large(root, str(trained.model.folder)),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    t = results["test"]
    print(
        "| mean IoU | IoU bg / box / rock | pixel acc. | rock area err. (total, per image) "
        "| rock fragments err. (total, per image) | train s |"
    )
    print("|---|---|---|---|---|---|")
    iou = t["iou"]
    rock = measured["rock"]
    print(
        f"| {t['mean_iou']:.3f} | {iou['background']:.3f} / {iou['box']:.3f} / "
        f"{iou['rock']:.3f} | {t['pixel_accuracy']:.3f} | {rock['area_error'] * 100:+.1f}%, "
        f"{t['rock_area_mean_abs_error'] * 100:.1f}% | {rock['fragment_error'] * 100:+.1f}%, "
        f"{t['rock_fragments_mean_abs_error'] * 100:.1f}% | {results['train_s']:.0f} |"
    )
    print(json.dumps({"measurement_code_vs_truth": check, "large": results["large"]}))


if __name__ == "__main__":
    main()
