"""End-to-end `embed` throughput against the bare ONNX Runtime forward pass.

Usage:
    .venv/bin/python bench/bench_embed.py [--n 512] [--batch-size 32] [--input-size 224]
                                          [--workers 0 1 2]

Ingests N generated PNG particle images (128 x 128 RGB) into a fresh project, builds the
resnet18 backbone (random init: no weights can be downloaded here; the network cost is
the same), then, side by side in one run:

- bare: ONNX Runtime on ready-made float32 batches of the same size (no decode, no
  resize, no storage): the ceiling;
- embed: `embed_project` end to end (read, decode, prepare in worker processes, infer,
  L2-normalise, store, commit), once per `--workers` setting, each into a new version.

Target (issue 3): embed >= 85% of bare. Writes bench/out/embed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128]
    for i in range(n):
        cx, cy = rng.uniform(40, 88, 2)
        r = rng.uniform(8, 30)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * 180
        gray = np.clip(blob + rng.normal(0, 6, (128, 128)) + 30, 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([gray, gray, gray], -1)).save(root / f"p{i:05d}.png")


def bare_throughput(backbone: object, n: int, batch_size: int, size: int) -> float:
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, size, size))
    batch = batch.astype(np.float32)
    backbone.infer(batch)  # type: ignore[attr-defined]  # warm-up, session creation
    batches = max(1, n // batch_size)
    started = time.perf_counter()
    for _ in range(batches):
        backbone.infer(batch)  # type: ignore[attr-defined]
    return batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from lensloop.embed.engine import embed_project
    from lensloop.embed.torch_backbones import ResNetBackbone
    from lensloop.project import Project
    from lensloop.project.ingest import IngestOptions, ingest
    from lensloop.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="lensloop-bench-embed-"))
    try:
        (tmp / "data").mkdir()
        make_images(tmp / "data", args.n)
        settings = Settings(cache_dir=tmp / "cache")
        results = []
        with Project.init(tmp / "p", settings=settings) as project:
            ingest(project, [tmp / "data"], options=IngestOptions(workers=0))
            for seed, workers in enumerate(args.workers):
                backbone = ResNetBackbone(
                    "resnet18",
                    cache_dir=settings.cache_dir,
                    random_init=True,
                    seed=seed,  # a new version per run, so every run embeds all N
                    input_size=args.input_size,
                )
                bare = bare_throughput(backbone, args.n, args.batch_size, args.input_size)
                report = embed_project(
                    project, backbone, batch_size=args.batch_size, workers=workers
                )
                end_to_end = report.images_per_s
                results.append(
                    {
                        "workers": workers,
                        "bare_images_per_s": round(bare, 1),
                        "embed_images_per_s": round(end_to_end, 1),
                        "ratio": round(end_to_end / bare, 3),
                        "embedded": report.embedded,
                    }
                )
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        config = {"n": args.n, "batch_size": args.batch_size, "input_size": args.input_size}
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        payload = {"machine": machine, "config": config, "results": results}
        (out / "embed.json").write_text(json.dumps(payload, indent=2))
        print(f"resnet18, {args.n} images, batch {args.batch_size}, {args.input_size} px")
        print("| embed workers | bare ORT images/s | embed images/s | embed / bare |")
        print("| --- | --- | --- | --- |")
        for r in results:
            print(
                f"| {r['workers']} | {r['bare_images_per_s']} | {r['embed_images_per_s']} "
                f"| {r['ratio']:.0%} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
