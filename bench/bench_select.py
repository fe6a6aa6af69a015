"""How long does selecting 1,000 of 1,000,000 x 512 embeddings take? (target: < 60 s)

Builds seeded synthetic unit vectors shaped like real embeddings (200 Gaussian blobs plus
noise, L2-normalised; 2 GB of float32) and times :func:`lensloop.select.strategy.choose`
for each strategy on the same array, one after the other:

- ``auto`` cold start (no labels: TypiClust, the default strategy's first rounds);
- ``auto`` warm (5,000 labelled images, 500 per class over 10 classes: the probe, the
  margin filter, then k-center greedy);
- ``kcenter``, ``random`` and ``kcenter+margin`` (weighted, warm) for comparison.

Usage:
    .venv/bin/python bench/bench_select.py [--n-rows 1000000] [--dim 512] [--n 1000]
        [--strategies auto,kcenter,random] [--labelled 5000]

Prints a Markdown table with the wall time of each call and the process's peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from lensloop.select.strategy import Pool, choose, parse_strategy


def make_vectors(n_rows: int, dim: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim), dtype=np.float32)
    blob = rng.integers(0, 200, n_rows)
    vectors = np.empty((n_rows, dim), dtype=np.float32)
    for start in range(0, n_rows, 100_000):
        stop = min(start + 100_000, n_rows)
        part = centres[blob[start:stop]]
        part += 0.3 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        vectors[start:stop] = part
    return vectors, blob % 10


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--labelled", type=int, default=5000)
    parser.add_argument("--strategies", default="auto,auto-warm,kcenter,random,kcenter+margin")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    t0 = time.perf_counter()
    vectors, classes = make_vectors(args.n_rows, args.dim, seed=0)
    print(f"{args.n_rows:,} x {args.dim} vectors made in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(1)
    labelled = np.zeros(args.n_rows, dtype=np.bool_)
    per_class = args.labelled // 10
    for c in range(10):
        members = np.flatnonzero(classes == c)
        labelled[rng.choice(members, size=per_class, replace=False)] = True
    names = [f"class-{c}" for c in range(10)]
    cold_labels = np.full(args.n_rows, -1, dtype=np.int64)
    warm_labels = np.where(labelled, classes, -1).astype(np.int64)

    print("\n| strategy | labelled | picks | time (s) | resolved | peak RSS (GiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.strategies.split(","):
        warm = name.endswith("-warm") or "margin" in name
        text = name.removesuffix("-warm")
        pool = Pool(
            vectors=vectors,
            candidates=~labelled if warm else np.ones(args.n_rows, dtype=np.bool_),
            selected=labelled if warm else np.zeros(args.n_rows, dtype=np.bool_),
            labels=warm_labels if warm else cold_labels,
            class_names=names,
        )
        started = time.perf_counter()
        chosen = choose(pool, args.n, parse_strategy(text), seed=0)
        elapsed = time.perf_counter() - started
        assert len(np.unique(chosen.indices)) == args.n
        print(
            f"| {text} | {int(labelled.sum()) if warm else 0:,} | {args.n:,} | {elapsed:.1f} | "
            f"{chosen.strategy} | {peak_rss_gib():.1f} |"
        )


if __name__ == "__main__":
    main()
