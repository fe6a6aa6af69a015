"""`embed` throughput: the local executor against Dask with 2 workers, side by side.

Usage:
    .venv/bin/python bench/bench_dask.py [--n 512] [--batch-size 32] [--input-size 224]
                                         [--shard-sizes 256 64] [--workers 2]

Ingests N generated PNG particle images (128 x 128 RGB, as bench_embed.py) into a fresh
project, builds the resnet18 backbone (random init: the network cost is that of the
trained one), then embeds all N images:

- local: `embed_project` in this process (the default on <= 4 cores: no prepare
  processes), ONNX Runtime with its default threads (all cores);
- dask: `embed_project(executor=DaskExecutor)` on a LocalCluster on 127.0.0.1 with
  `--workers` worker processes of 1 thread each, the backbone built with 1 ONNX Runtime
  intra-op thread so that the workers do not oversubscribe the cores; once per shard size.

Each run embeds a new backbone version (another seed), after a warm-up embed of 64 other
images with that same backbone (sessions opened, modules imported on the workers), so the
figures are steady-state throughput; the cluster's start-up is printed apart.

Target (issue 9): Dask with 2 workers within 20% of the local executor on 2 cores.
Writes bench/out/dask.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_embed import make_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from distributed import LocalCluster

    from lensloop.embed.engine import embed_project
    from lensloop.embed.torch_backbones import ResNetBackbone
    from lensloop.executors import DaskExecutor, Executor, LocalExecutor
    from lensloop.project import Project
    from lensloop.project.ingest import IngestOptions, ingest
    from lensloop.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="lensloop-bench-dask-"))
    cluster: Any = None
    try:
        (tmp / "data").mkdir()
        (tmp / "warm").mkdir()
        make_images(tmp / "data", args.n)
        make_images(tmp / "warm", 64)
        settings = Settings(cache_dir=tmp / "cache")
        started = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        cluster_s = time.perf_counter() - started
        dask = DaskExecutor(cluster.scheduler_address)
        runs: list[tuple[str, Executor, int | None, int]] = [("local", LocalExecutor(), None, 0)]
        runs += [(f"dask, shards of {s}", dask, 1, s) for s in args.shard_sizes]
        results = []
        with (
            Project.init(tmp / "p", settings=settings) as project,
            Project.init(tmp / "w", settings=settings) as warm,
        ):
            ingest(project, [tmp / "data"], options=IngestOptions(workers=0))
            ingest(warm, [tmp / "warm"], options=IngestOptions(workers=0))
            for seed, (name, runner, threads, shard_size) in enumerate(runs):
                backbone = ResNetBackbone(
                    "resnet18",
                    cache_dir=settings.cache_dir,
                    random_init=True,
                    seed=seed,  # a new version per run, so every run embeds all N
                    input_size=args.input_size,
                    intra_op_num_threads=threads,
                )
                options: dict[str, Any] = {
                    "batch_size": args.batch_size,
                    "workers": 0,
                    "executor": runner,
                    "shard_size": shard_size or 256,
                }
                warm_options = {**options, "shard_size": 32}
                embed_project(warm, backbone, **warm_options)
                report = embed_project(project, backbone, **options)
                results.append(
                    {
                        "executor": name,
                        "ort_threads": threads or "default",
                        "embedded": report.embedded,
                        "seconds": round(report.elapsed_s, 2),
                        "images_per_s": round(report.images_per_s, 1),
                    }
                )
        dask.close()
        local = results[0]["images_per_s"]
        for row in results:
            row["ratio_to_local"] = round(row["images_per_s"] / local, 3)
        machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
        config = {
            "n": args.n,
            "batch_size": args.batch_size,
            "input_size": args.input_size,
            "dask_workers": args.workers,
            "threads_per_worker": 1,
            "cluster_start_s": round(cluster_s, 2),
        }
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        payload = {"machine": machine, "config": config, "results": results}
        (out / "dask.json").write_text(json.dumps(payload, indent=2))
        print(
            f"resnet18, {args.n} images, batch {args.batch_size}, {args.input_size} px, "
            f"{os.cpu_count()} cores; LocalCluster of {args.workers} x 1 thread "
            f"(started in {cluster_s:.1f} s)"
        )
        print("| executor | ORT threads | seconds | images/s | vs local |")
        print("| --- | --- | --- | --- | --- |")
        for r in results:
            print(
                f"| {r['executor']} | {r['ort_threads']} | {r['seconds']} | "
                f"{r['images_per_s']} | {r['ratio_to_local']:.0%} |"
            )
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
