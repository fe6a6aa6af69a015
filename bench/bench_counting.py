"""The counting benchmark: synthetic fluorescence cells, trained and scored the user's way.

Usage:
    .venv/bin/python bench/bench_counting.py [--bit-depth 16] [--epochs 30] [--out FILE]
        [--scenarios full sparse] [--set KEY=VALUE ...]

For each scenario a fresh ``count`` project is made from synthetic cell images with known
centres (:mod:`lensloop.tasks.counting.synthetic`, 256 x 256, 50-300 cells each): 64
training images and 32 test images, plus 8 test images without cells (status
``empty``). Points reach the catalog through ``lensloop count import`` (a JSON point
file); the model is trained with ``train_model`` at its default settings (a fifth of the
training images is held out for early stopping and the peak threshold) and scored with
``evaluate_model`` on the test split:

- ``full``: every cell annotated, status ``full``;
- ``sparse``: 20% of the cells of each training image annotated, status ``sparse``
  (the test images stay fully annotated).

Then a 4000 x 4000 image with 20,000 cells is counted by the first scenario's model in a
fresh process that loads the image from a ``.npy`` file; its resident memory before
counting and its peak while counting (Linux: the peak is reset just before) are reported.
``--model DIR`` measures only that, with a released counting model.

``--set KEY=VALUE`` changes a training setting (a :class:`TrainConfig` field, such as
``trust_radius=5`` or ``sigma=1.5``) for every scenario, to measure how it moves the
figures.

Each scenario also reports where its counts sit (``objects``): the test densities are cut
into basins (a watershed of the density from its local maxima), each basin's mass is
compared with the number of true centres inside it (single cells, touching pairs, ...),
and ``integer_readout`` is the error of counting each basin as its rounded mass (at least
one for a located peak) instead of summing the density. Both are diagnostics: the
released count stays the density's sum. ``by_cells`` splits the test error between images
with fewer and more than 175 cells.

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
from pydantic import ValidationError
from sqlalchemy import update

from lensloop.annotate.pointfiles import import_points
from lensloop.catalog.models import Image
from lensloop.imaging import write_image
from lensloop.project import Project
from lensloop.project.ingest import ingest
from lensloop.settings import Settings
from lensloop.tasks.counting.synthetic import (
    CellStyle,
    make_cell_dataset,
    make_cell_image,
    thin_points,
)
from lensloop.train.config import TrainConfig
from lensloop.train.evaluate import evaluate_model
from lensloop.train.trainer import train_model

_LARGE = """
import sys, time
from pathlib import Path
import numpy as np
from lensloop.train.counter import load_counter

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

image = np.load(sys.argv[2])
model = load_counter(sys.argv[1])
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
start = time.perf_counter()
result = model.count_array(image)
seconds = time.perf_counter() - start
print(result.count, len(result.points), seconds, before, status("VmHWM"))
"""


def _write_set(folder: Path, data: list[Any], prefix: str) -> list[tuple[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    named = []
    for k, (image, centres) in enumerate(data):
        name = f"{prefix}-{k:03d}.png"
        write_image(folder / name, image)
        named.append((name, centres))
    return named


def _scenario(
    root: Path,
    name: str,
    train: list[tuple[str, Any]],
    test: list[tuple[str, Any]],
    empty: list[tuple[str, Any]],
    *,
    fraction: float,
    config: TrainConfig,
    test_data: list[tuple[Any, Any]],
) -> dict[str, Any]:
    settings = Settings(cache_dir=root / "cache")
    project = Project.init(root / name, task="count", classes=["cell"], settings=settings)
    with project:
        ingest(project, [root / "images"])
        entries = []
        for k, (image, centres) in enumerate(train):
            points = centres if fraction >= 1 else thin_points(centres, fraction, seed=k)
            status = "full" if fraction >= 1 else "sparse"
            entries.append({"image": image, "points": points.tolist(), "status": status})
        for image, centres in test:
            entries.append({"image": image, "points": centres.tolist(), "status": "full"})
        for image, _ in empty:
            entries.append({"image": image, "points": [], "status": "empty"})
        point_file = root / f"{name}-points.json"
        point_file.write_text(json.dumps({"images": entries}))
        imported = import_points(project, point_file, annotator="bench")
        held = [n for n, _ in test + empty]
        with project.catalog.transaction() as session:
            for image in held:
                session.execute(
                    update(Image).where(Image.uri.endswith("/" + image)).values(split="test")
                )
        started = time.perf_counter()
        trained = train_model(project, config)
        train_s = time.perf_counter() - started
        tested = evaluate_model(project, str(trained.model.version), split="test").metrics
    objects = _objects(trained.model.folder, test_data)
    return {
        "scenario": name,
        "points_imported": imported.points,
        "train_images": trained.metrics["n_train"],
        "val_images": trained.metrics["n_val"],
        "best_epoch": trained.metrics["best_epoch"],
        "epochs_run": len(trained.metrics["history"]),
        "train_s": round(train_s, 1),
        "threshold": tested["threshold"],
        "test": {k: v for k, v in tested.items() if k != "per_image"},
        "by_cells": _by_cells(tested["per_image"]),
        "objects": objects,
        "model_folder": str(trained.model.folder),
    }


def _by_cells(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean relative error and bias of the test images with fewer and more than 175 cells."""
    groups: dict[str, list[float]] = {"50-174": [], "175-300": []}
    for row in rows:
        if row["true"]:
            key = "50-174" if row["true"] < 175 else "175-300"
            groups[key].append((row["predicted"] - row["true"]) / row["true"])
    return {
        key: {
            "images": len(errors),
            "mre": round(float(np.mean(np.abs(errors))), 4),
            "relative_bias": round(float(np.mean(errors)), 4),
        }
        for key, errors in groups.items()
        if errors
    }


