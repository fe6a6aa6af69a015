"""Similar-image search at scale: VectorIndex over 1,000,000 x 512-D vectors.

Usage:
    .venv/bin/python bench/bench_search.py [--n 1000000] [--dim 512] [--data random structured]

For each data set the script generates N L2-normalised float32 vectors in chunks, builds
``VectorIndex.build(..., kind="auto")`` and reports the build time, memory, single-query
latency (median and p95 over 200 queries, k=10, after 20 warm-up queries), recall@10 on
100 other queries against exact brute force (``faiss.knn``, batched), the same figures
for other search breadths, and for reference the latency of one exact brute-force query.

Data sets:
    random      i.i.d. Gaussian directions: no structure at all, the worst case for any
                approximate index (true neighbours are barely closer than anything else).
    structured  1,000 overlapping Gaussian clusters in a 32-D latent space, mapped to D
                dimensions plus isotropic noise: closer to image embeddings, whose
                neighbourhoods have low intrinsic dimension.

Writes bench/out/search.json and prints a Markdown table. The target is one query under
50 ms once built, on a 2-core machine; the whole run takes about 2 minutes there.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lensloop.embed.index import VectorIndex

OUT = Path(__file__).parent / "out" / "search.json"
CHUNK = 100_000
BREADTHS = (16, 32, 64, 128, 256)


def rss_bytes() -> int:
    """Current resident memory of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def random_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, CHUNK):
        chunk = rng.standard_normal((min(CHUNK, n - start), dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + len(chunk)] = chunk
    return out


class Structured:
    """Overlapping clusters in a 32-D latent space, mapped linearly to ``dim`` dimensions."""

    def __init__(self, rng: np.random.Generator, dim: int) -> None:
        self.rng = rng
        self.mapping = rng.standard_normal((32, dim)).astype(np.float32)
        self.centres = rng.standard_normal((1000, 32)).astype(np.float32)

    def sample(self, n: int) -> np.ndarray:
        out = np.empty((n, self.mapping.shape[1]), np.float32)
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            latent = self.centres[self.rng.integers(0, len(self.centres), size)]
            latent = latent + self.rng.standard_normal((size, 32), dtype=np.float32)
            chunk = latent @ self.mapping
            chunk += self.rng.standard_normal(chunk.shape, dtype=np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            out[start : start + size] = chunk
        return out


def latencies_ms(index: VectorIndex, queries: np.ndarray, k: int, warmup: int = 20) -> np.ndarray:
    for row in queries[:warmup]:
        index.search(row[None], k)
    times = []
    for row in queries[warmup:]:
        started = time.perf_counter()
        index.search(row[None], k)
        times.append(time.perf_counter() - started)
    return np.array(times) * 1e3


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True)]
    return float(np.sum(hits) / truth.size)


def run(data: str, n: int, dim: int, k: int, n_latency: int, n_recall: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    if data == "random":
        base = random_vectors(rng, n, dim)
        queries = random_vectors(rng, n_latency + 20 + n_recall, dim)
    else:
        model = Structured(rng, dim)
        base = model.sample(n)
        queries = model.sample(n_latency + 20 + n_recall)
    generate_s = time.perf_counter() - started
    ids = np.arange(n, dtype=np.int64) + 1
    recall_queries, latency_queries = queries[:n_recall], queries[n_recall:]

    started = time.perf_counter()
    truth_scores, truth_rows = faiss.knn(recall_queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[truth_rows]
    truth_s = time.perf_counter() - started
    started = time.perf_counter()
    exact_ms = []
    for row in latency_queries[:20]:
        t0 = time.perf_counter()
        faiss.knn(row[None], base, k, metric=faiss.METRIC_INNER_PRODUCT)
        exact_ms.append((time.perf_counter() - t0) * 1e3)

    gc.collect()
    rss_before = rss_bytes()
    started = time.perf_counter()
    index = VectorIndex.build(base, ids, kind="auto", seed=0)
    build_s = time.perf_counter() - started
    index_bytes = rss_bytes() - rss_before

    times = latencies_ms(index, latency_queries, k)
    _, found = index.search(recall_queries, k)
    result: dict[str, Any] = {
        "data": data,
        "n": n,
        "dim": dim,
        "k": k,
        "kind": index.kind,
        "search_breadth": index.search_breadth,
        "generate_s": round(generate_s, 1),
        "build_s": round(build_s, 1),
        "vectors_gb": round(base.nbytes / 1e9, 2),
        "index_rss_gb": round(index_bytes / 1e9, 2),
        "query_ms_median": round(float(np.median(times)), 2),
        "query_ms_p95": round(float(np.percentile(times, 95)), 2),
        "latency_queries": len(times),
        "recall_at_10": round(recall(found, truth), 3),
        "recall_queries": n_recall,
        "exact_truth_batch_s": round(truth_s, 1),
        "exact_single_query_ms_median": round(float(np.median(exact_ms)), 1),
        "mean_top1_similarity": round(float(truth_scores[:, 0].mean()), 3),
        "breadths": [],
    }
    default = index.search_breadth
    if default is not None:
        for breadth in BREADTHS:
            index.search_breadth = breadth
            sweep = latencies_ms(index, latency_queries[:70], k)
            _, found = index.search(recall_queries, k)
            result["breadths"].append(
                {
                    "search_breadth": breadth,
                    "recall_at_10": round(recall(found, truth), 3),
                    "query_ms_median": round(float(np.median(sweep)), 2),
                }
            )
        index.search_breadth = default
    del index, base
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--recall-queries", type=int, default=100)
    parser.add_argument(
        "--data", nargs="+", choices=["random", "structured"], default=["random", "structured"]
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = []
    for data in args.data:
        results.append(
            run(data, args.n, args.dim, args.k, args.latency_queries, args.recall_queries)
        )
        print(f"done {data}", file=sys.stderr, flush=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "total_s": round(time.perf_counter() - started, 1),
        "peak_rss_gb": round(peak_rss_bytes() / 1e9, 2),
        "results": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")

    print(f"N = {args.n:,} x {args.dim}-D, k = {args.k}, kind='auto'\n")
    print(
        "| data | kind | breadth | build s | index GB (RSS) | query ms median | "
        "query ms p95 | recall@10 | exact query ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['data']} | {r['kind']} | {r['search_breadth']} | {r['build_s']} | "
            f"{r['index_rss_gb']} | {r['query_ms_median']} | {r['query_ms_p95']} | "
            f"{r['recall_at_10']} | {r['exact_single_query_ms_median']} |"
        )
    print("\n| data | breadth | recall@10 | query ms median |")
    print("| --- | --- | --- | --- |")
    for r in results:
        for b in r["breadths"]:
            print(
                f"| {r['data']} | {b['search_breadth']} | {b['recall_at_10']} | "
                f"{b['query_ms_median']} |"
            )
    print(f"\npeak RSS {report['peak_rss_gb']} GB, total {report['total_s']} s; wrote {OUT}")


if __name__ == "__main__":
    main()
