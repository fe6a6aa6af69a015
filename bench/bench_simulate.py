"""Does the default selection strategy beat random? Learning curves on two real data sets.

For each data set a project is created (or reused) under ``--work``, the images are
ingested with folder labels and a seeded split (val 0.2, test 0.1 per class), embedded
with the default backbone (efficientnet-lite0), and ``lensloop simulate`` replays the
labelling loop for each strategy over 5 seeds. The data sets:

- ``plankton``: the 105 phytoplankton images of ``plankton-demo`` (6 classes), fetched
  once from the pinned planktonclas wheel;
- ``digits``: scikit-learn's 1,797 hand-written digits (10 classes, 8x8 pixels, 0..16),
  rendered as 64x64 greyscale PNGs (bicubic), which is how such scans reach a user.

Usage:
    .venv/bin/python bench/bench_simulate.py [--sets plankton digits]
        [--strategies auto,random,typical,kcenter,coverage,margin] [--seeds 5]
        [--work bench/out/simulate] [--out bench/out/simulate.json]

Prints one table per data set (accuracy at the smallest budget, AUC of accuracy and
macro-F1, gain over random) and writes every curve as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lensloop.datasets import fetch_dataset
from lensloop.settings import Settings

# name: (rounds, per round); the smallest budget is one label per class or so.
SETS = {"plankton": (6, 6), "digits": (6, 10)}


def render_digits(folder: Path) -> Path:
    """Write scikit-learn's digits as ``<digit>/digit-NNNN.png`` (64x64, bicubic)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    done = folder / ".complete"
    if done.exists():
        return folder
    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        target_dir = folder / str(target)
        target_dir.mkdir(parents=True, exist_ok=True)
        grey = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(grey).resize((64, 64), Image.Resampling.BICUBIC).save(
            target_dir / f"digit-{index:04d}.png"
        )
    done.write_text("1797\n")
    return folder


def lensloop(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lensloop", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return result


def prepare(name: str, work: Path, cache: Path) -> Path:
    images = (
        fetch_dataset("plankton-demo", cache_dir=cache)
        if name == "plankton"
        else render_digits(work / "digits-images")
    )
    project = work / name
    if not (project / "lensloop.toml").exists():
        lensloop("init", project)
    lensloop("ingest", project, images, "--labels-from-folders", "--split", "val=0.2,test=0.1")
    lensloop("embed", project)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--strategies", default="auto,random,typical,kcenter,coverage,margin")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("bench/out/simulate"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/simulate.json"))
    args = parser.parse_args()
    cache = Settings().cache_dir
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "sets": {},
    }
    for name in args.sets:
        rounds, per_round = SETS[name]
        project = prepare(name, args.work, cache)
        started = time.perf_counter()
        result = lensloop(
            "simulate", project, "--rounds", rounds, "--per-round", per_round,
            "--strategies", args.strategies, "--seeds", args.seeds, "--json",
            "--out", args.work / f"{name}-curves",
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        data = json.loads(result.stdout)
        report["sets"][name] = data  # type: ignore[index]
        print(
            f"\n{name}: {data['n_pool']} pool, {data['n_eval']} held out, "
            f"{len(data['classes'])} classes, budgets {data['budgets']}, "
            f"{args.seeds} seeds, {elapsed:.0f} s"
        )
        print("| strategy | accuracy at smallest budget | AUC accuracy | AUC macro-F1 | "
              "vs random: AUC | vs random: smallest budget |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        for strategy, entry in data["strategies"].items():
            acc, f1 = entry["accuracy"], entry["macro_f1"]
            gain = data["relative_to_random"].get(strategy)
            versus = (
                f"{gain['auc_accuracy']:+.1%} | {gain['first_budget_accuracy']:+.1%}"
                if gain
                else "- | -"
            )
            print(
                f"| {strategy} | {acc['mean'][0]:.3f} ± {acc['std'][0]:.3f} | "
                f"{acc['auc']['mean']:.3f} ± {acc['auc']['std']:.3f} | "
                f"{f1['auc']['mean']:.3f} ± {f1['auc']['std']:.3f} | {versus} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