def _objects(folder: Path, test_data: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Basin masses by the number of true cells inside, and the integer readout's error."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    from lensloop.tasks.counting.density import gaussian_peak
    from lensloop.train.counter import load_counter

    counter = load_counter(folder)
    peak = gaussian_peak(counter.sigma)
    masses: dict[int, list[float]] = {}
    cells: dict[int, int] = {}
    errors = []
    for image, centres in test_data:
        density = counter.density(image)
        maxima = peak_local_max(  # type: ignore[no-untyped-call]
            density, min_distance=max(1, round(counter.sigma)), threshold_abs=0.02 * peak
        )
        markers = np.zeros(density.shape, dtype=np.int32)
        markers[maxima[:, 0], maxima[:, 1]] = np.arange(1, len(maxima) + 1)
        basins = watershed(  # type: ignore[no-untyped-call]
            -density, markers, mask=density > 1e-4 * peak
        )
        index = np.arange(1, len(maxima) + 1)
        mass = np.asarray(ndimage.sum_labels(density, basins, index=index), dtype=np.float64)
        located = density[maxima[:, 0], maxima[:, 1]] >= counter.threshold * peak
        rows = np.clip(centres[:, 1].astype(np.intp), 0, density.shape[0] - 1)
        cols = np.clip(centres[:, 0].astype(np.intp), 0, density.shape[1] - 1)
        inside = np.bincount(basins[rows, cols], minlength=len(maxima) + 1)[1:]
        for n, m in zip(inside.tolist(), mass.tolist(), strict=True):
            masses.setdefault(min(n, 3), []).append(m)
            cells[min(n, 3)] = cells.get(min(n, 3), 0) + n
        integer = float(np.maximum(located, np.round(mass)).sum())
        errors.append((integer - len(centres)) / len(centres))
    return {
        "basin_mass_by_true_cells": {
            ("3+" if n == 3 else str(n)): {
                "basins": len(values),
                "true_cells": cells[n],
                "mass": round(float(np.sum(values)), 1),
            }
            for n, values in sorted(masses.items())
        },
        "integer_readout": {
            "mre": round(float(np.mean(np.abs(errors))), 4),
            "mean_relative_bias": round(float(np.mean(errors)), 4),
        },
    }


def _large(root: Path, folder: str, style: CellStyle) -> dict[str, Any]:
    """Count a 4000 x 4000 image in a fresh process; its peak memory before and after."""
    image, centres = make_cell_image(4000, 4000, 20000, style=style, seed=7)
    path = root / "large.npy"
    np.save(path, image)
    del image
    done = subprocess.run(
        [sys.executable, "-c", _LARGE, folder, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    counted, located, seconds, before, peak = done.stdout.split()
    return {
        "image": "4000 x 4000",
        "cells": len(centres),
        "count": round(float(counted), 1),
        "located": int(located),
        "seconds": round(float(seconds), 1),
        "rss_before_count_mib": round(float(before)),
        "peak_rss_while_counting_mib": round(float(peak)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bit-depth", type=int, default=16, choices=(8, 16))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--scenarios", nargs="+", default=["full", "sparse"])
    parser.add_argument("--out", type=Path, default=Path("bench/out/counting.json"))
    parser.add_argument("--model", help="Only count the 4000 x 4000 image with this model.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change a training setting (a TrainConfig field), e.g. trust_radius=5.",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    style = CellStyle(bit_depth=args.bit_depth)
    if args.model:
        with tempfile.TemporaryDirectory(prefix="lensloop-bench-count-") as scratch:
            print(json.dumps(_large(Path(scratch), args.model, style)))
        return
    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in TrainConfig.model_fields:
            parser.error(f"--set wants KEY=VALUE with KEY a TrainConfig field; got {item!r}")
        overrides[key] = value
    try:
        config = TrainConfig.model_validate({"epochs": args.epochs, **overrides})
    except ValidationError as exc:
        parser.error(f"--set: {exc}")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "bit_depth": args.bit_depth,
        "config": config.model_dump(),
        "scenarios": [],
    }
    with tempfile.TemporaryDirectory(prefix="lensloop-bench-count-") as scratch:
        root = Path(scratch)
        images = root / "images"
        train = _write_set(images, make_cell_dataset(64, style=style, seed=1), "train")
        test_data = make_cell_dataset(32, style=style, seed=2)
        test = _write_set(images, test_data, "test")
        empty = _write_set(images, make_cell_dataset(8, cells=(0, 0), style=style, seed=3), "empty")
        fractions = {"full": 1.0, "sparse": 0.2}
        for name in args.scenarios:
            print(f"training {name} ...", file=sys.stderr, flush=True)
            row = _scenario(
                root,
                name,
                train,
                test,
                empty,
                fraction=fractions[name],
                config=config,
                test_data=test_data,
            )
            results["scenarios"].append(row)
            print(json.dumps(row["test"]), file=sys.stderr, flush=True)
        first = results["scenarios"][0]["model_folder"]
        results["large"] = _large(root, first, style)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        "| scenario | MRE | MAE | empty MAE | F1 @5 px | precision | recall | train s "
        "| integer readout MRE |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["scenarios"]:
        t = row["test"]
        print(
            f"| {row['scenario']} | {t['mre'] * 100:.1f}% | {t['mae']:.2f} | "
            f"{t['mae_empty']:.2f} | {t['f1']:.3f} | {t['precision']:.3f} | "
            f"{t['recall']:.3f} | {row['train_s']:.0f} | "
            f"{row['objects']['integer_readout']['mre'] * 100:.1f}% |"
        )
    print(json.dumps(results["large"]))


if __name__ == "__main__":
    main()
