"""How fast and how good is `lensloop train --method probe` on the plankton demo set?

Target: the probe trains in < 10 s on this CPU, with its 5-fold accuracy reported. The
project is prepared as in ``bench_simulate.py`` (ingest with folder labels and a seeded
val 0.2 / test 0.1 split, embed with efficientnet-lite0, both reused when present); then
each head is trained with ``--cv 5`` through the CLI, timing the whole command (process
start, imports, training, cross-validation, ONNX export and check, release).

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
    print("\n| head | command wall time, s | fit + cv + export, s | val accuracy | "
          "5-fold accuracy | 5-fold macro-F1 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for head in ("logistic", "mlp"):
        started = time.perf_counter()
        result = lensloop("train", project, "--head", head, "--cv", "5", "--json")
        wall = time.perf_counter() - started
        metrics = json.loads(result.stdout)["metrics"]
        cv, val = metrics["cv"], metrics["val"]
        print(
            f"| {head} | {wall:.1f} | {metrics['train_s']:.1f} | {val['accuracy']:.3f} | "
            f"{cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f} | "
            f"{cv['macro_f1_mean']:.3f} ± {cv['macro_f1_std']:.3f} |"
        )


if __name__ == "__main__":
    main()
