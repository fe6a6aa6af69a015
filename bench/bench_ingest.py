"""Ingest throughput: N small PNGs into a fresh project, end to end.

Usage:
    .venv/bin/python bench/bench_ingest.py [--n 10000] [--size 64] [--workers 0 2 auto]

Writes the figures to bench/out/ingest.json and prints a Markdown table row per setting.
Each setting ingests into its own fresh project (SQLite, the embedded default), in one run,
side by side. The target (issue 2) is >= 500 images/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_pngs(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    # Smooth blobs plus noise: compresses like real particle crops, unlike pure noise.
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cls = f"class_{i % 10}"
        cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(4, size / 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * 200
        noise = rng.normal(0, 8, (size, size))
        gray = np.clip(blob + noise + 20, 0, 255).astype(np.uint8)
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([gray, gray, (gray * 0.8).astype(np.uint8)], -1)).save(
            folder / f"p{i:06d}.png"
        )


LENSLOOP = Path(sys.executable).parent / "lensloop"


def run_ingest(project: Path, data: Path, workers: str) -> float:
    """Time one `lensloop ingest` command (process start-up included)."""
    flags = [] if workers == "auto" else ["--workers", workers]
    started = time.perf_counter()
    subprocess.run(
        [LENSLOOP, "ingest", project, data, "--labels-from-folders", *flags],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", nargs="+", default=["0", "2", "auto"])
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lensloop-bench-"))
    try:
        data = tmp / "data"
        t0 = time.perf_counter()
        make_pngs(data, args.n, args.size)
        total_bytes = sum(p.stat().st_size for p in data.rglob("*.png"))
        print(
            f"generated {args.n} PNGs ({total_bytes / args.n / 1024:.1f} KiB each) "
            f"in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        results = []
        for workers in args.workers:
            project = tmp / f"project-w{workers}"
            subprocess.run([LENSLOOP, "init", project], check=True, capture_output=True)
            elapsed = run_ingest(project, data, workers)
            # The same ingest again adds nothing: how fast is "already in the catalog"?
            again = run_ingest(project, data, workers)
            results.append(
                {
                    "workers": workers,
                    "images": args.n,
                    "size_px": args.size,
                    "seconds": round(elapsed, 2),
                    "images_per_s": round(args.n / elapsed, 1),
                    "rerun_seconds": round(again, 2),
                }
            )
        machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        (out / "ingest.json").write_text(
            json.dumps({"machine": machine, "results": results}, indent=2)
        )
        print("| workers | images | seconds | images/s | re-run seconds |")
        print("| --- | --- | --- | --- | --- |")
        for r in results:
            print(
                f"| {r['workers']} | {r['images']} | {r['seconds']} | {r['images_per_s']} "
                f"| {r['rerun_seconds']} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
