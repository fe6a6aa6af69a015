"""How fast and how good is `lensloop train` (probe and finetune) on the plankton demo set?

Targets: the probe trains in < 10 s and the finetune in < 10 min on this CPU, with their
5-fold accuracies reported. The project is prepared as in ``bench_simulate.py`` (ingest
with folder labels and a seeded val 0.2 / test 0.1 split, embed with efficientnet-lite0,
both reused when present). Each probe head is trained with ``--cv 5`` through the CLI;
the finetune (EfficientNet-Lite0 from ImageNet weights, the defaults) is trained once
alone, for its training time, and once with ``--cv 5``. Every time is the whole command
(process start, imports, MLflow tracking when installed, training, cross-validation,
ONNX export and check, release).

Usage:
    .venv/bin/python bench/bench_train.py [--work bench/out/simulate]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench_simulate import lensloop, prepare

from lensloop.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench/out/simulate"))
    args = parser.parse_args()
    project = prepare("plankton", args.work, Settings().cache_dir)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print("\n| run | command wall time, s | fit + cv + export, s | val accuracy | "
          "5-fold accuracy | 5-fold macro-F1 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    runs = [
        ("probe, logistic head", ("--head", "logistic", "--cv", "5")),
        ("probe, mlp head", ("--head", "mlp", "--cv", "5")),
        ("finetune, no cv", ("--method", "finetune")),
        ("finetune, --cv 5", ("--method", "finetune", "--cv", "5")),
    ]
    for name, options in runs:
        started = time.perf_counter()
        result = lensloop("train", project, *options, "--json")
        wall = time.perf_counter() - started
        metrics = json.loads(result.stdout)["metrics"]
        val = metrics["val"]
        cv = metrics.get("cv")
        folds = "-"
        f1 = "-"
        if cv is not None:
            folds = f"{cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f}"
            f1 = f"{cv['macro_f1_mean']:.3f} ± {cv['macro_f1_std']:.3f}"
        epochs = ""
        if "history" in metrics:
            epochs = f" (best epoch {metrics['best_epoch']} of {len(metrics['history'])})"
        print(
            f"| {name}{epochs} | {wall:.1f} | "
            f"{metrics['train_s']:.1f} | {val['accuracy']:.3f} | {folds} | {f1} |"
        )


if __name__ == "__main__":
    main()
